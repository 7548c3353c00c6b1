"""Training and evaluation of the emotion SVM: speaker-grouped CV, report, manifest.

Recipe (every step deterministic):

1. Features (:mod:`emotion_features`) of every clip of the data folder, plus two speed-perturbed
   copies (x0.9 and x1.1: tempo, pitch and formants shift together, like a shorter or longer
   vocal tract) that add speaker variety. Copies only ever join the *training* side of a split.
2. Speaker-held-out CV. RAVDESS: 6 folds of 3 actors (actors 01-18), EmoDB always in
   training. EmoDB: 5 folds of 2 speakers, RAVDESS always in training. ``C`` of each of the two
   linear SVMs (all features; the compact subset) is picked from :data:`C_GRID` by the mean of
   the two corpora's held-out UAR, so the choice is not tuned to one corpus. A clip is never
   split from its speaker.
3. Cross-corpus: train on RAVDESS only and test on EmoDB, and the reverse (shared labels only).
4. The final model is fitted on all clips and copies; pickle, manifest and report are written.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .emotion_data import LabelledClip, clip_features, read_corpora
from .emotion_detector import UNCERTAIN_BELOW, EmotionDetector
from .emotion_features import COMPACT_COLUMNS, FEATURE_NAMES, FEATURE_VERSION, SAMPLE_RATE, compute_features
from .errors import AudioInputError, FeatureExtractionError, PersonalizationError
from .schema import EMOTION_LABELS

_LOGGER = logging.getLogger(__name__)

#: Playback-speed factors of the training copies (1.0 is the original clip).
SPEED_FACTORS = (1.0, 0.9, 1.1)
#: Inverse regularisation strengths tried for the linear SVM (strong regularisation wins:
#: features of unseen speakers shift, and a wide margin on standardised features is robust).
C_GRID = (0.001, 0.003, 0.01)
#: Speaker folds per held-out corpus.
FOLDS = {"RAVDESS": 6, "EmoDB": 5}
#: Licences and citations of the known corpora (for the manifest).
CORPUS_INFO = {
    "RAVDESS": "CC BY-NC-SA 4.0; Livingstone & Russo (2018) PLoS ONE 13(5): e0196391",
    "EmoDB": "free for research (audEERING packaging: CC0-1.0); Burkhardt et al. (2005) Interspeech",
}
#: Default folder for the feature cache (re-training does not re-extract).
CACHE_DIR = Path(os.environ.get("EMOTION_FEATURE_CACHE", "/tmp/emotion_feature_cache"))


@dataclass(frozen=True)
class Dataset:
    """Features of every clip (and its speed-perturbed copies) with labels and speakers."""

    clips: tuple[LabelledClip, ...]
    X: np.ndarray
    """Shape (len(SPEED_FACTORS), n_clips, n_features); copy 0 is the original clip."""
    ok: np.ndarray
    """Shape (len(SPEED_FACTORS), n_clips): the clip (copy) could be analysed."""

    @property
    def y(self) -> np.ndarray:
        return np.array([c.label for c in self.clips])

    @property
    def speakers(self) -> np.ndarray:
        return np.array([c.speaker for c in self.clips])

    @property
    def corpora(self) -> np.ndarray:
        return np.array([c.corpus for c in self.clips])

    def training_set(self, mask: np.ndarray, *, augment: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, y, groups) of the clips in ``mask``, with their speed copies when ``augment``."""
        copies = range(len(self.X)) if augment else range(1)
        rows = [(k, mask & self.ok[k]) for k in copies]
        X = np.vstack([self.X[k][m] for k, m in rows])
        y = np.concatenate([self.y[m] for _, m in rows])
        g = np.concatenate([self.speakers[m] for _, m in rows])
        return X, y, g


def speed_perturb(samples: np.ndarray, factor: float) -> np.ndarray:
    """Play ``samples`` back ``factor`` times faster (tempo, pitch and formants scale together)."""
    from .audio_io import resample

    if factor == 1.0:
        return samples
    return resample(samples, int(round(SAMPLE_RATE * factor)), SAMPLE_RATE)


