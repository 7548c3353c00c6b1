"""TTS Personalization Engine: Voice DNA analysis and zero-shot voice cloning on Qwen3-TTS.

The public API is re-exported here and loaded lazily, so ``import personalization_engine`` stays
light (no torch, no PortAudio) until a name is used.
"""

from __future__ import annotations

from typing import Any

from .errors import PersonalizationError
from .schema import GenerationResult, ProsodyFeatures, VoiceProfile

__all__ = [
    "load_audio",
    "extract_features",
    "EmotionDetector",
    "build_fingerprint",
    "load_model",
    "ProsodyFeatures",
    "VoiceProfile",
    "GenerationResult",
    "PersonalizationError",
]

_LAZY = {
    "load_audio": "audio_io",
    "extract_features": "feature_extractor",
    "EmotionDetector": "emotion_detector",
    "build_fingerprint": "fingerprint",
    "load_model": "tts",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
