"""Emotion of a voice clip: the detector (:mod:`.detector`) and its features (:mod:`.features`).

Training lives in :mod:`.training` and is never imported at run time.
"""

from __future__ import annotations

from .detector import EmotionDetector

__all__ = ["EmotionDetector"]