def load_dataset(clips: Sequence[LabelledClip], *, factors: Sequence[float] = SPEED_FACTORS,
                 cache_dir: Path | None = CACHE_DIR) -> Dataset:
    """Features of ``clips`` for each speed factor, cached under ``cache_dir``."""
    from .emotion_data import cache_key, load_corpus_clip

    clips = tuple(clips)
    cache = None
    if cache_dir is not None:
        tag = "-".join(f"{f:g}" for f in factors)
        cache = Path(cache_dir) / f"emotion_{FEATURE_VERSION}_{cache_key(list(clips))}_{tag}.npz"
        if cache.is_file():
            with np.load(cache) as z:
                return Dataset(clips, z["X"], z["ok"])
    X = np.zeros((len(factors), len(clips), len(FEATURE_NAMES)))
    ok = np.zeros((len(factors), len(clips)), dtype=bool)
    t0 = time.perf_counter()
    for i, clip in enumerate(clips):
        try:
            samples = load_corpus_clip(clip.path)
        except AudioInputError as exc:
            _LOGGER.warning("skipping %s: %s", clip.path.name, exc)
            continue
        for k, f in enumerate(factors):
            try:
                X[k, i] = compute_features(speed_perturb(samples, f))
                ok[k, i] = True
            except FeatureExtractionError as exc:
                _LOGGER.warning("skipping %s (speed x%g): %s", clip.path.name, f, exc)
        if (i + 1) % 250 == 0:
            _LOGGER.info("features: %d / %d clips (%.0f s)", i + 1, len(clips), time.perf_counter() - t0)
    if cache is not None:
        from .emotion_detector import _atomic_write
        import io

        buf = io.BytesIO()
        np.savez(buf, X=X, ok=ok)
        _atomic_write(cache, buf.getvalue())
    return Dataset(clips, X, ok)


def speaker_folds(ds: Dataset, corpus: str, n_folds: int) -> list[list[str]]:
    """Speakers of ``corpus`` dealt round-robin (sorted) into ``n_folds`` folds."""
    speakers = sorted(set(ds.speakers[ds.corpora == corpus]))
    return [speakers[i::n_folds] for i in range(min(n_folds, len(speakers)))]


def held_out_proba(ds: Dataset, folds: list[list[str]], *, C: float, C_compact: float,
                   train_mask: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold probabilities (n_clips, 7) for the speakers in ``folds`` (NaN elsewhere).

    Each fold's model is trained on every other usable clip (and its copies), restricted to
    ``train_mask`` when given; the held-out speakers' original clips are predicted.
    """
    proba = np.full((len(ds.clips), len(EMOTION_LABELS)), np.nan)
    allowed = np.ones(len(ds.clips), dtype=bool) if train_mask is None else train_mask
    for fold in folds:
        test = np.isin(ds.speakers, fold)
        X, y, g = ds.training_set(allowed & ~test)
        det = EmotionDetector(C=C, C_compact=C_compact).fit(X, y, groups=g)
        sel = test & ds.ok[0]
        proba[sel] = det.predict_proba(ds.X[0][sel])
    return proba


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Accuracy, UAR, macro-F1 (over the labels present in ``y_true``), per-class F1/recall."""
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, recall_score

    present = [lab for lab in EMOTION_LABELS if lab in set(y_true)]
    f1 = f1_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    rec = recall_score(y_true, y_pred, labels=present, average=None, zero_division=0)
    with warnings.catch_warnings():
        # A label predicted but absent from y_true (EmoDB has no "surprised") is simply wrong.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        uar = float(balanced_accuracy_score(y_true, y_pred))
    return {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)),
        "balanced_accuracy": uar,
        "macro_f1": float(np.mean(f1)),
        "per_class_f1": {lab: float(v) for lab, v in zip(present, f1)},
        "per_class_recall": {lab: float(v) for lab, v in zip(present, rec)},
        "confusion": {
            "labels": list(EMOTION_LABELS),
            "matrix": confusion_matrix(y_true, y_pred, labels=list(EMOTION_LABELS)).tolist(),
        },
    }


def _labels(proba: np.ndarray) -> np.ndarray:
    return np.asarray(EMOTION_LABELS)[np.nan_to_num(proba, nan=-1.0).argmax(axis=1)]


