"""The reusable voice prompt (:class:`Voice`), its safetensors + JSON files, and
:func:`describe_voice` (Voice DNA -> a VoiceDesign instruction).

A Voice is computed once from a reference clip by ``TTSModel.create_voice`` and then used for
every line: it holds the Base model's speaker embedding (x-vector) and, in ICL mode, the
reference's 12 Hz codec codes plus its transcript. ``Voice.save`` writes two files, no pickle::

    DIR/voice.safetensors   speaker_embedding float32 (D,), ref_codes int64 (T, 16) [ICL]
    DIR/voice.json          mode, transcript, name, hashes, model, Voice DNA, ...

so a voice made today is usable next week without the reference file. NumPy only; no torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ProfileError
from ..fileio import sha256_bytes, write_atomic
from ..schema import VoiceProfile

#: Layout version of voice.json; a different major version is refused on load.
VOICE_SCHEMA_VERSION = "1.0"
VOICE_TENSORS = "voice.safetensors"
VOICE_JSON = "voice.json"
VOICE_MODES = ("xvector", "icl")


@dataclass(frozen=True, eq=False)
class Voice:
    """A voice prompt, computed once from a reference clip and reused for every line."""

    mode: str
    """``"xvector"`` (speaker embedding only) or ``"icl"`` (embedding + reference codes + transcript)."""
    speaker_embedding: np.ndarray
    """float32 (D,): the Base model's ECAPA speaker embedding of the reference (D = talker width)."""
    ref_codes: np.ndarray | None
    """int64 (T, 16): 12 Hz codec codes of the prepared reference (ICL mode only)."""
    transcript: str | None
    """What the reference says (ICL mode), else None."""
    name: str | None
    reference_sha256: str
    """SHA-256 of the reference file's bytes (or of the float32 samples of an array)."""
    profile: VoiceProfile | None = None
    """The reference's Voice DNA and emotion (None when the analysis was unavailable)."""
    model_id: str = ""
    """The model the voice was made with (the embedding width depends on it)."""
    reference_duration_s: float = 0.0
    """Duration of the trimmed reference speech (s), before the appended silence."""
    created_at: str = ""
    warnings: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in VOICE_MODES:
            raise ProfileError(f"voice mode {self.mode!r} is not one of {VOICE_MODES}")
        if self.speaker_embedding.ndim != 1 or self.speaker_embedding.size == 0:
            raise ProfileError("speaker_embedding must be a non-empty 1-D array, "
                               f"got shape {self.speaker_embedding.shape}")
        if self.mode == "icl" and (self.ref_codes is None or self.ref_codes.ndim != 2 or not self.transcript):
            raise ProfileError("an ICL voice needs ref_codes shaped (frames, 16) and a transcript")

    @property
    def embedding_dim(self) -> int:
        return int(self.speaker_embedding.shape[0])

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``voice.safetensors`` and ``voice.json`` into ``directory`` (created if needed).

        Both files are written to temporary names and renamed into place, so an interrupted
        save never leaves a half-written voice. Returns the directory.
        """
        from safetensors.numpy import save as st_save

        folder = Path(directory)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tensors = {"speaker_embedding": np.ascontiguousarray(self.speaker_embedding, dtype=np.float32)}
            if self.ref_codes is not None:
                tensors["ref_codes"] = np.ascontiguousarray(self.ref_codes, dtype=np.int64)
            blob = st_save(tensors, metadata={"format": "np", "schema_version": VOICE_SCHEMA_VERSION})
            meta = self._metadata(sha256_bytes(blob))
            write_atomic(folder / VOICE_TENSORS, blob)
            write_atomic(folder / VOICE_JSON, (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode())
        except OSError as exc:
            raise ProfileError(
                f"cannot save the voice to {folder}: {exc.strerror or exc}; choose a writable folder") from exc
        return folder

    def _metadata(self, tensors_sha256: str) -> dict[str, Any]:
        return {
            "schema_version": VOICE_SCHEMA_VERSION,
            "mode": self.mode,
            "transcript": self.transcript,
            "name": self.name,
            "reference_sha256": self.reference_sha256,
            "model_id": self.model_id,
            "embedding_dim": self.embedding_dim,
            "ref_frames": None if self.ref_codes is None else int(self.ref_codes.shape[0]),
            "reference_duration_s": round(float(self.reference_duration_s), 4),
            "created_at": self.created_at,
            "warnings": list(self.warnings),
            "tensors_file": VOICE_TENSORS,
            "tensors_sha256": tensors_sha256,
            "extra": {k: v for k, v in self.extra.items() if isinstance(v, (str, int, float, bool, type(None)))},
            "profile": None if self.profile is None else self.profile.to_dict(contours=True),
        }

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Voice:
        """Read a voice written by :meth:`save` (hash-checked; never unpickles)."""
        from safetensors.numpy import load as st_load

        folder = Path(directory)
        meta = _read_metadata(folder)
        try:
            blob = (folder / VOICE_TENSORS).read_bytes()
        except OSError as exc:
            raise ProfileError(
                f"{folder / VOICE_TENSORS}: cannot read the voice tensors ({exc.strerror or exc})") from exc
        if sha256_bytes(blob) != meta.get("tensors_sha256"):
            raise ProfileError(
                f"{folder / VOICE_TENSORS} does not match the hash in {VOICE_JSON}: the voice is damaged "
                "or was edited. Recreate it from the reference clip."
            )
        tensors = st_load(blob)
        try:
            return cls(
                mode=str(meta["mode"]),
                speaker_embedding=tensors["speaker_embedding"],
                ref_codes=tensors.get("ref_codes"),
                transcript=meta.get("transcript"),
                name=meta.get("name"),
                reference_sha256=str(meta.get("reference_sha256", "")),
                profile=VoiceProfile.from_dict(meta["profile"]) if meta.get("profile") else None,
                model_id=str(meta.get("model_id", "")),
                reference_duration_s=float(meta.get("reference_duration_s") or 0.0),
                created_at=str(meta.get("created_at", "")),
                warnings=tuple(meta.get("warnings") or ()),
                extra=dict(meta.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProfileError):
                raise
            raise ProfileError(f"{folder / VOICE_JSON}: missing or invalid field ({exc}); recreate the voice") from exc


def check_voice(voice: Voice, talker: Any, model_id: str) -> None:
    """Reject a non-Voice, or a voice whose embedding width or codes do not fit this model (``talker`` config)."""
    if not isinstance(voice, Voice):
        raise ProfileError(f"voice must be a Voice from create_voice() or Voice.load(), got {type(voice).__name__}")
    if voice.embedding_dim != talker.hidden_size:
        raise ProfileError(
            f"voice {voice.name or ''!s} was made with {voice.model_id or 'another model'} (speaker embedding "
            f"width {voice.embedding_dim}); {model_id} needs width {talker.hidden_size}. Recreate the "
            "voice with create_voice() on this model."
        )
    if voice.ref_codes is not None and (voice.ref_codes.shape[1] != talker.num_code_groups
                                        or voice.ref_codes.min() < 0 or voice.ref_codes.max() >= 2048):
        raise ProfileError(f"voice {voice.name!s} has reference codes shaped {voice.ref_codes.shape} outside the "
                           f"12 Hz codec's (frames, {talker.num_code_groups}) x 2048 range; recreate it")


def _read_metadata(folder: Path) -> dict[str, Any]:
    path = folder / VOICE_JSON
    if not path.is_file():
        raise ProfileError(
            f"no saved voice in {folder}: {VOICE_JSON} is missing. Save one with Voice.save(folder) "
            "or pass the folder that contains voice.json and voice.safetensors."
        )
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProfileError(f"{path}: not readable JSON ({exc}); recreate the voice") from exc
    if not isinstance(meta, dict):
        raise ProfileError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    version = str(meta.get("schema_version", ""))
    if version.split(".")[0] != VOICE_SCHEMA_VERSION.split(".")[0]:
        raise ProfileError(
            f"{path}: voice layout version {version or '(none)'} is not supported (this engine reads "
            f"{VOICE_SCHEMA_VERSION.split('.')[0]}.x); recreate the voice from its reference clip."
        )
    return meta


# --- describe_voice: Voice DNA -> natural-language instruction for the VoiceDesign model --------

#: Registers (feature_extractor.REGISTER_BOUNDS_HZ names) read as a male or female voice.
_MALE_REGISTERS = {"bass": "deep bass", "baritone": "baritone", "tenor": "tenor"}
_FEMALE_REGISTERS = {"alto": "low alto", "mezzo": "mezzo-soprano", "soprano": "high soprano"}
#: Pitch range (semitones between the 5th and 95th percentile of F0): under 4 is flat reading,
#: over 9 is animated speech (conversational speech sits around 5-8).
_RANGE_FLAT_ST, _RANGE_WIDE_ST = 4.0, 9.0
#: Speaking rate (syllables per second): ~4-5 is typical read speech.
_RATE_SLOW, _RATE_FAST = 3.5, 5.5
#: Loudness variation (dB between quiet and loud speech frames).
_DYNAMIC_EVEN_DB, _DYNAMIC_LIVELY_DB = 12.0, 24.0
_EMOTION_WORDS = {
    "calm": "calm and relaxed",
    "happy": "warm and cheerful",
    "sad": "subdued and melancholic",
    "angry": "tense and forceful",
    "fearful": "anxious and hesitant",
    "disgust": "disdainful",
    "surprised": "surprised and animated",
}


def describe_voice(profile: VoiceProfile) -> str:
    """Turn a Voice DNA (register, pitch range, rate, emotion) into a VoiceDesign instruction.

    Examples
    --------
    >>> describe_voice(profile)  # doctest: +SKIP
    'A male baritone voice, median pitch around 118 Hz, with a moderate pitch range (6 semitones),
    speaking at a moderate pace (4.3 syllables per second) with even loudness; calm and relaxed in tone.'
    """
    pitch, rate, energy = profile.prosody.pitch, profile.prosody.rate, profile.prosody.energy
    register = (pitch.register or "").lower()
    if register in _MALE_REGISTERS:
        who = f"A male {_MALE_REGISTERS[register]} voice"
    elif register in _FEMALE_REGISTERS:
        who = f"A female {_FEMALE_REGISTERS[register]} voice"
    else:
        who = "A voice"
    parts = [who]
    if np.isfinite(pitch.median_hz) and pitch.median_hz > 0:
        parts.append(f"median pitch around {pitch.median_hz:.0f} Hz")
    st = pitch.range_semitones
    if np.isfinite(st):
        kind = "a flat, even intonation" if st < _RANGE_FLAT_ST else (
            "a wide, expressive pitch range" if st > _RANGE_WIDE_ST else "a moderate pitch range")
        parts.append(f"with {kind} ({st:.0f} semitones)")
    text = ", ".join(parts)
    sps = rate.syllables_per_s
    if np.isfinite(sps) and sps > 0:
        pace = "slow, unhurried" if sps < _RATE_SLOW else ("fast" if sps > _RATE_FAST else "moderate")
        text += f", speaking at a {pace} pace ({sps:.1f} syllables per second)"
    dr = energy.dynamic_range_db
    if np.isfinite(dr):
        text += " with " + ("even loudness" if dr < _DYNAMIC_EVEN_DB else (
            "lively, varied loudness" if dr > _DYNAMIC_LIVELY_DB else "natural loudness variation"))
    emotion = profile.emotion
    if emotion is not None and not emotion.uncertain and emotion.label in _EMOTION_WORDS:
        text += f"; {_EMOTION_WORDS[emotion.label]} in tone"
    return text + "."
