"""Typed records passed between the stages of the engine.

Data flow::

    path -> audio_io.load_audio -> AudioClip (samples, sample_rate, speech span, warnings)
         -> feature_extractor.extract_features -> ProsodyFeatures ("Voice DNA")
         -> emotion_detector.EmotionDetector.predict -> EmotionEstimate
    VoiceProfile = ProsodyFeatures + EmotionEstimate

Every record is a frozen dataclass with ``to_dict`` returning plain JSON types (NumPy values
become Python floats, contours become lists), so JSON outputs are stable and easy to diff.
Units are in the field names (``_hz``, ``_s``, ``_db``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

#: Emotion labels, in the order used by every probability vector of the engine.
EMOTION_LABELS: tuple[str, ...] = ("calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def _f(x: float | np.floating | None, nd: int = 4) -> float | None:
    """A plain, rounded float for JSON (None and NaN become None)."""
    if x is None:
        return None
    v = float(x)
    if not np.isfinite(v):
        return None
    return round(v, nd)


@dataclass(frozen=True)
class AudioClip:
    """Mono float32 audio as loaded and validated by :func:`audio_io.load_audio`.

    Unpacks like a tuple: ``samples, sample_rate = load_audio(path)``.
    """

    samples: np.ndarray
    """float32 mono samples in [-1, 1], leading/trailing silence trimmed (if trimming was on)."""
    sample_rate: int
    """Sample rate of ``samples`` in Hz."""
    source: str = "<array>"
    """File path or ``"<array>"``."""
    original_sample_rate: int = 0
    """Sample rate of the source before resampling (Hz)."""
    original_duration_s: float = 0.0
    """Duration of the source before trimming and window selection (s)."""
    speech_duration_s: float = 0.0
    """Seconds of detected speech (non-silent frames) in ``samples``."""
    warnings: tuple[str, ...] = ()
    """Human-readable warnings (clipping, long clip shortened to its best window, ...)."""

    def __iter__(self) -> Iterator[Any]:
        yield self.samples
        yield self.sample_rate

    @property
    def duration_s(self) -> float:
        return len(self.samples) / float(self.sample_rate)


@dataclass(frozen=True)
class PitchContour:
    """Frame-wise F0 track."""

    times_s: np.ndarray
    """Frame centre times (s)."""
    f0_hz: np.ndarray
    """F0 per frame in Hz; NaN where unvoiced."""
    voiced: np.ndarray
    """Boolean voicing decision per frame."""


@dataclass(frozen=True)
class PitchStats:
    """Pitch statistics over voiced frames, plus the contour they come from."""

    median_hz: float
    mean_hz: float
    std_hz: float
    p5_hz: float
    p95_hz: float
    range_semitones: float
    """12 * log2(p95 / p5)."""
    voiced_fraction: float
    """Voiced frames / frames inside the speech span."""
    register: str
    """bass / baritone / tenor / alto / mezzo / soprano (see feature_extractor.REGISTER_BOUNDS_HZ)."""
    contour: PitchContour

    def to_dict(self, *, contour: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "median_hz": _f(self.median_hz, 2),
            "mean_hz": _f(self.mean_hz, 2),
            "std_hz": _f(self.std_hz, 2),
            "p5_hz": _f(self.p5_hz, 2),
            "p95_hz": _f(self.p95_hz, 2),
            "range_hz": _f(self.p95_hz - self.p5_hz, 2),
            "range_semitones": _f(self.range_semitones, 2),
            "voiced_fraction": _f(self.voiced_fraction, 3),
            "register": self.register,
        }
        if contour:
            d["contour"] = {
                "times_s": [round(float(t), 3) for t in self.contour.times_s],
                "f0_hz": [_f(v, 1) for v in self.contour.f0_hz],
            }
        return d


@dataclass(frozen=True)
class StressPoint:
    """A prominent syllable nucleus."""

    time_s: float
    prominence: float
    """Relative prominence in [0, 1] from energy and pitch (1 = most prominent of the clip)."""

    def to_dict(self) -> dict[str, Any]:
        return {"time_s": _f(self.time_s, 3), "prominence": _f(self.prominence, 3)}


@dataclass(frozen=True)
class EnergyStats:
    """RMS energy contour and the stress pattern."""

    mean_db: float
    """Mean RMS level over speech frames (dBFS)."""
    dynamic_range_db: float
    """p95 - p5 of the RMS level over speech frames (dB)."""
    times_s: np.ndarray
    rms_db: np.ndarray
    """RMS contour in dBFS."""
    stress: tuple[StressPoint, ...] = ()

    def to_dict(self, *, contour: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "mean_db": _f(self.mean_db, 2),
            "dynamic_range_db": _f(self.dynamic_range_db, 2),
            "stress": [s.to_dict() for s in self.stress],
        }
        if contour:
            d["contour"] = {
                "times_s": [round(float(t), 3) for t in self.times_s],
                "rms_db": [_f(v, 1) for v in self.rms_db],
            }
        return d


@dataclass(frozen=True)
class RateStats:
    """Speaking rate in the spirit of de Jong & Wempe (2009)."""

    syllable_count: int
    syllables_per_s: float
    """Syllables / whole (trimmed) clip duration."""
    articulation_rate: float
    """Syllables / speech duration (pauses excluded), syllables per second."""
    pause_count: int
    pause_ratio: float
    """Pause time / clip duration."""
    speech_duration_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "syllable_count": int(self.syllable_count),
            "syllables_per_s": _f(self.syllables_per_s, 3),
            "articulation_rate": _f(self.articulation_rate, 3),
            "pause_count": int(self.pause_count),
            "pause_ratio": _f(self.pause_ratio, 3),
            "speech_duration_s": _f(self.speech_duration_s, 3),
        }


@dataclass(frozen=True)
class ProsodyFeatures:
    """The "Voice DNA" of one clip: pitch, energy/stress and speaking rate."""

    duration_s: float
    speech_duration_s: float
    sample_rate: int
    pitch: PitchStats
    energy: EnergyStats
    rate: RateStats

    def to_dict(self, *, contours: bool = False) -> dict[str, Any]:
        return {
            "duration_s": _f(self.duration_s, 3),
            "speech_duration_s": _f(self.speech_duration_s, 3),
            "sample_rate": int(self.sample_rate),
            "pitch": self.pitch.to_dict(contour=contours),
            "energy": self.energy.to_dict(contour=contours),
            "rate": self.rate.to_dict(),
        }


@dataclass(frozen=True)
class EmotionEstimate:
    """The emotion detector's answer for one clip."""

    label: str
    probability: float
    distribution: dict[str, float]
    """Probability of each of EMOTION_LABELS (sums to 1)."""
    uncertain: bool = False
    """True when ``probability`` is below the detector's documented threshold."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "probability": _f(self.probability, 4),
            "distribution": {k: _f(v, 4) for k, v in self.distribution.items()},
            "uncertain": bool(self.uncertain),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EmotionEstimate":
        return cls(
            label=str(d["label"]),
            probability=float(d["probability"]),
            distribution={str(k): float(v) for k, v in d["distribution"].items()},
            uncertain=bool(d.get("uncertain", False)),
        )


@dataclass(frozen=True)
class VoiceProfile:
    """Everything the analysis layer knows about a voice: Voice DNA plus emotion."""

    prosody: ProsodyFeatures
    emotion: EmotionEstimate | None = None
    analysis_time_s: float = 0.0

    def to_dict(self, *, contours: bool = False) -> dict[str, Any]:
        d = self.prosody.to_dict(contours=contours)
        if self.emotion is not None:
            d["emotion"] = self.emotion.to_dict()
        d["analysis_time_s"] = _f(self.analysis_time_s, 4)
        return d


@dataclass(frozen=True)
class GenerationResult:
    """One segment (or chunk) of synthesized audio, shaped after mlx-audio's record.

    ``real_time_factor`` is processing time / audio duration (lower is faster; 0.1 means ten
    times faster than real time). mlx-audio uses the name for the inverse ratio.
    """

    audio: np.ndarray
    """float32 mono in [-1, 1]."""
    sample_rate: int
    segment_idx: int
    frames: int
    """Codec frames of this segment (12.5 per second of audio)."""
    audio_duration_s: float
    processing_time_s: float
    real_time_factor: float
    peak_memory_gb: float
    is_final: bool
    text: str = ""
    similarity: float | None = None
    """Cosine similarity of the speaker embedding of ``audio`` to the voice's (None if unknown)."""
    time_to_first_audio_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.audio_duration_s

    def audio_int16(self) -> np.ndarray:
        """The audio as PCM 16 (derived, never stored twice)."""
        return (np.clip(self.audio, -1.0, 1.0) * 32767.0).astype(np.int16)
