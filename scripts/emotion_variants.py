"""Development harness: the emotion detector's training levers on cached features (not a test).

Reproduces the table of ``bench/results/emotion_variants.md``. For each variant it runs
the train command's 4 speaker folds (every corpus in every fold) and EmoDB held out as a whole
corpus, and a channel check: each fold's model also predicts its held-out RAVDESS and EmoDB
clips through a simulated recording chain (copy 3 of ``training/augment.py``; the held-out
clips' copies are never trained on). It prints one JSON line per variant: UAR on held-out
speakers (RAVDESS, EmoDB, command words), LibriSpeech readers called calm / calm or uncertain
(at the variant's own CV threshold), EmoDB-held-out UAR and its share called calm, and the
channel check's UAR with the share of degraded (``ch_calm``) and clean (``cl_calm``) clips
called calm: a model that learned "degraded recording = calm" shows a large gap between them.

Features come from the training feature cache (build it once with the train command)::

    EMOTION_FEATURE_CACHE=/tmp/emo_cache nice -n 19 .venv/bin/python scripts/emotion_variants.py [NAME ...]

Each variant costs five full detector fits (2-5 minutes on one core).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from personalization_engine.emotion.detector import EmotionDetector  # noqa: E402
from personalization_engine.emotion.features import FEATURE_NAMES  # noqa: E402
from personalization_engine.emotion.training import data as D  # noqa: E402
from personalization_engine.emotion.training import train as T  # noqa: E402
from personalization_engine.schema import EMOTION_LABELS  # noqa: E402

LABELS = np.asarray(EMOTION_LABELS)
#: The corpus weights of the SVM-only recipe of passes 1-5 ("Q"); every variant starts from them
#: and from the SVM members alone (``boosted_trees`` False) unless it says otherwise. The shipped
#: recipe since the sixth pass is "R-hgb" (``training/train.py``).
BASE_WEIGHTS = {"RAVDESS": 1.0, "EmoDB": 1.0, "LibriSpeech": 0.5, "IndianEmoSpeechCommand": 0.2}
#: name -> (corpus weight overrides, detector keyword overrides).
VARIANTS: dict[str, tuple[dict[str, float], dict[str, Any]]] = {
    "Q": ({}, {}),
    "RAV2": ({"RAVDESS": 2.0}, {}),
    "RAV2-Ind0": ({"RAVDESS": 2.0, "IndianEmoSpeechCommand": 0.0}, {}),
    "RAV2-Ind0-kC3": ({"RAVDESS": 2.0, "IndianEmoSpeechCommand": 0.0}, {"C_kernel": 3.0}),
    "RAV2-Ind0-kall": ({"RAVDESS": 2.0, "IndianEmoSpeechCommand": 0.0}, {"kernel_features": "all"}),
    "Ind0.4": ({"IndianEmoSpeechCommand": 0.4}, {}),
    "RAV2-Ind0.4": ({"RAVDESS": 2.0, "IndianEmoSpeechCommand": 0.4}, {}),
    "RAV3-Ind0.4": ({"RAVDESS": 3.0, "IndianEmoSpeechCommand": 0.4}, {}),
    "RAV2-Ind0.6": ({"RAVDESS": 2.0, "IndianEmoSpeechCommand": 0.6}, {}),
    "RAV2-Ind0.4-Libri0.6": ({"RAVDESS": 2.0, "IndianEmoSpeechCommand": 0.4, "LibriSpeech": 0.6}, {}),
    "Q-hgb": ({}, {"boosted_trees": True}),
    "R-hgb": ({"RAVDESS": 2.0, "IndianEmoSpeechCommand": 0.4}, {"boosted_trees": True}),
    # Seventh pass (ef-8): the shipped recipe with the voice encoder's columns held at zero, i.e.
    # the hand-made features alone (a constant column changes no member).
    "R-hgb-no-encoder": ({"RAVDESS": 2.0, "IndianEmoSpeechCommand": 0.4}, {"boosted_trees": True, "no_encoder": True}),
}


def _uar(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import recall_score

    present = sorted(set(y))
    return float(np.mean(recall_score(y, pred, labels=present, average=None, zero_division=0)))


def run(name: str, ds0: D.Dataset) -> dict[str, Any]:
    """Scores of one variant (see the module doc)."""
    weights, det_kw = VARIANTS[name]
    det_kw = dict(det_kw)
    if det_kw.pop("no_encoder", False):
        enc = np.array([n.startswith("voice_enc") for n in FEATURE_NAMES])
        X = ds0.X.copy()
        X[..., enc] = 0.0
        ds0 = D.Dataset(ds0.clips, X, ds0.ok)
    T.CORPUS_WEIGHTS = {**BASE_WEIGHTS, **weights}
    kw = {"C": T.C_ALL, "C_compact": T.C_COMPACT, "C_kernel": T.C_KERNEL, "kernel_components": T.KERNEL_COMPONENTS,
          "kernel_features": T.KERNEL_FEATURES, "calibration_folds": T.CALIBRATION_FOLDS, "boosted_trees": False,
          **det_kw}

    def fit(mask: np.ndarray) -> EmotionDetector:
        X, y, g, w = T._train_rows(ds0, mask)
        keep = w > 0  # a corpus at weight 0 leaves training entirely
        return EmotionDetector(**kw).fit(X[keep], y[keep], groups=g[keep], sample_weight=w[keep])

    fold, base, corp, y = T.speaker_folds(ds0), ds0.ok[0], ds0.corpora, ds0.y
    proba = np.full((len(y), len(LABELS)), np.nan)
    chan = np.full_like(proba, np.nan)
    for f in range(T.N_FOLDS):
        model = fit(fold != f)
        te = (fold == f) & base
        proba[te] = model.predict_proba(ds0.X[0][te])
        tc = te & ds0.ok[3] & np.isin(corp, ["RAVDESS", "EmoDB"])
        chan[tc] = model.predict_proba(ds0.X[3][tc])
    thr = T.choose_threshold(y[base], proba[base], T.sample_weights(y[base], corp[base]))["threshold"]
    out: dict[str, Any] = {"name": name, "threshold": thr}
    for c in ("RAVDESS", "EmoDB", "IndianEmoSpeechCommand"):
        m = (corp == c) & base
        out[c] = _uar(y[m], LABELS[proba[m].argmax(1)])
    m = (corp == "LibriSpeech") & base
    pred = LABELS[proba[m].argmax(1)]
    out["libri_calm"] = float(np.mean(pred == "calm"))
    out["libri_calm_or_uncertain"] = float(np.mean((pred == "calm") | (proba[m].max(1) < thr)))
    for c in ("RAVDESS", "EmoDB"):
        m = (corp == c) & ~np.isnan(chan[:, 0])
        out[f"channel_{c}"] = _uar(y[m], LABELS[chan[m].argmax(1)])
        out[f"ch_calm_{c}"] = float(np.mean(LABELS[chan[m].argmax(1)] == "calm"))
        out[f"cl_calm_{c}"] = float(np.mean(LABELS[proba[m].argmax(1)] == "calm"))
    model = fit(corp != "EmoDB")
    te = (corp == "EmoDB") & base
    pred = LABELS[model.predict_proba(ds0.X[0][te]).argmax(1)]
    out["emodb_held_out"] = _uar(y[te], pred)
    out["emodb_held_out_calm"] = float(np.mean(pred == "calm"))
    return out


def main(argv: list[str]) -> None:
    ds0 = D.load_dataset(D.read_corpora(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    for name in argv or list(VARIANTS):
        r = run(name, ds0)
        sys.stdout.write(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
