"""Argument checks and reference preparation of the Qwen3-TTS adapter (no torch).

Every user input is checked here once, where it enters, before any weights are touched: text,
transcript, sampling options and the reference clip (through ``audio_io.load_audio``). Errors
say what was received, what is allowed and what to do.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import PersonalizationError, ProfileError, SynthesisError
from .schema import AudioClip, VoiceProfile

_LOGGER = logging.getLogger(__name__)

#: Output sample rate of the 12 Hz codec, and the rate references are prepared at (Hz).
SAMPLE_RATE = 24_000
#: Silence appended to the trimmed reference before encoding it (s). In ICL mode the model
#: continues the reference codes; ending them in silence keeps the reference's last phoneme
#: from leaking into the output and the first new phoneme from being swallowed.
REF_TAIL_SILENCE_S = 0.5
#: Longest text per generate call (characters), ~6 minutes of speech; split longer documents.
MAX_TEXT_CHARS = 5_000
MAX_TRANSCRIPT_CHARS = 1_000


def prepare_reference(samples: np.ndarray) -> np.ndarray:
    """The trimmed reference with REF_TAIL_SILENCE_S of silence appended (24 kHz float32)."""
    tail = np.zeros(int(round(REF_TAIL_SILENCE_S * SAMPLE_RATE)), dtype=np.float32)
    return np.concatenate([np.asarray(samples, dtype=np.float32), tail])


def check_text(text: str) -> str:
    if not isinstance(text, str):
        raise SynthesisError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise SynthesisError("text is empty (or only whitespace); type what the voice should say")
    if len(text) > MAX_TEXT_CHARS:
        raise SynthesisError(
            f"text is {len(text):,} characters; at most {MAX_TEXT_CHARS:,} per call (~6 minutes of speech). "
            "Split it, e.g. by paragraph, and generate each part."
        )
    return text


def check_transcript(transcript: str | None) -> str | None:
    if transcript is None:
        return None
    if not isinstance(transcript, str):
        raise ProfileError(f"transcript must be a string or None, got {type(transcript).__name__}")
    transcript = " ".join(transcript.split())
    if len(transcript) > MAX_TRANSCRIPT_CHARS:
        raise ProfileError(f"transcript is {len(transcript)} characters; at most {MAX_TRANSCRIPT_CHARS} "
                           "(a reference should be 3-15 s of speech)")
    return transcript or None


def check_sampling(temperature: float | None, top_k: int | None, top_p: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
            raise ProfileError(f"temperature must be a number in [0, 2] (0 = greedy), got {temperature!r}")
        if temperature == 0:
            out.update(do_sample=False, subtalker_dosample=False)
        else:
            out["temperature"] = float(temperature)
    check_int("top_k", top_k, 0, 3072)
    if top_k is not None:
        out["top_k"] = int(top_k)
    if top_p is not None:
        if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1:
            raise ProfileError(f"top_p must be in (0, 1], got {top_p!r}")
        out["top_p"] = float(top_p)
    return out


def check_int(name: str, value: int | None, low: int, high: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise ProfileError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def load_reference(reference: Any) -> AudioClip:
    from .audio_io import load_audio

    if isinstance(reference, AudioClip):
        return load_audio(reference.samples, sample_rate=SAMPLE_RATE, input_sample_rate=reference.sample_rate)
    if isinstance(reference, tuple) and len(reference) == 2:
        samples, sr = reference
        return load_audio(np.asarray(samples), sample_rate=SAMPLE_RATE, input_sample_rate=int(sr))
    if isinstance(reference, np.ndarray):
        raise ProfileError("pass a NumPy reference as (samples, sample_rate) so its rate is known")
    return load_audio(reference, sample_rate=SAMPLE_RATE)


def reference_sha256(reference: Any, clip: AudioClip) -> str:
    if isinstance(reference, (str, os.PathLike)):
        h = hashlib.sha256()
        with open(reference, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    samples = reference.samples if isinstance(reference, AudioClip) else np.asarray(reference[0])
    return hashlib.sha256(np.ascontiguousarray(samples, dtype=np.float32).tobytes()).hexdigest()


def reference_name(reference: Any) -> str | None:
    if isinstance(reference, (str, os.PathLike)):
        return Path(reference).stem
    if isinstance(reference, AudioClip) and reference.source != "<array>":
        return Path(reference.source).stem
    return None


def analyze_reference(clip: AudioClip) -> VoiceProfile | None:
    """The reference's Voice DNA and emotion, or None (logged) when the analysis layer fails.

    Emotion is optional: if the emotion detector cannot even be imported, the Voice DNA is
    still measured without it.
    """
    try:
        from .analysis import analyze_voice
    except ImportError as exc:
        _LOGGER.warning("Voice DNA of the reference is unavailable: %s", exc)
        return None
    source = (clip.samples, clip.sample_rate)
    for emotion in (True, False):
        try:
            return analyze_voice(source, emotion=emotion)[1]
        except ImportError as exc:
            _LOGGER.warning("emotion detection unavailable (%s); measuring the Voice DNA without it", exc)
        except PersonalizationError as exc:
            _LOGGER.warning("Voice DNA of the reference is unavailable: %s", exc)
            return None
    return None
