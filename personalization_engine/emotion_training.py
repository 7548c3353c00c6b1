"""Alias of :mod:`personalization_engine.emotion.training` (kept for existing imports)."""

from __future__ import annotations

from .emotion.training.cli import evaluate, main
from .emotion.training.report import render_report
from .emotion.training.train import (
    CORPUS_WEIGHTS,
    cross_validate,
    sample_weights,
    train,
)

__all__ = ["CORPUS_WEIGHTS", "cross_validate", "evaluate", "main", "render_report", "sample_weights", "train"]
