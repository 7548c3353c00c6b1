"""The analysis layer in one call: audio -> Voice DNA + emotion -> VoiceProfile.

Used by the ``analyze`` command, the REPL, the adapter (a Voice carries its reference's
profile) and the fingerprint writer (the output's own profile). The emotion model is optional:
when it is missing or cannot be loaded the profile has no emotion, and the reason is kept in
:func:`emotion_unavailable_reason` so the UI can say why once.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import rates
from .audio_io import load_audio
from .errors import ModelLoadError
from .schema import AudioClip, VoiceProfile

_LOGGER = logging.getLogger(__name__)

#: Sample rate of the whole analysis layer (Hz): the training corpora are 16 kHz, and the
#: voice band that pitch, energy and MFCCs need lies below 8 kHz.
ANALYSIS_SAMPLE_RATE = rates.ANALYSIS_SAMPLE_RATE

_detector_lock = threading.Lock()
_detector_cache: dict[str, Any] = {}


def default_detector(path: str | Path | None = None) -> Any | None:
    """The shipped emotion detector, loaded once (hash-checked); None when unavailable."""
    from . import emotion_detector

    key = str(path or "default")
    with _detector_lock:
        if key not in _detector_cache:
            try:
                _detector_cache[key] = emotion_detector.EmotionDetector.load(path) if path else (
                    emotion_detector.EmotionDetector.load()
                )
            except ModelLoadError as exc:
                _LOGGER.warning("emotion detection unavailable: %s", exc)
                _detector_cache[key] = exc
        found = _detector_cache[key]
    return None if isinstance(found, Exception) else found


def preload_emotion() -> None:
    """Load the shipped emotion detector and build its voice encoder (imports scikit-learn and
    torch): what the REPL runs in the background, so the first analysis finds both ready."""
    if default_detector() is not None:
        from .emotion import voice_encoder

        try:
            voice_encoder.encoder()
        except ModelLoadError as exc:  # already checked by the detector's load; never fail here
            _LOGGER.warning("emotion detection unavailable: %s", exc)


def emotion_unavailable_reason(profile: VoiceProfile | None = None, *, path: str | Path | None = None) -> str | None:
    """Why there is no emotion estimate: the one place that says it.

    Without ``profile``: why the emotion detector (at ``path``, default the shipped one) is
    unavailable, or None when it loads. With ``profile``: None when the profile has an emotion,
    else why not (the detector's problem, or "the emotion detector gave no estimate"). Never
    raises: the emotion model is optional.
    """
    if profile is not None and profile.emotion is not None:
        return None
    try:
        default_detector(path)
    except Exception as exc:  # e.g. scikit-learn missing: say why, never fail
        return f"{type(exc).__name__}: {exc}"
    found = _detector_cache.get(str(path or "default"))
    if isinstance(found, Exception):
        return str(found)
    return "the emotion detector gave no estimate" if profile is not None else None


def analyze_voice(
    source: str | Path | np.ndarray | AudioClip | tuple[np.ndarray, int],
    *,
    input_sample_rate: int | None = None,
    emotion: bool = True,
    detector: Any | None = None,
    name: str | None = None,
) -> tuple[AudioClip, VoiceProfile]:
    """Load, validate and analyse a voice clip.

    Parameters
    ----------
    source : path, array, AudioClip or (samples, sample_rate)
        The clip; see :func:`audio_io.load_audio`.
    input_sample_rate : int, optional
        Sample rate of an array ``source``.
    emotion : bool
        Also classify the emotion (when the detector is available).
    detector : EmotionDetector, optional
        A detector to use instead of the shipped one.
    name : str, optional
        What messages call the clip (e.g. ``"the recording"``; default: its path or ``<array>``).

    Returns
    -------
    (AudioClip, VoiceProfile)
        The 16 kHz trimmed clip that was analysed, and its Voice DNA plus emotion.

    Raises
    ------
    AudioInputError, FeatureExtractionError
        Unusable audio (missing, corrupt, silent, too short, no voiced speech).
    """
    from .feature_extractor import extract_features

    clip = load_audio(source, sample_rate=ANALYSIS_SAMPLE_RATE, input_sample_rate=input_sample_rate, name=name)
    t0 = time.perf_counter()
    prosody = extract_features(clip.samples, clip.sample_rate)
    estimate = None
    if emotion:
        det = detector if detector is not None else default_detector()
        if det is not None:
            estimate = det.predict(clip.samples, clip.sample_rate, prosody=prosody)
    elapsed = time.perf_counter() - t0
    return clip, VoiceProfile(prosody=prosody, emotion=estimate, analysis_time_s=elapsed)
