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

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

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
    """True when ``probability`` is below the detector's cross-validated threshold: show
    :meth:`describe`, never the bare label."""

    def describe(self, top: int = 3) -> str:
        """The estimate for people: ``"calm 0.81"``, or when uncertain
        ``"uncertain (calm 0.34, sad 0.21, happy 0.15)"`` (the ``top`` most probable labels)."""
        if not self.uncertain:
            return f"{self.label} {self.probability:.2f}"
        ranked = sorted(self.distribution.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        return "uncertain (" + ", ".join(f"{k} {v:.2f}" for k, v in ranked) + ")"

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "probability": _f(self.probability, 4),
            "distribution": {k: _f(v, 4) for k, v in self.distribution.items()},
            "uncertain": bool(self.uncertain),
            "text": self.describe(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmotionEstimate:
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


# --- Fingerprint: the JSON written beside every cloned wav (see fingerprint.py) -------------

#: Version of the fingerprint JSON layout; ``fingerprint.schema.json`` validates it.
#: Bump the minor number for added optional fields, the major one for anything else.
FINGERPRINT_SCHEMA_VERSION = "1.0"


@dataclass(frozen=True)
class ReferenceInfo:
    """The voice a clone was made from."""

    name: str
    """File name of the reference clip, or the voice-library name."""
    kind: str
    """``"file"`` (--ref, /load), ``"recording"`` (the microphone) or ``"voice"`` (/voice use)."""
    sha256: str | None
    """SHA-256 of the reference audio (None when unknown)."""
    transcript: str | None = None
    """Transcript of the reference (ICL mode), else None."""
    profile: VoiceProfile | None = None
    """The reference's Voice DNA and emotion."""
    emotion_unavailable: str | None = None
    """Why the reference has no emotion estimate (None when it has one)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "sha256": self.sha256,
            "transcript": self.transcript,
            "voice_dna": self.profile.prosody.to_dict() if self.profile is not None else None,
            "emotion": _emotion_dict(self.profile),
            "emotion_unavailable": self.emotion_unavailable,
        }


@dataclass(frozen=True)
class ModelInfo:
    """Which model made a clone, and how."""

    model_id: str
    size: str
    """``"0.6b"``, ``"1.7b"`` or ``"tiny"``."""
    dtype: str
    device: str
    mode: str
    """Voice-prompt mode: ``"xvector"`` or ``"icl"``."""
    seed: int | None = None
    kind: str = "base"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "size": self.size,
            "kind": self.kind,
            "dtype": self.dtype,
            "device": self.device,
            "mode": self.mode,
            "seed": None if self.seed is None else int(self.seed),
        }


@dataclass(frozen=True)
class SynthesisTimings:
    """Wall-clock seconds of each step of one clone."""

    synthesis_s: float
    real_time_factor: float
    """synthesis_s / audio duration (lower is faster)."""
    time_to_first_audio_s: float | None = None
    analysis_s: float | None = None
    """Analysis of the reference (Voice DNA + emotion)."""
    prompt_s: float | None = None
    """Building the voice prompt from the reference."""
    output_analysis_s: float | None = None
    """Analysis of the clone's own audio."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "analysis_s": _f(self.analysis_s),
            "prompt_s": _f(self.prompt_s),
            "synthesis_s": _f(self.synthesis_s),
            "real_time_factor": _f(self.real_time_factor),
            "time_to_first_audio_s": _f(self.time_to_first_audio_s),
            "output_analysis_s": _f(self.output_analysis_s),
        }


@dataclass(frozen=True)
class OutputAudio:
    """The wav file of a pair, as written."""

    file: str
    """File name (no folder), e.g. ``cloned_20260125_101530_123_00.wav``."""
    sha256: str
    duration_s: float
    sample_rate: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "duration_s": _f(self.duration_s),
            "sample_rate": int(self.sample_rate),
            "format": "WAV",
            "subtype": "PCM_16",
            "channels": 1,
        }


@dataclass(frozen=True)
class Fingerprint:
    """Everything known about one cloned line: the JSON half of an output pair."""

    created_at: str
    """ISO 8601 with time zone and milliseconds."""
    text: str
    language: str
    reference: ReferenceInfo
    model: ModelInfo
    timings: SynthesisTimings
    similarity: float | None = None
    """Speaker similarity of the output to the reference (cosine, -1..1; None if unknown)."""
    output_profile: VoiceProfile | None = None
    """The clone's own Voice DNA and emotion (None when its audio could not be analysed)."""
    output_analysis_error: str | None = None
    output_emotion_unavailable: str | None = None
    audio: OutputAudio | None = None
    """Filled in by the pair writer once the wav exists."""
    schema_version: str = FINGERPRINT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        if self.audio is None:
            raise ValueError("Fingerprint.audio is unset; fingerprint.write_pair fills it in")
        out = self.output_profile
        return {
            "schema_version": self.schema_version,
            "created_at": self.created_at,
            "text": self.text,
            "language": self.language,
            "audio": self.audio.to_dict(),
            "reference": self.reference.to_dict(),
            "output": {
                "voice_dna": out.prosody.to_dict() if out is not None else None,
                "voice_dna_error": self.output_analysis_error,
                "emotion": _emotion_dict(out),
                "emotion_unavailable": self.output_emotion_unavailable,
            },
            "comparison": _compare(self.reference.profile, out),
            "similarity": _f(self.similarity),
            "model": self.model.to_dict(),
            "timings": self.timings.to_dict(),
        }


def _emotion_dict(profile: VoiceProfile | None) -> dict[str, Any] | None:
    if profile is None or profile.emotion is None:
        return None
    return profile.emotion.to_dict()


def _compare(ref: VoiceProfile | None, out: VoiceProfile | None) -> dict[str, Any]:
    """How the clone's pitch, rate, loudness and emotion compare with the reference's."""
    d: dict[str, Any] = {
        "pitch_median_semitones": None,
        "pitch_range_ratio": None,
        "speaking_rate_ratio": None,
        "energy_mean_db_diff": None,
        "emotion_match": None,
    }
    if ref is None or out is None:
        return d
    rp, op = ref.prosody, out.prosody
    if rp.pitch.median_hz > 0 and op.pitch.median_hz > 0:
        d["pitch_median_semitones"] = _f(12.0 * np.log2(op.pitch.median_hz / rp.pitch.median_hz), 2)
    if rp.pitch.range_semitones > 0:
        d["pitch_range_ratio"] = _f(op.pitch.range_semitones / rp.pitch.range_semitones, 3)
    if rp.rate.syllables_per_s > 0:
        d["speaking_rate_ratio"] = _f(op.rate.syllables_per_s / rp.rate.syllables_per_s, 3)
    d["energy_mean_db_diff"] = _f(op.energy.mean_db - rp.energy.mean_db, 2)
    if ref.emotion is not None and out.emotion is not None:
        d["emotion_match"] = ref.emotion.label == out.emotion.label
    return d
