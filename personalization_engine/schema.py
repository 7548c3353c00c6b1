"""Typed records passed between the stages of the engine.

Data flow::

    path -> audio_io.load_audio -> AudioClip (samples, sample_rate, speech span, warnings)
         -> feature_extractor.extract_features -> ProsodyFeatures ("Voice DNA")
         -> emotion_detector.EmotionDetector.predict -> EmotionEstimate
    VoiceProfile = ProsodyFeatures + EmotionEstimate

Every record is a frozen dataclass with ``to_dict`` returning plain JSON types (NumPy values
become Python floats, contours become lists), so JSON outputs are stable and easy to diff, and
``from_dict`` reading it back. ``from_dict(to_dict())`` gives a record whose ``to_dict`` is the
same dict: values are rounded once, when first written, and derived values (``range_hz``, the
comparison) are computed from what is written. Units are in the field names (``_hz``, ``_s``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._profile_records import (
    EMOTION_LABELS,
    EmotionEstimate,
    EnergyStats,
    PitchContour,
    PitchStats,
    ProsodyFeatures,
    RateStats,
    StressPoint,
    VoiceProfile,
    _f,
    _opt,
    _profile_from_parts,
)

__all__ = [
    "EMOTION_LABELS", "FINGERPRINT_SCHEMA_VERSION", "AudioClip", "EmotionEstimate", "EnergyStats", "Fingerprint",
    "GenerationResult", "ModelInfo", "OutputAudio", "PitchContour", "PitchStats", "ProfileComparison",
    "ProsodyFeatures", "RateStats", "ReferenceInfo", "StressPoint", "SynthesisTimings", "VoiceProfile",
]


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
    pause_after_s: float = 0.0
    """Silence to leave after this record (s): the segment's pause on its last record, 0 on
    earlier chunks and after the text's last segment (``synthesize`` inserts it)."""
    segment_final: bool = True
    """The segment's last record (always, when not streaming); only it has the pause and the
    segment's ``similarity``."""
    chunk_idx: int = 0
    """Index of this streamed chunk within its segment (0 when not streaming)."""
    frame_start: int = 0
    """The segment's frame index at which this chunk's frames begin (0 when not streaming)."""
    hit_budget: bool = False
    """The segment stopped at its frame budget, not at end-of-speech (set on its last record;
    on a joined result: any segment did)."""

    @property
    def duration_s(self) -> float:
        return self.audio_duration_s

    def audio_int16(self) -> np.ndarray:
        """The audio as PCM 16 (derived, never stored twice)."""
        return (np.clip(self.audio, -1.0, 1.0) * 32767.0).astype(np.int16)


# --- Fingerprint: the JSON written beside every cloned wav (see fingerprint.py) -------------

#: Version of the fingerprint JSON layout; ``fingerprint.schema.json`` validates it.
#: Bump the minor number for added optional fields, the major one for anything else.
#: The layout is written once, by the ``to_dict`` methods below; the schema file only describes
#: it (with the patterns, ranges and enums a dataclass cannot state), and
#: ``tests/test_schema.py`` fails when the two differ by a single key at any level. Generating
#: the schema instead would restate those constraints in field metadata: the same two copies.
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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReferenceInfo:
        return cls(name=str(d["name"]), kind=str(d["kind"]), sha256=d.get("sha256"), transcript=d.get("transcript"),
                   profile=_profile_from_parts(d.get("voice_dna"), d.get("emotion")),
                   emotion_unavailable=d.get("emotion_unavailable"))


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
    quant: str = "none"
    """Talker/code-predictor weights: ``none`` (as loaded), ``bf16``, ``int8`` or ``int4``
    (``TTSModel.quant``, the mode resolved from ``--quant``)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.model_id,
            "size": self.size,
            "kind": self.kind,
            "dtype": self.dtype,
            "device": self.device,
            "mode": self.mode,
            "seed": None if self.seed is None else int(self.seed),
            "quant": self.quant,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        seed = d.get("seed")
        return cls(model_id=str(d["id"]), size=str(d["size"]), dtype=str(d["dtype"]), device=str(d["device"]),
                   mode=str(d["mode"]), seed=None if seed is None else int(seed), kind=str(d.get("kind", "base")),
                   quant=str(d.get("quant", "none")))  # pairs written before quant was recorded: none


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthesisTimings:
        return cls(synthesis_s=float(d["synthesis_s"]), real_time_factor=float(d["real_time_factor"]),
                   time_to_first_audio_s=_opt(d, "time_to_first_audio_s"), analysis_s=_opt(d, "analysis_s"),
                   prompt_s=_opt(d, "prompt_s"), output_analysis_s=_opt(d, "output_analysis_s"))


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OutputAudio:
        """Read :meth:`to_dict`'s output (format, subtype and channels are always WAV, PCM_16, 1)."""
        return cls(file=str(d["file"]), sha256=str(d["sha256"]), duration_s=float(d["duration_s"]),
                   sample_rate=int(d["sample_rate"]))


