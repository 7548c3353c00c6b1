"""Fingerprints and the atomic writer of ``cloned_TIMESTAMP.wav`` + ``cloned_TIMESTAMP.json`` pairs.

A *fingerprint* records what made a cloned line and how it came out: the text, the reference
voice and its Voice DNA, the clone's own Voice DNA and emotion, the speaker similarity, the
model and the timings. :func:`build_fingerprint` assembles it; :func:`write_pair` writes it
beside the audio; :func:`verify_pair` reads it back (``Fingerprint.from_dict``) after checking
the wav's hash. The layout is written by the records' ``to_dict`` in ``schema.py`` and described
for consumers by ``fingerprint.schema.json`` (draft 2020-12); ``tests/test_schema.py`` proves
the two agree key by key.

Writing is all-or-nothing. A stem is reserved with an ``O_CREAT | O_EXCL`` lock file, both files
are written to hidden temporary names in the same folder and fsynced, then the wav and the json
are moved to their final names without replacing anything (``fileio.move_noreplace``) and the
folder is fsynced. Any failure, Ctrl-C included, removes
the temporary files and an already-moved wav, so a wav without its json never remains and an
existing file is never overwritten.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import OutputWriteError, PersonalizationError
from .fileio import fsync_dir, move_noreplace, sha256_bytes, sha256_file, write_new_synced
from .rates import TTS_SAMPLE_RATE
from .schema import (
    Fingerprint,
    GenerationResult,
    ModelInfo,
    OutputAudio,
    ProfileComparison,
    ReferenceInfo,
    SynthesisTimings,
    VoiceProfile,
)

if TYPE_CHECKING:
    from .emotion_detector import EmotionDetector

_LOGGER = logging.getLogger(__name__)

#: The JSON Schema of the fingerprint file, shipped beside this module.
SCHEMA_PATH = Path(__file__).with_name("fingerprint.schema.json")
#: Sample rate of every written wav (Hz): the rate the Qwen3-TTS codec decodes at.
OUTPUT_SAMPLE_RATE = TTS_SAMPLE_RATE
#: Stems tried within one millisecond before giving up (100 lines per ms is far beyond need).
MAX_COUNTER = 100

FaultHook = Callable[[str], None]
"""Test hook: called with a stage name (``"wav_tmp"``, ``"json_tmp"``, ``"wav_final"``)."""


@dataclass(frozen=True)
class OutputPair:
    """A written pair: the two paths and the fingerprint as written."""

    wav_path: Path
    json_path: Path
    fingerprint: Fingerprint

    @property
    def stem(self) -> str:
        return self.wav_path.stem


def build_fingerprint(
    *,
    text: str,
    result: GenerationResult,
    reference: ReferenceInfo,
    model: ModelInfo,
    timings: SynthesisTimings,
    language: str = "auto",
    similarity: float | None = None,
    analyze_output: bool = True,
    detector: EmotionDetector | None = None,
) -> Fingerprint:
    """Assemble the fingerprint of one synthesized line (its audio is analysed here).

    Parameters
    ----------
    text : str
        The line that was spoken.
    result : GenerationResult
        The joined synthesis result (float32 mono audio and its sample rate).
    reference, model, timings : ReferenceInfo, ModelInfo, SynthesisTimings
        Where the voice came from, which model made it, how long each step took.
    language : str
        Language code given to the model (``"auto"`` when detected).
    similarity : float, optional
        Speaker similarity to the reference; ``result.similarity`` when None.
    analyze_output : bool
        Measure the clone's own Voice DNA and emotion. Audio that cannot be analysed (e.g. the
        noise of a random-weight test model) gives ``None`` plus the reason, never an error.
    detector : EmotionDetector, optional
        The emotion detector to use instead of the shipped one.

    Returns
    -------
    Fingerprint
        With ``audio`` unset: :func:`write_pair` fills it in.
    """
    profile: VoiceProfile | None = None
    error: str | None = "not analysed (output analysis was turned off)"
    emotion_note: str | None = None
    elapsed: float | None = None
    if analyze_output:
        profile, error, emotion_note, elapsed = _analyze(result.audio, result.sample_rate, detector)
    sim = similarity if similarity is not None else result.similarity
    return Fingerprint(
        created_at=datetime.now().astimezone().isoformat(timespec="milliseconds"),
        text=text,
        language=language,
        reference=reference,
        model=model,
        timings=replace(timings, output_analysis_s=elapsed) if elapsed is not None else timings,
        similarity=None if sim is None or not np.isfinite(sim) else float(sim),
        output_profile=profile,
        output_analysis_error=error,
        output_emotion_unavailable=emotion_note,
        comparison=ProfileComparison.between(reference.profile, profile),
    )


def _analyze(
    audio: np.ndarray, sr: int, detector: EmotionDetector | None
) -> tuple[VoiceProfile | None, str | None, str | None, float]:
    """(profile, error, emotion note, seconds) for the clone's audio; never raises on bad audio."""
    from .analysis import analyze_voice, emotion_unavailable_reason

    t0 = time.perf_counter()
    try:
        _, profile = analyze_voice((audio, sr), detector=detector, name="the output")
    except PersonalizationError as exc:
        return None, f"{type(exc).__name__}: {exc}", None, time.perf_counter() - t0
    note = emotion_unavailable_reason(profile)
    return profile, None, note, time.perf_counter() - t0


