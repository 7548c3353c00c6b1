"""Alias of :mod:`personalization_engine.emotion.features` (kept for existing imports)."""

from __future__ import annotations

from .emotion.features import (
    COMPACT_COLUMNS,
    COMPACT_FEATURE_NAMES,
    FEATURE_NAMES,
    FEATURE_VERSION,
    SAMPLE_RATE,
    compute_features,
)

__all__ = ["COMPACT_COLUMNS", "COMPACT_FEATURE_NAMES", "FEATURE_NAMES", "FEATURE_VERSION", "SAMPLE_RATE",
           "compute_features"]