@dataclass(frozen=True)
class ProfileComparison:
    """How a clone's Voice DNA and emotion compare with its reference's (None: not measurable)."""

    pitch_median_semitones: float | None = None
    """12 * log2(clone median F0 / reference median F0)."""
    pitch_range_ratio: float | None = None
    """Clone pitch range / reference pitch range (both in semitones)."""
    speaking_rate_ratio: float | None = None
    """Clone syllables per second / reference syllables per second."""
    energy_mean_db_diff: float | None = None
    """Clone mean level - reference mean level (dB)."""
    emotion_match: bool | None = None
    """Both have an emotion estimate, with the same label."""

    @classmethod
    def between(cls, ref: VoiceProfile | None, out: VoiceProfile | None) -> ProfileComparison:
        """Compare two profiles at full precision (rounded only by :meth:`to_dict`)."""
        if ref is None or out is None:
            return cls()
        rp, op = ref.prosody, out.prosody
        semitones = ratio = rate = None
        if rp.pitch.median_hz > 0 and op.pitch.median_hz > 0:
            semitones = float(12.0 * np.log2(op.pitch.median_hz / rp.pitch.median_hz))
        if rp.pitch.range_semitones > 0:
            ratio = op.pitch.range_semitones / rp.pitch.range_semitones
        if rp.rate.syllables_per_s > 0:
            rate = op.rate.syllables_per_s / rp.rate.syllables_per_s
        match = None if ref.emotion is None or out.emotion is None else ref.emotion.label == out.emotion.label
        return cls(semitones, ratio, rate, op.energy.mean_db - rp.energy.mean_db, match)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pitch_median_semitones": _f(self.pitch_median_semitones, 2),
            "pitch_range_ratio": _f(self.pitch_range_ratio, 3),
            "speaking_rate_ratio": _f(self.speaking_rate_ratio, 3),
            "energy_mean_db_diff": _f(self.energy_mean_db_diff, 2),
            "emotion_match": self.emotion_match,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProfileComparison:
        match = d.get("emotion_match")
        return cls(_opt(d, "pitch_median_semitones"), _opt(d, "pitch_range_ratio"), _opt(d, "speaking_rate_ratio"),
                   _opt(d, "energy_mean_db_diff"), None if match is None else bool(match))


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
    comparison: ProfileComparison | None = None
    """Clone vs reference; None means "compute it from the two profiles" (as build_fingerprint does)."""
    schema_version: str = FINGERPRINT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        if self.audio is None:
            raise ValueError("Fingerprint.audio is unset; fingerprint.write_pair fills it in")
        out = self.output_profile
        comparison = self.comparison or ProfileComparison.between(self.reference.profile, out)
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
            "comparison": comparison.to_dict(),
            "similarity": _f(self.similarity),
            "model": self.model.to_dict(),
            "timings": self.timings.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fingerprint:
        """Read a fingerprint JSON (as :meth:`to_dict` writes it) back into records.

        Raises ``KeyError``, ``TypeError`` or ``ValueError`` when a required key is missing or
        has the wrong type; :func:`fingerprint.verify_pair` turns these into a clear error.
        """
        out = d["output"]
        return cls(
            created_at=str(d["created_at"]), text=str(d["text"]), language=str(d["language"]),
            reference=ReferenceInfo.from_dict(d["reference"]), model=ModelInfo.from_dict(d["model"]),
            timings=SynthesisTimings.from_dict(d["timings"]), similarity=_opt(d, "similarity"),
            output_profile=_profile_from_parts(out.get("voice_dna"), out.get("emotion")),
            output_analysis_error=out.get("voice_dna_error"), output_emotion_unavailable=out.get("emotion_unavailable"),
            audio=OutputAudio.from_dict(d["audio"]), comparison=ProfileComparison.from_dict(d["comparison"]),
            schema_version=str(d["schema_version"]),
        )


def _emotion_dict(profile: VoiceProfile | None) -> dict[str, Any] | None:
    if profile is None or profile.emotion is None:
        return None
    return profile.emotion.to_dict()
