"""The Voice DNA and emotion records (pitch, energy, rate, emotion, profile), re-exported by ``schema``.

Split from :mod:`schema` only to keep each module under 500 lines; import these names from
``personalization_engine.schema``. Each record's ``to_dict`` writes plain JSON types and its
``from_dict`` reads them back (see the ``schema`` docstring for the round-trip rule).
"""

from __future__ import annotations

from dataclasses import dataclass
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


def _num(d: dict[str, Any], key: str) -> float:
    """``d[key]`` as a float; a missing key or None (how NaN is written) becomes NaN."""
    v = d.get(key)
    return float("nan") if v is None else float(v)


def _opt(d: dict[str, Any], key: str) -> float | None:
    """``d[key]`` as a float, or None when missing or null."""
    v = d.get(key)
    return None if v is None else float(v)


def _arr(values: list[Any] | None) -> np.ndarray:
    """A JSON list of numbers (None for NaN) as a float64 array."""
    return np.array([np.nan if v is None else float(v) for v in (values or [])], dtype=np.float64)



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
            "range_hz": _diff(_f(self.p95_hz, 2), _f(self.p5_hz, 2)),
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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PitchStats:
        """Read :meth:`to_dict`'s output; ``voiced`` is rebuilt as "F0 is not NaN"."""
        c = d.get("contour") or {}
        f0 = _arr(c.get("f0_hz"))
        return cls(
            median_hz=_num(d, "median_hz"), mean_hz=_num(d, "mean_hz"), std_hz=_num(d, "std_hz"),
            p5_hz=_num(d, "p5_hz"), p95_hz=_num(d, "p95_hz"), range_semitones=_num(d, "range_semitones"),
            voiced_fraction=_num(d, "voiced_fraction"), register=str(d.get("register", "")),
            contour=PitchContour(times_s=_arr(c.get("times_s")), f0_hz=f0, voiced=np.isfinite(f0)),
        )


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 2)


@dataclass(frozen=True)
class StressPoint:
    """A prominent syllable nucleus."""

    time_s: float
    prominence: float
    """Relative prominence in [0, 1] from energy and pitch (1 = most prominent of the clip)."""

    def to_dict(self) -> dict[str, Any]:
        return {"time_s": _f(self.time_s, 3), "prominence": _f(self.prominence, 3)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StressPoint:
        return cls(time_s=_num(d, "time_s"), prominence=_num(d, "prominence"))


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EnergyStats:
        c = d.get("contour") or {}
        return cls(
            mean_db=_num(d, "mean_db"), dynamic_range_db=_num(d, "dynamic_range_db"),
            times_s=_arr(c.get("times_s")), rms_db=_arr(c.get("rms_db")),
            stress=tuple(StressPoint.from_dict(s) for s in d.get("stress") or ()),
        )


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RateStats:
        return cls(
            syllable_count=int(d["syllable_count"]), syllables_per_s=_num(d, "syllables_per_s"),
            articulation_rate=_num(d, "articulation_rate"), pause_count=int(d["pause_count"]),
            pause_ratio=_num(d, "pause_ratio"), speech_duration_s=_num(d, "speech_duration_s"),
        )


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProsodyFeatures:
        return cls(
            duration_s=_num(d, "duration_s"), speech_duration_s=_num(d, "speech_duration_s"),
            sample_rate=int(d["sample_rate"]), pitch=PitchStats.from_dict(d["pitch"]),
            energy=EnergyStats.from_dict(d["energy"]), rate=RateStats.from_dict(d["rate"]),
        )


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VoiceProfile:
        """Read :meth:`to_dict`'s output (with or without contours)."""
        emotion = EmotionEstimate.from_dict(d["emotion"]) if d.get("emotion") else None
        return cls(prosody=ProsodyFeatures.from_dict(d), emotion=emotion,
                   analysis_time_s=float(d.get("analysis_time_s") or 0.0))


def _profile_from_parts(voice_dna: dict[str, Any] | None, emotion: dict[str, Any] | None) -> VoiceProfile | None:
    """The profile a fingerprint stores as separate ``voice_dna`` and ``emotion`` keys."""
    if voice_dna is None:
        return None
    return VoiceProfile(ProsodyFeatures.from_dict(voice_dna), EmotionEstimate.from_dict(emotion) if emotion else None)
