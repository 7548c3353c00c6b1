"""Alias of :mod:`personalization_engine.emotion.training.data` (kept for existing imports)."""

from __future__ import annotations

from .emotion.training.data import (
    LabelledClip,
    cache_dir,
    cache_key,
    clip_features,
    load_corpus_clip,
    read_corpora,
)

__all__ = ["LabelledClip", "cache_dir", "cache_key", "clip_features", "load_corpus_clip", "read_corpora"]
