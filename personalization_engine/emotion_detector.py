"""Alias of :mod:`personalization_engine.emotion.detector` (kept for existing imports and the
command line ``python -m personalization_engine.emotion_detector train|eval``)."""

from __future__ import annotations

from .emotion.detector import (
    DEFAULT_MODEL_PATH,
    MANIFEST_FORMAT,
    MODEL_VERSION,
    TRAIN_COMMAND,
    UNCERTAIN_BELOW,
    EmotionDetector,
    _AllowListUnpickler,
    estimate_from_proba,
    main,
)

__all__ = [
    "DEFAULT_MODEL_PATH", "MANIFEST_FORMAT", "MODEL_VERSION", "TRAIN_COMMAND", "UNCERTAIN_BELOW",
    "EmotionDetector", "_AllowListUnpickler", "estimate_from_proba", "main",
]

if __name__ == "__main__":
    raise SystemExit(main())
