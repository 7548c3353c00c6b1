"""Loading, resampling, downmixing and validating audio.

``load_audio`` is the one door through which audio enters the engine: a file (wav, flac, ogg,
mp3 where libsndfile supports it) or an array, any sample rate from 8 kHz to 192 kHz, any channel
count, 8/16/24/32-bit integer or float. It returns mono float32 at the requested rate with the
leading and trailing silence trimmed, and rejects unusable input with a specific message.

Recording and playback live in ``audio_device.py`` and ``playback.py``; this module never imports sounddevice, so
importing the package never needs PortAudio.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AudioInputError
from .rates import ANALYSIS_SAMPLE_RATE
from .schema import AudioClip

_LOGGER = logging.getLogger(__name__)

#: Sample rates accepted from files and arrays (Hz). Telephone audio is 8 kHz; studio gear
#: goes to 192 kHz. Below 8 kHz the voice band (F0 harmonics up to ~4 kHz) is lost.
MIN_SAMPLE_RATE = 8_000
MAX_SAMPLE_RATE = 192_000

#: Speech detection: 25 ms frames, 10 ms hop (the usual speech-analysis framing).
FRAME_S = 0.025
HOP_S = 0.010
#: A frame is speech when its RMS is within this many dB of the clip's loud frames (95th
#: percentile) and above the absolute floor. 35 dB below the loud frames separates speech from
#: room noise in ordinary recordings while keeping soft consonants.
SPEECH_REL_DB = 35.0
#: RMS below this (dBFS) is silence whatever the clip: -60 dBFS is ~16-bit dither plus a quiet room.
SILENCE_FLOOR_DBFS = -60.0
#: Gaps shorter than this inside speech (stop closures, short pauses) count as speech (s).
BRIDGE_GAP_S = 0.15
#: Silence kept on each side when trimming, so onsets and decays are not clipped (s).
TRIM_MARGIN_S = 0.05

#: Speech-duration limits for a reference clip (s).
MIN_SPEECH_S = 1.0
MAX_CLIP_S = 30.0
#: Window chosen from a clip longer than MAX_CLIP_S (s): the best window of at most this length.
BEST_WINDOW_MAX_S = 15.0
BEST_WINDOW_MIN_S = 3.0

#: Samples at or above this magnitude are full scale; a run of CLIP_RUN of them is clipping
#: (a single full-scale sample is just a peak-normalised file, e.g. EmoDB).
FULL_SCALE = 0.999
CLIP_RUN = 3


def load_audio(
    path_or_array: str | os.PathLike[str] | np.ndarray | AudioClip | tuple[np.ndarray, int],
    *,
    sample_rate: int = ANALYSIS_SAMPLE_RATE,
    input_sample_rate: int | None = None,
    trim: bool = True,
    validate: bool = True,
    name: str | None = None,
) -> AudioClip:
    """Load audio as mono float32 at ``sample_rate``, trimmed and validated.

    Parameters
    ----------
    path_or_array : path, np.ndarray, AudioClip or (samples, sample_rate)
        A sound file, or samples shaped ``(n,)``, ``(n, channels)`` or ``(channels, n)``
        (integer arrays are scaled from their dtype's full range).
    sample_rate : int
        Output sample rate in Hz.
    input_sample_rate : int, optional
        Sample rate of an array input; defaults to ``sample_rate``.
    trim : bool
        Trim leading and trailing silence (keeping 50 ms margins).
    validate : bool
        Reject all-silent clips, clips with under 1 s of speech, and shorten clips over 30 s to
        their best 3-15 s speech window (with a warning).
    name : str, optional
        What messages call the audio (e.g. ``"the recording"``); default: the file's path, or
        ``<array>`` for samples.

    Returns
    -------
    AudioClip
        Unpacks as ``samples, sample_rate``; ``warnings`` lists clipping and shortening notes.

    Raises
    ------
    AudioInputError
        Missing file, unreadable/corrupt file, empty audio, NaN/inf samples, unsupported sample
        rate, all silence, or less than 1 s of speech.

    Examples
    --------
    >>> samples, sr = load_audio("voice.wav", sample_rate=16000)  # doctest: +SKIP
    """
    if not isinstance(sample_rate, (int, np.integer)) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioInputError(
            f"requested sample rate {sample_rate!r} is not supported; use an integer between "
            f"{MIN_SAMPLE_RATE} and {MAX_SAMPLE_RATE} Hz (e.g. 16000 or 24000)."
        )
    samples, sr_in, source = _read(path_or_array, input_sample_rate or sample_rate)
    source = name or source
    samples = _to_mono_float32(samples, source)
    check_samples(samples, source=source)
    original_duration_s = len(samples) / float(sr_in)
    warnings: list[str] = []
    clipped = _clipped_fraction(samples)
    if clipped > 0:
        warnings.append(
            f"{source}: {clipped:.2%} of samples are clipped at full scale; the analysis may be "
            "off. Re-record with the input gain lower or further from the microphone."
        )
    if sr_in != sample_rate:
        samples = resample(samples, sr_in, sample_rate)
    sr = int(sample_rate)
    mask = speech_mask(samples, sr)
    if validate and not mask.any():
        raise AudioInputError(
            f"{source}: all silence (no frame above {SILENCE_FLOOR_DBFS:.0f} dBFS); check that the "
            "microphone is not muted and speak closer to it, or load another file."
        )
    if trim and mask.any():
        samples, mask = _trim(samples, sr, mask)
    speech_s = float(mask.sum()) * HOP_S
    if validate:
        if speech_s < MIN_SPEECH_S:
            raise AudioInputError(
                f"{source}: only {speech_s:.2f} s of speech; need at least {MIN_SPEECH_S:.1f} s "
                "(3-10 s is best). Record or load a longer sample."
            )
        if len(samples) / sr > MAX_CLIP_S:
            start_s, samples, mask = _best_window(samples, sr, mask)
            speech_s = float(mask.sum()) * HOP_S
            warnings.append(
                f"{source}: clip is {original_duration_s:.1f} s (over {MAX_CLIP_S:.0f} s); using "
                f"its best {len(samples) / sr:.1f} s speech window starting at {start_s:.1f} s."
            )
    for w in warnings:
        _LOGGER.warning(w)
    return AudioClip(
        samples=np.ascontiguousarray(samples, dtype=np.float32),
        sample_rate=sr,
        source=source,
        original_sample_rate=int(sr_in),
        original_duration_s=original_duration_s,
        speech_duration_s=speech_s,
        warnings=tuple(warnings),
    )


def check_samples(samples: np.ndarray, *, source: str = "<array>") -> None:
    """Reject empty or non-finite audio with a specific :class:`AudioInputError`."""
    if samples.size == 0:
        raise AudioInputError(f"{source}: the audio is empty (0 samples); record or load a clip with speech.")
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(samples.size - finite.sum())
        raise AudioInputError(
            f"{source}: {bad} of {samples.size} samples are NaN or infinite; the file or array is "
            "damaged. Re-export it or record again."
        )


def resample(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample mono float32 audio with the SoX resampler (high quality, fast)."""
    if sr_in == sr_out:
        return samples.astype(np.float32, copy=False)
    import soxr  # a dependency of librosa; imported here to keep package import light

    return soxr.resample(samples, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def frame_rms_db(samples: np.ndarray, sr: int) -> np.ndarray:
    """RMS level per 25 ms frame with a 10 ms hop, in dBFS (frames centred at ``i * 10 ms``)."""
    frame = max(1, int(round(FRAME_S * sr)))
    hop = max(1, int(round(HOP_S * sr)))
    n_frames = max(1, int(np.ceil(len(samples) / hop)))
    padded = np.pad(samples.astype(np.float64), (frame // 2, frame // 2 + hop))
    csum = np.concatenate(([0.0], np.cumsum(padded * padded)))
    starts = np.arange(n_frames) * hop
    energy = (csum[starts + frame] - csum[starts]) / frame
    return (10.0 * np.log10(np.maximum(energy, 1e-12))).astype(np.float32)


def speech_mask(samples: np.ndarray, sr: int) -> np.ndarray:
    """Boolean speech/non-speech decision per 10 ms frame (see the module constants)."""
    db = frame_rms_db(samples, sr)
    loud = float(np.percentile(db, 95))
    threshold = max(loud - SPEECH_REL_DB, SILENCE_FLOOR_DBFS)
    mask = db > threshold
    return _bridge(mask, int(round(BRIDGE_GAP_S / HOP_S)))


def speech_segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) frame index pairs of the runs of True in ``mask``."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _bridge(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill runs of False shorter than ``max_gap`` frames that lie between two True runs."""
    out = mask.copy()
    segs = speech_segments(mask)
    for (_, stop), (start, _) in zip(segs[:-1], segs[1:], strict=True):
        if start - stop < max_gap:
            out[stop:start] = True
    return out


def _read(src: Any, default_sr: int) -> tuple[np.ndarray, int, str]:
    if isinstance(src, AudioClip):
        return src.samples, src.sample_rate, src.source
    if isinstance(src, tuple) and len(src) == 2:
        return _read_array(np.asarray(src[0]), int(src[1]))
    if isinstance(src, np.ndarray):
        return _read_array(src, default_sr)
    if isinstance(src, (str, os.PathLike)):
        return _read_file(Path(src))
    raise AudioInputError(
        f"cannot load audio from a {type(src).__name__}; give a file path, a NumPy array or "
        "a (samples, sample_rate) tuple."
    )


def _read_array(arr: np.ndarray, sr: int) -> tuple[np.ndarray, int, str]:
    _check_rate(sr, "<array>")
    if arr.ndim > 2:
        raise AudioInputError(f"<array>: audio must be 1-D or 2-D (samples x channels); got shape {arr.shape}.")
    return arr, sr, "<array>"


def _read_file(path: Path) -> tuple[np.ndarray, int, str]:
    import soundfile as sf

    name = str(path)
    if not path.exists():
        raise AudioInputError(f"{name}: file not found; check the path (relative paths start at {Path.cwd()}).")
    if path.is_dir():
        raise AudioInputError(f"{name}: is a folder, not an audio file; give a .wav, .flac, .ogg or .mp3 file.")
    if path.stat().st_size == 0:
        raise AudioInputError(f"{name}: the file is empty (0 bytes); record or export it again.")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioInputError(
            f"{name}: not a readable audio file or corrupt ({str(exc).strip() or type(exc).__name__}); "
            "supported: wav, flac, ogg and mp3 (8-192 kHz, any channels, 8/16/24/32-bit or float)."
        ) from exc
    _check_rate(int(sr), name)
    return data, int(sr), name


def _check_rate(sr: int, source: str) -> None:
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise AudioInputError(
            f"{source}: sample rate {sr} Hz is not supported; need {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz. "
            "Re-export the audio at 16, 24, 44.1 or 48 kHz."
        )


def _to_mono_float32(arr: np.ndarray, source: str) -> np.ndarray:
    if arr.size == 0:
        raise AudioInputError(f"{source}: the audio is empty (0 samples); record or load a clip with speech.")
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        # Unsigned 8-bit PCM is offset by half its range.
        offset = (info.max + 1) / 2.0 if info.min == 0 else 0.0
        arr = (arr.astype(np.float64) - offset) / float(max(abs(info.min), info.max + 1 - offset))
    elif not np.issubdtype(arr.dtype, np.floating):
        raise AudioInputError(f"{source}: audio samples must be numbers; got dtype {arr.dtype}.")
    if arr.ndim == 2:
        # Channels are the short axis: (n, ch) from files, (ch, n) from some array sources.
        axis = 1 if arr.shape[0] >= arr.shape[1] else 0
        arr = arr.mean(axis=axis)
    return np.asarray(arr, dtype=np.float32).reshape(-1)


def _clipped_fraction(samples: np.ndarray) -> float:
    full = np.abs(samples) >= FULL_SCALE
    if full.sum() < CLIP_RUN:
        return 0.0
    # Count samples that sit in runs of at least CLIP_RUN full-scale samples.
    runs = [b - a for a, b in speech_segments(full) if b - a >= CLIP_RUN]
    return float(sum(runs)) / samples.size


def _trim(samples: np.ndarray, sr: int, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hop = int(round(HOP_S * sr))
    idx = np.flatnonzero(mask)
    margin = int(round(TRIM_MARGIN_S / HOP_S))
    first = max(0, int(idx[0]) - margin)
    last = min(len(mask), int(idx[-1]) + 1 + margin)
    return samples[first * hop : min(len(samples), last * hop)], mask[first:last]


def _best_window(samples: np.ndarray, sr: int, mask: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The window of at most BEST_WINDOW_MAX_S with the most speech, cut at pauses when possible."""
    hop = int(round(HOP_S * sr))
    win = int(round(BEST_WINDOW_MAX_S / HOP_S))
    csum = np.concatenate(([0], np.cumsum(mask.astype(np.int32))))
    counts = csum[win:] - csum[:-win]
    # Prefer windows that start at a speech onset (not mid-word) among near-best windows.
    onsets = np.zeros(len(counts), dtype=bool)
    onsets[0] = mask[0]
    onsets[1:] = mask[1 : len(counts)] & ~mask[: len(counts) - 1]
    best = int(counts.max())
    good = np.flatnonzero((counts >= 0.95 * best) & onsets)
    start = int(good[0]) if good.size else int(np.argmax(counts))
    stop = start + win
    # End at the last pause inside the window so the last word is not cut.
    inner = mask[start:stop]
    segs = speech_segments(inner)
    if len(segs) > 1 and segs[-1][0] * HOP_S >= BEST_WINDOW_MIN_S and inner[-1]:
        stop = start + segs[-1][0]
    return start * HOP_S, samples[start * hop : stop * hop], mask[start:stop]