def _grid_score(ds: Dataset, folds: dict[str, list[list[str]]], C: float,
                columns: Sequence[int] | None = None) -> dict[str, float]:
    """Held-out UAR per corpus of the plain linear SVM (no calibration: fast) for one ``C``.

    ``columns`` restricts the features (the compact member); all features when None.
    """
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    out = {}
    for corpus, corpus_folds in folds.items():
        pred = np.full(len(ds.clips), "", dtype=object)
        for fold in corpus_folds:
            test = np.isin(ds.speakers, fold)
            X, y, _ = ds.training_set(~test)
            cols = np.arange(X.shape[1]) if columns is None else np.asarray(columns)
            svm = LinearSVC(C=C, class_weight="balanced", max_iter=20_000, random_state=0)
            model = make_pipeline(StandardScaler(), svm).fit(X[:, cols], y)
            sel = test & ds.ok[0]
            pred[sel] = model.predict(ds.X[0][sel][:, cols])
        m = (ds.corpora == corpus) & ds.ok[0]
        out[str(corpus)] = scores(ds.y[m], pred[m].astype(str))["balanced_accuracy"]
    return out


def _cross_corpus(ds: Dataset, C: float, C_compact: float) -> dict[str, Any]:
    """Train on one corpus, test on another (labels the training corpus has only)."""
    corpora = sorted(set(ds.corpora))
    result: dict[str, Any] = {}
    for train_c in corpora:
        for test_c in corpora:
            if train_c == test_c:
                continue
            X, y, g = ds.training_set(ds.corpora == train_c)
            det = EmotionDetector(C=C, C_compact=C_compact).fit(X, y, groups=g)
            test = (ds.corpora == test_c) & ds.ok[0] & np.isin(ds.y, np.unique(y))
            pred = det.predict_labels(ds.X[0][test])
            s = scores(ds.y[test], pred)
            s["labels"] = sorted(set(y), key=EMOTION_LABELS.index)
            result[f"{train_c}->{test_c}"] = s
    return result


