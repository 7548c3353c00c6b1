"""The exception hierarchy of the engine.

Every error the library raises on purpose derives from :class:`PersonalizationError`; the
REPL and the command lines catch that base class and print its message (which says what was
received, what is allowed and what to do next). Anything else is a bug and shows a traceback.
"""

from __future__ import annotations


class PersonalizationError(Exception):
    """Base class of every deliberate error of the engine."""


class AudioInputError(PersonalizationError, ValueError):
    """The audio given to the engine is missing, unreadable, empty, non-finite or unusable."""


class FeatureExtractionError(PersonalizationError):
    """The analysis could not measure what it needs (e.g. no voiced speech at all)."""


class ModelLoadError(PersonalizationError):
    """A model (the emotion SVM or Qwen3-TTS weights) is missing, damaged or incompatible."""


class ProfileError(PersonalizationError, ValueError):
    """A voice, voice-library entry or option combination is invalid."""


class SynthesisError(PersonalizationError):
    """Text could not be synthesized (bad text, unsupported language, generation failure)."""


class OutputWriteError(PersonalizationError):
    """An output pair could not be written; nothing half-written is left behind."""


class DeviceError(PersonalizationError):
    """Audio hardware (PortAudio, microphone, speakers) is unavailable or failed."""
