"""``python -m personalization_engine.emotion_detector train|eval``: the emotion model's command line.

Exit status 0 on success, 2 on bad input (a message on stderr, no traceback).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import numpy as np

from ...errors import AudioInputError, FeatureExtractionError, PersonalizationError
from ..detector import EmotionDetector


def evaluate(data_dir: str | os.PathLike[str], *, model_path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Scores of the shipped (or given) model on every clip of a labelled folder.

    Clips are loaded like the training clips (16 kHz, trimmed; short clips are kept, since a
    curated corpus holds only speech). A clip with no voiced speech cannot be classified and is
    listed under ``skipped`` (not counted in ``n``). ``uncertain`` uses the model's threshold.
    """
    from .data import clip_features, read_corpora
    from .train import _labels, scores

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
    corpora = np.array([clips[i].corpus for i in idx])
    proba = det.predict_proba(np.vstack([v for _, v in rows]))
    pred, uncertain = _labels(proba), proba.max(axis=1) < det.uncertain_below
    result = scores(y, pred, uncertain)
    result["n_skipped"] = len(skipped)
    result["skipped"] = skipped
    result["uncertainty"] = {
        "threshold": det.uncertain_below,
        **{k: result.pop(k) for k in ("fraction_uncertain", "accuracy_confident", "accuracy_uncertain")},
        "calm_or_uncertain_of_calm": float(np.mean((pred[y == "calm"] == "calm") | uncertain[y == "calm"]))
        if (y == "calm").any() else float("nan"),
    }
    result.pop("calm_or_uncertain", None)
    result["per_corpus_accuracy"] = {str(c): float(np.mean(pred[corpora == c] == y[corpora == c]))
                                     for c in sorted(set(corpora))}
    result["model_sha256"] = det.manifest.get("sha256")
    return result


def main(argv: list[str] | None = None) -> int:
    """Parse ``train`` / ``eval`` and run it (see the module doc)."""
    import argparse

    from ..detector import DEFAULT_MODEL_PATH
    from .data import cache_dir

    p = argparse.ArgumentParser(prog="python -m personalization_engine.emotion_detector",
                                description="Train or evaluate the emotion detector.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on labelled corpora and write pkl + manifest + report")
    t.add_argument("--data", required=True, help="a folder with labels.csv, or any folder above such folders")
    t.add_argument("--out", default=str(DEFAULT_MODEL_PATH),
                   help="model path (.pkl); .json and _report.md go beside it")
    t.add_argument("--no-cache", action="store_true",
                   help="do not cache features (default cache: $EMOTION_FEATURE_CACHE or "
                        "~/.cache/personalization_engine/emotion)")
    e = sub.add_parser("eval", help="score the model on a labelled folder (e.g. a corpus it never saw)")
    e.add_argument("--data", required=True,
                   help="a folder with labels.csv (file,emotion7,...), or a folder above such folders")
    e.add_argument("--model", default=None, help="model path (default: the shipped models/svm_model.pkl)")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if args.command == "train":
            from .report import render_report
            from .train import train

            if not args.no_cache:
                logging.getLogger(__name__).info("feature cache: %s", cache_dir())
            manifest = train(args.data, args.out, use_cache=not args.no_cache)
            sys.stdout.write(render_report(manifest))
        else:
            result = evaluate(args.data, model_path=args.model)
            sys.stdout.write(_eval_text(result, args.json) + "\n")
    except PersonalizationError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}%"


def _eval_text(r: dict[str, Any], as_json: bool) -> str:
    if as_json:
        keys = ("n", "accuracy", "balanced_accuracy", "macro_f1", "per_class_recall", "per_class_f1",
                "n_skipped", "per_corpus_accuracy", "confusion", "uncertainty", "model_sha256")
        return json.dumps({k: r[k] for k in keys})
    u = r["uncertainty"]
    return "\n".join([
        f"clips: {r['n']} (skipped {r['n_skipped']})",
        f"accuracy:          {_pct(r['accuracy'])}",
        f"balanced accuracy: {_pct(r['balanced_accuracy'])} (UAR)",
        f"macro-F1:          {_pct(r['macro_f1'])}",
        "per-class recall:  " + ", ".join(f"{k} {_pct(v)}" for k, v in r["per_class_recall"].items()),
        f"uncertain:         {_pct(u['fraction_uncertain'])} (top probability < {u['threshold']:.2f})",
    ])