def _uncertainty(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    top = proba.max(axis=1)
    low = top < UNCERTAIN_BELOW
    right = _labels(proba) == y
    return {
        "threshold": UNCERTAIN_BELOW,
        "fraction_uncertain": float(low.mean()),
        "accuracy_uncertain": float(right[low].mean()) if low.any() else float("nan"),
        "accuracy_confident": float(right[~low].mean()) if (~low).any() else float("nan"),
    }


def cross_validate(ds: Dataset, *, c_grid: Sequence[float] = C_GRID) -> dict[str, Any]:
    """Choose ``C`` by speaker-grouped CV and measure the chosen detector (see module doc)."""
    corpora = sorted(set(ds.corpora))
    folds = {c: speaker_folds(ds, c, FOLDS.get(c, 5)) for c in corpora}
    folds = {c: f for c, f in folds.items() if len(f) >= 2}
    grid, grid_compact = {}, {}
    for C in c_grid:
        grid[C] = _grid_score(ds, folds, C)
        grid_compact[C] = _grid_score(ds, folds, C, COMPACT_COLUMNS)
        _LOGGER.info("C=%g held-out UAR %s, compact %s", C, {k: round(v, 4) for k, v in grid[C].items()},
                     {k: round(v, 4) for k, v in grid_compact[C].items()})
    best = max(c_grid, key=lambda C: (float(np.mean(list(grid[C].values()))), -C))
    best_compact = max(c_grid, key=lambda C: (float(np.mean(list(grid_compact[C].values()))), -C))
    result: dict[str, Any] = {
        "scheme": {c: f"{len(f)} folds by speaker, other corpora always in training" for c, f in folds.items()},
        "folds": folds,
        "speed_factors": list(SPEED_FACTORS),
        "grid": [{"C": C, "held_out_uar": grid[C], "criterion": float(np.mean(list(grid[C].values())))} for C in c_grid],
        "grid_compact": [{"C": C, "held_out_uar": grid_compact[C],
                          "criterion": float(np.mean(list(grid_compact[C].values())))} for C in c_grid],
        "C": best,
        "C_compact": best_compact,
        "per_corpus": {},
        "oof": {},
    }
    for corpus, corpus_folds in folds.items():
        proba = held_out_proba(ds, corpus_folds, C=best, C_compact=best_compact)
        m = (ds.corpora == corpus) & ds.ok[0]
        s = scores(ds.y[m], _labels(proba[m]))
        s["uncertainty"] = _uncertainty(ds.y[m], proba[m])
        s["fold_accuracy"] = [
            float(np.mean(_labels(proba[m & np.isin(ds.speakers, f)]) == ds.y[m & np.isin(ds.speakers, f)]))
            for f in corpus_folds
        ]
        s["per_speaker_accuracy"] = {
            spk: float(np.mean(_labels(proba[m & (ds.speakers == spk)]) == ds.y[m & (ds.speakers == spk)]))
            for spk in sorted(set(ds.speakers[m]))
        }
        result["per_corpus"][corpus] = s
        result["oof"][corpus] = {c.path.name: lab for c, lab, ok in zip(ds.clips, _labels(proba), m) if ok}
        _LOGGER.info("%s held-out accuracy %.4f, macro-F1 %.4f", corpus, s["accuracy"], s["macro_f1"])
    result["cross_corpus"] = _cross_corpus(ds, best, best_compact) if len(corpora) > 1 else {}
    return result


def _data_description(data_dir: Path, ds: Dataset) -> dict[str, Any]:
    corpora = []
    for corpus in sorted(set(ds.corpora)):
        m = ds.corpora == corpus
        corpora.append({
            "name": corpus,
            "folder": str(ds.clips[int(np.flatnonzero(m)[0])].path.parent.name),
            "speakers": len(set(ds.speakers[m])),
            "clips": int(m.sum()),
            "clips_used": int((m & ds.ok[0]).sum()),
            "per_label": {lab: int(((ds.y == lab) & m & ds.ok[0]).sum()) for lab in EMOTION_LABELS},
            "licence": CORPUS_INFO.get(corpus, "see the corpus's own documentation"),
        })
    return {
        "data_dir": str(data_dir),
        "corpora": corpora,
        "augmentation": f"speed perturbation x{', x'.join(f'{f:g}' for f in SPEED_FACTORS[1:])} (training side only)",
        "sample_rate_hz": SAMPLE_RATE,
    }


def train(data_dir: str | os.PathLike[str], out: str | os.PathLike[str], *,
          cache_dir: Path | None = CACHE_DIR, c_grid: Sequence[float] = C_GRID) -> dict[str, Any]:
    """Cross-validate, fit the final model on everything, write pkl + manifest + report.

    Returns the manifest (which holds the CV results).
    """
    t0 = time.perf_counter()
    clips = read_corpora(data_dir)
    ds = load_dataset(clips, cache_dir=cache_dir)
    _LOGGER.info("features of %d clips x %d copies in %.0f s", len(clips), len(SPEED_FACTORS), time.perf_counter() - t0)
    cv = cross_validate(ds, c_grid=c_grid)
    X, y, g = ds.training_set(ds.ok[0])
    det = EmotionDetector(C=cv["C"], C_compact=cv["C_compact"]).fit(X, y, groups=g)
    manifest = {
        "training_data": _data_description(Path(data_dir), ds),
        "classifier": "VotingClassifier (soft, equal weights) of two members, each StandardScaler -> "
                      "LinearSVC (one-vs-rest, squared hinge, class_weight=balanced) -> sigmoid "
                      "calibration on speaker-grouped folds: one on all features, one on the "
                      f"{len(COMPACT_COLUMNS)} compact features (no MFCC/log-mel functionals)",
        "python_version": sys.version.split()[0],
        "cv": cv,
    }
    manifest = det.save(out, manifest=manifest)
    _LOGGER.info("trained in %.0f s", time.perf_counter() - t0)
    report = render_report(manifest)
    report_path = Path(out).with_name(Path(out).stem + "_report.md")
    from .emotion_detector import _atomic_write

    _atomic_write(report_path, report.encode())
    return manifest


def evaluate(data_dir: str | os.PathLike[str], *, model_path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Scores of the shipped (or given) model on every clip of a labelled folder.

    Clips are loaded like the training clips (16 kHz, trimmed; short clips are kept, since a
    curated corpus holds only speech). A clip with no voiced speech cannot be classified and is
    listed under ``skipped`` (not counted in ``n``).
    """
    det = EmotionDetector.load(model_path)
    clips = read_corpora(data_dir)
    rows, skipped = [], {}
    for i, clip in enumerate(clips):
        try:
            rows.append((i, clip_features(clip.path)))
        except (AudioInputError, FeatureExtractionError) as exc:
            skipped[clip.path.name] = str(exc)
    if not rows:
        raise FeatureExtractionError(f"none of the {len(clips)} clips in {data_dir} could be analysed.")
    idx = [i for i, _ in rows]
    y = np.array([clips[i].label for i in idx])
    proba = det.predict_proba(np.vstack([v for _, v in rows]))
    result = scores(y, _labels(proba))
    result["n_skipped"] = len(skipped)
    result["skipped"] = skipped
    result["uncertainty"] = _uncertainty(y, proba)
    result["per_corpus_accuracy"] = {
        c: float(np.mean(_labels(proba)[m] == y[m]))
        for c in sorted({clips[i].corpus for i in idx})
        for m in [np.array([clips[i].corpus == c for i in idx])]
    }
    result["model_sha256"] = det.manifest.get("sha256")
    return result


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}%"


def _confusion_md(conf: dict[str, Any], present: Sequence[str]) -> list[str]:
    labels = conf["labels"]
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for lab, row in zip(labels, conf["matrix"]):
        if lab in present:
            lines.append(f"| **{lab}** | " + " | ".join(str(v) for v in row) + " |")
    return lines


def render_report(manifest: dict[str, Any]) -> str:
    """The Markdown training report (committed next to the model)."""
    cv = manifest["cv"]
    data = manifest["training_data"]
    L: list[str] = [
        "# Emotion SVM: training report",
        "",
        f"Model `{manifest['model_file']}` (SHA-256 `{manifest['sha256']}`, {manifest['size_bytes'] / 1e6:.2f} MB), "
        f"features `{manifest['feature_version']}` ({len(manifest['feature_names'])} per clip), "
        f"scikit-learn {manifest['sklearn_version']}, NumPy {manifest['numpy_version']}.",
        "",
        f"Rebuild: `{__import__('personalization_engine.emotion_detector', fromlist=['x']).TRAIN_COMMAND}` (deterministic).",
        "",
        "## Data",
        "",
        "| corpus | speakers | clips (used) | " + " | ".join(EMOTION_LABELS) + " | licence |",
        "|---" * (4 + len(EMOTION_LABELS)) + "|",
    ]
    for c in data["corpora"]:
        L.append(f"| {c['name']} | {c['speakers']} | {c['clips']} ({c['clips_used']}) | "
                 + " | ".join(str(c["per_label"][lab]) for lab in EMOTION_LABELS) + f" | {c['licence']} |")
    L += ["", f"Augmentation: {data['augmentation']}.", "", "## Speaker-held-out cross-validation", ""]
    for corpus, scheme in cv["scheme"].items():
        L.append(f"- {corpus}: {scheme}; folds: " + "; ".join(", ".join(f) for f in cv["folds"][corpus]) + ".")
    L += ["", "`C` of each member chosen from the grid by the mean held-out UAR of the corpora (plain SVM): "
          f"**C = {cv['C']:g}** (all features), **C = {cv['C_compact']:g}** (compact features).", "",
          "| member | C | " + " | ".join(f"{c} UAR" for c in cv["folds"]) + " | criterion |",
          "|---" * (3 + len(cv["folds"])) + "|"]
    for member, key in (("all features", "grid"), ("compact", "grid_compact")):
        for g in cv[key]:
            L.append(f"| {member} | {g['C']:g} | " + " | ".join(_pct(g["held_out_uar"][c]) for c in cv["folds"])
                     + f" | {_pct(g['criterion'])} |")
    L += ["", "Scores of the chosen detector (both calibrated members, probabilities averaged) on held-out speakers:", "",
          "| held-out corpus | n | accuracy | UAR | macro-F1 | fold accuracies |", "|---|---|---|---|---|---|"]
    for corpus, s in cv["per_corpus"].items():
        L.append(f"| {corpus} | {s['n']} | **{_pct(s['accuracy'])}** | {_pct(s['balanced_accuracy'])} | "
                 f"{_pct(s['macro_f1'])} | " + ", ".join(_pct(a) for a in s["fold_accuracy"]) + " |")
    for corpus, s in cv["per_corpus"].items():
        present = list(s["per_class_f1"])
        L += ["", f"### {corpus} (held-out speakers)", "", "| class | F1 | recall |", "|---|---|---|"]
        L += [f"| {lab} | {s['per_class_f1'][lab]:.3f} | {s['per_class_recall'][lab]:.3f} |" for lab in present]
        L += ["", "Confusion matrix (rows: true label):", ""] + _confusion_md(s["confusion"], present)
        L += ["", "Per-speaker accuracy: " + ", ".join(f"{k.split(':')[-1]} {_pct(v)}" for k, v in s["per_speaker_accuracy"].items()) + "."]
        u = s["uncertainty"]
        L += ["", f"Uncertain flag (top probability < {u['threshold']:.2f}): {_pct(u['fraction_uncertain'])} of clips; "
              f"accuracy {_pct(u['accuracy_uncertain'])} on those vs {_pct(u['accuracy_confident'])} on the rest."]
    if cv["cross_corpus"]:
        L += ["", "## Cross-corpus (train on one corpus, test on the other)", "",
              "| train -> test | labels | n | accuracy | UAR | macro-F1 |", "|---|---|---|---|---|---|"]
        for k, s in cv["cross_corpus"].items():
            L.append(f"| {k} | {', '.join(s['labels'])} | {s['n']} | {_pct(s['accuracy'])} | "
                     f"{_pct(s['balanced_accuracy'])} | {_pct(s['macro_f1'])} |")
    L += ["", "## How", "", _HOW, ""]
    return "\n".join(L)


_HOW = """\
Published feature + SVM results on RAVDESS with speaker-independent splits are about 50-60%
(8 classes; MFCC/eGeMAPS/ComParE functionals with RBF or linear SVMs). Note that the task here
has 7 classes (RAVDESS neutral and calm are merged into `calm` by the corpus labels), which
removes one of the largest confusions of the 8-class task, so the numbers are not strictly
comparable. What the model does, with the development measurements that chose it (plain SVM
without calibration, the same speaker folds as above, held-out accuracy RAVDESS / EmoDB):

| variant | RAVDESS | EmoDB |
|---|---|---|
| linear SVM, C=0.001, no speed copies | 62.9% | 72.9% |
| + copy x0.9 | 66.2% | 75.6% |
| + copy x1.1 | 63.9% | 75.8% |
| + copies x0.9 and x1.1 (shipped) | 66.4% | 75.6% |
| + 4 copies (x0.8, 0.9, 1.1, 1.2) | 66.0% | 76.0% |
| + 4 copies (x0.9, 0.95, 1.05, 1.1) | 66.5% | 75.8% |
| RBF SVM, C in {1, 3, 10}, gamma in {0.3, 1}/n_features, 2 copies | 60.4-61.6% | 74.9-77.8% |

The trade-off with other corpora, measured the same way (2 copies, C=0.001; cross-corpus is
the UAR on the shared labels, trained on the whole other corpus):

| features | RAVDESS | EmoDB | RAVDESS->EmoDB | EmoDB->RAVDESS |
|---|---|---|---|---|
| all 608 (the all-feature member) | 66.4% | 75.6% | 32.0% | 32.9% |
| 168 compact (the compact member): pitch, energy, rhythm, voice quality, spectral shape, voiced/unvoiced band means (no MFCC/log-mel functionals) | 60.2% | 70.3% | 44.0% | 37.0% |
| those 168 + MFCC skew/kurtosis/voiced/unvoiced means (248) | 63.5% | 72.9% | 45.1% | 37.4% |
| all 608, prosody block weighted x2 | 66.1% | 75.8% | 34.2% | 33.7% |

The MFCC/log-mel statistics buy 3-6 points on held-out speakers of the training corpora and
cost 4-13 points on a corpus never seen. The shipped detector takes both: it **averages the
calibrated probabilities of a model on all 608 features and a model on the 168 compact
features** (one scikit-learn `VotingClassifier`, soft voting, equal weights). Candidates
compared for that choice, each the calibrated detector, with the same speaker folds as above
(held-out accuracy; cross-corpus UAR; "voices" = labels on the 15 neutral read-speech clips of
`../shared/data/voices`, model trained on everything):

| candidate | RAVDESS | EmoDB | RAVDESS->EmoDB | EmoDB->RAVDESS | cross mean | voices |
|---|---|---|---|---|---|---|
| all 608, C=0.003 (previous model) | 66.7% | 74.2% | 30.7% | 32.9% | 31.8% | disgust 8, calm 4, sad 2, angry 1 |
| compact 168, C=0.001 | 61.1% | 70.7% | 43.4% | 37.6% | 40.5% | disgust 6, calm 5, sad 2, angry 2 |
| compact 168, C=0.003 | 61.6% | 71.8% | 44.6% | 35.7% | 40.2% | disgust 7, calm 5, angry 2, sad 1 |
| mean of all-608 (C=0.003) and compact (C=0.001) | 65.9% | 74.7% | 40.8% | 36.9% | 38.8% | disgust 7, calm 4, sad 2, angry 2 |
| **mean of all-608 (C=0.003) and compact (C=0.003): shipped, C by the grid** | 65.9% | 75.1% | 40.2% | 36.7% | **38.5%** | disgust 7, calm 4, sad 2, angry 2 |
| all-608 and compact (C=0.001), weights 0.45 / 0.55 | 66.0% | 74.2% | 41.4% | 37.3% | 39.3% | disgust 6, calm 5, sad 2, angry 2 |
| same, weights 0.4 / 0.6 | 65.2% | 74.7% | 42.6% | 37.6% | 40.1% | disgust 6, calm 5, sad 2, angry 2 |
| same, weights 1/3 / 2/3 | 64.9% | 73.6% | 42.5% | 37.6% | 40.0% | disgust 6, calm 5, sad 2, angry 2 |
| per-clip cepstral mean normalisation: MFCC/log-mel means dropped, percentiles and voiced/unvoiced means re the clip mean (548), C=0.003 | 63.3% | 74.7% | 27.8% | 33.5% | 30.6% | disgust 7, angry 3, calm 2, sad 2, happy 1 |
| that + spectral-shape functionals re their clip mean, voiced-unvoiced contrasts (530), C=0.003 | 62.6% | 72.7% | 29.2% | 34.1% | 31.6% | disgust 8, calm 2, sad 2, angry 2, happy 1 |
| mean of the 548 normalised (C=0.003) and compact (C=0.001) | 64.8% | 73.1% | 35.5% | 37.0% | 36.2% | disgust 6, calm 5, sad 2, angry 2 |
| mean of all-608 and the 530 normalised | 65.3% | 75.1% | 29.6% | 35.0% | 32.3% | disgust 9, calm 3, sad 2, happy 1 |
| compact without pause/segment/duration features (161), C=0.001 | 60.9% | 69.2% | 39.8% | 34.4% | 37.1% | disgust 5, calm 5, sad 2, angry 2, surprised 1 |
| mean of all-608 and that | 65.9% | 73.8% | 37.1% | 36.7% | 36.9% | disgust 5, calm 5, sad 2, angry 2, surprised 1 |

The average keeps RAVDESS held-out accuracy above 65% and EmoDB unchanged while gaining 7 points
of cross-corpus UAR over the all-feature model. Per-clip cepstral mean normalisation (the usual
channel fix) *lost* on every measure: the clip-level spectral means carry emotion (vocal effort
tilts the spectrum), and the corpus gap is not mainly a channel effect. Leaning further towards
the compact model (weights 0.4 / 0.6) gains about 1 more point of cross-corpus UAR but leaves
RAVDESS at 65.2%; those weights would be tuned on the cross-corpus numbers themselves (two
test sets, standard error about 2 points), so the untuned equal weights are shipped. Each
member's `C` is chosen by the grid above.

1. **Clip-relative features.** Loud frames are set to 0 dB and pitch is in semitones re the
   clip's own median F0, so level and voice register of an unseen speaker move the features
   less; MFCC/log-mel functionals are joined by eGeMAPS-style voiced/unvoiced spectral
   statistics, loudness, pitch shape, HNR, jitter/shimmer approximations, H1-H2/H1-A3 and
   rhythm (608 features). Leaving out any one block (MFCC functionals, deltas, shape; log-mel;
   spectral shape; voiced/unvoiced; loudness; absolute F0; duration) changed the mean held-out
   UAR by at most 1.5 points and never helped both corpora by more than 0.5, so all are kept.
2. **A linear SVM with strong regularisation** instead of an RBF kernel: with 608 standardised
   features and ~17 training actors, the wide-margin linear model transfers to new voices
   better on RAVDESS (about +5 points), at a small cost on EmoDB.
3. **Speed perturbation** (x0.9, x1.1) of the training clips simulates other vocal-tract
   lengths and tempos: +3.5 points on RAVDESS and +2.6 on EmoDB; more copies did not help.

`C` is chosen on held-out speakers of *both* corpora (mean UAR), never on one corpus; EmoDB is
always in training. The numbers above are cross-validated with the same speaker folds that
chose `C` and the recipe, so they carry a small selection optimism. Cross-corpus accuracy
(train on one language and recording set, test on the other) is far lower: the model learns
how these actors express emotion in these studios, and a new corpus shifts that.

Known limit: on the 15 read-speech reference clips in `../shared/data/voices` (LibriSpeech,
LJ Speech, CMU Arctic; neutral reading, no emotion labels, 3.5-8.5 s with several phrases) the
shipped model says `disgust` for 7, `calm` for 4, `sad` for 2 and `angry` for 2 (1 flagged
uncertain; the all-feature model alone said `disgust` for 8). No candidate above fixed this
(the best left 5 of 15 at `disgust`): neutral reading is slow and low in effort, which the
acted corpora tie to disgust and sadness more than to their short neutral sentences. Acted, single-sentence studio emotion is not read audiobook speech; treat the label
as a hint, and read the distribution and the `uncertain` flag with it."""


def main(argv: list[str] | None = None) -> int:
    """Command line of the emotion detector: ``train`` and ``eval`` (exit 0 ok, 2 bad input)."""
    import argparse

    from .emotion_detector import DEFAULT_MODEL_PATH

    p = argparse.ArgumentParser(prog="python -m personalization_engine.emotion_detector",
                                description="Train or evaluate the emotion SVM.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on labelled corpora and write pkl + manifest + report")
    t.add_argument("--data", required=True, help="a folder with labels.csv, or a folder of such folders")
    t.add_argument("--out", default=str(DEFAULT_MODEL_PATH), help="model path (.pkl); .json and _report.md go beside it")
    t.add_argument("--no-cache", action="store_true", help=f"do not cache features under {CACHE_DIR}")
    e = sub.add_parser("eval", help="score the model on a labelled folder (e.g. a corpus it never saw)")
    e.add_argument("--data", required=True, help="a folder with labels.csv (file,emotion7,...), or a folder of such folders")
    e.add_argument("--model", default=None, help="model path (default: the shipped models/svm_model.pkl)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "train":
            manifest = train(args.data, args.out, cache_dir=None if args.no_cache else CACHE_DIR)
            sys.stdout.write(render_report(manifest) + "\n")
        else:
            result = evaluate(args.data, model_path=args.model)
            sys.stdout.write(_eval_text(result, args.json) + "\n")
    except PersonalizationError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


def _eval_text(r: dict[str, Any], as_json: bool) -> str:
    if as_json:
        keys = ("n", "accuracy", "balanced_accuracy", "macro_f1", "per_class_recall", "per_class_f1",
                "n_skipped", "per_corpus_accuracy", "confusion", "uncertainty", "model_sha256")
        return json.dumps({k: r[k] for k in keys})
    lines = [f"clips: {r['n']} (skipped {r['n_skipped']})",
             f"accuracy:          {_pct(r['accuracy'])}",
             f"balanced accuracy: {_pct(r['balanced_accuracy'])} (UAR)",
             f"macro-F1:          {_pct(r['macro_f1'])}",
             "per-class recall:  " + ", ".join(f"{k} {_pct(v)}" for k, v in r["per_class_recall"].items())]
    return "\n".join(lines)