def write_pair(
    out_dir: str | os.PathLike[str],
    fingerprint: Fingerprint,
    audio: np.ndarray,
    sample_rate: int,
    *,
    prefix: str = "cloned",
    fault_hook: FaultHook | None = None,
) -> OutputPair:
    """Write ``PREFIX_TIMESTAMP.wav`` (24 kHz PCM 16) and its ``.json`` fingerprint atomically.

    Parameters
    ----------
    out_dir : path
        Output folder; created if missing.
    fingerprint : Fingerprint
        From :func:`build_fingerprint`; its ``audio`` field is filled in here.
    audio : np.ndarray
        float32 mono samples in [-1, 1] (clipped to that range when written).
    sample_rate : int
        Rate of ``audio``; resampled to 24 kHz when different.
    prefix : str
        File name prefix.
    fault_hook : callable, optional
        Test hook called between steps; an exception from it is handled like a real failure.

    Returns
    -------
    OutputPair

    Raises
    ------
    OutputWriteError
        The folder cannot be created or written, or the disk is full; nothing is left behind.
        ``KeyboardInterrupt`` also leaves nothing behind and propagates.
    """
    folder = Path(out_dir)
    wav_bytes, duration_s = _encode_wav(audio, sample_rate)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"cannot create the output folder {folder}: {_reason(exc)}") from exc
    stem, lock = _reserve_stem(folder, prefix)
    final_wav, final_json = folder / f"{stem}.wav", folder / f"{stem}.json"
    tmp_wav, tmp_json = folder / f".{stem}.wav.tmp", folder / f".{stem}.json.tmp"
    moved: list[Path] = []
    try:
        write_new_synced(tmp_wav, wav_bytes)
        _hook(fault_hook, "wav_tmp")
        info = OutputAudio(final_wav.name, sha256_bytes(wav_bytes), duration_s, OUTPUT_SAMPLE_RATE)
        done = replace(fingerprint, audio=info)
        text = json.dumps(done.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        write_new_synced(tmp_json, text.encode("utf-8"))
        _hook(fault_hook, "json_tmp")
        move_noreplace(tmp_wav, final_wav)
        moved.append(final_wav)
        _hook(fault_hook, "wav_final")
        move_noreplace(tmp_json, final_json)
        moved.append(final_json)
        fsync_dir(folder)
    except BaseException as exc:
        _discard([tmp_wav, tmp_json, *moved])
        if isinstance(exc, OSError):
            raise OutputWriteError(
                f"could not write {stem}.wav/.json to {folder}: {_reason(exc)} Nothing was kept."
            ) from exc
        raise
    finally:
        _discard([lock])
    _LOGGER.info("wrote %s and %s", final_wav, final_json)
    return OutputPair(final_wav, final_json, done)


def _encode_wav(audio: np.ndarray, sample_rate: int) -> tuple[bytes, float]:
    """The wav file's bytes (24 kHz mono PCM 16) and its duration."""
    import soundfile as sf

    from .audio_io import check_samples, resample

    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    check_samples(samples, source="synthesized audio")
    if int(sample_rate) != OUTPUT_SAMPLE_RATE:
        samples = resample(samples, int(sample_rate), OUTPUT_SAMPLE_RATE)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, OUTPUT_SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue(), len(pcm) / OUTPUT_SAMPLE_RATE


def _reserve_stem(folder: Path, prefix: str, now: datetime | None = None) -> tuple[str, Path]:
    """A free stem ``PREFIX_YYYYMMDD_HHMMSS_mmm_NN`` and its lock file (created with O_EXCL)."""
    now = now or datetime.now()
    stamp = now.strftime("%Y%m%d_%H%M%S_") + f"{now.microsecond // 1000:03d}"
    for n in range(MAX_COUNTER):
        stem = f"{prefix}_{stamp}_{n:02d}"
        lock = folder / f".{stem}.lock"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputWriteError(f"cannot write in the output folder {folder}: {_reason(exc)}") from exc
        os.close(fd)
        if (folder / f"{stem}.wav").exists() or (folder / f"{stem}.json").exists():
            _discard([lock])  # finished by another writer before we looked
            continue
        return stem, lock
    raise OutputWriteError(f"no free file name for {prefix}_{stamp}_NN in {folder} (all {MAX_COUNTER} taken).")


def _discard(paths: list[Path]) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            _LOGGER.warning("could not remove %s: %s", p, exc)


def _hook(hook: FaultHook | None, stage: str) -> None:
    if hook is not None:
        hook(stage)


def _reason(exc: OSError) -> str:
    """A one-line cause with advice, from an OSError."""
    advice = {
        errno.ENOSPC: "the disk is full; free some space or choose another folder with --out.",
        errno.EDQUOT: "the disk quota is exceeded; free some space or choose another folder with --out.",
        errno.EACCES: "permission denied; choose a writable folder with --out.",
        errno.EPERM: "permission denied; choose a writable folder with --out.",
        errno.EROFS: "the file system is read-only; choose another folder with --out.",
        errno.ENOTDIR: "a part of the path is a file, not a folder; choose another folder with --out.",
        errno.EFBIG: "the file exceeds the size limit of this system or file system; choose another folder with --out.",
    }
    return f"{exc.strerror or exc} ({advice.get(exc.errno or 0, 'check the folder and try again.')})"


def verify_pair(json_path: str | os.PathLike[str]) -> Fingerprint:
    """Read a fingerprint, check that its wav exists and matches its SHA-256, and return it.

    Raises
    ------
    OutputWriteError
        The json is unreadable or not a fingerprint, or the wav is missing or differs from the
        recorded hash.
    """
    path = Path(json_path)
    try:
        fingerprint = Fingerprint.from_dict(json.loads(path.read_text(encoding="utf-8")))
        if fingerprint.audio is None:  # from_dict always fills it; this narrows the type
            raise ValueError("no audio section")
        wav = path.with_name(fingerprint.audio.file)
        digest = sha256_file(wav)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise OutputWriteError(f"{path}: not a readable output pair ({type(exc).__name__}: {exc}).") from exc
    if digest != fingerprint.audio.sha256:
        raise OutputWriteError(f"{wav}: SHA-256 {digest[:12]}... differs from its fingerprint; the file changed.")
    return fingerprint


def load_schema() -> dict[str, Any]:
    """The fingerprint JSON Schema (draft 2020-12) as a dict."""
    return dict(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))
