"""Microphones and speakers: list devices, record a clip with a level meter.

``sounddevice`` (and through it the PortAudio C library) is imported only inside the functions
here, so importing the package never needs PortAudio. A missing PortAudio, a machine without a
microphone or a failing device all become a :class:`DeviceError` whose message says what to do.

Recording and playback always use **separate streams** (``sd.rec``/``sd.play`` share one global
stream, so calling one stops the other). Playback lives in :mod:`.playback`: its
:class:`~.playback.Player` is a queue of chunks in front of a callback output stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import DeviceError

_LOGGER = logging.getLogger(__name__)

#: How to install PortAudio, the C library behind sounddevice.
PORTAUDIO_HINT = (
    "install PortAudio (Debian/Ubuntu: `sudo apt-get install libportaudio2`; macOS: "
    "`brew install portaudio`), or use --ref FILE / /load PATH instead of the microphone"
)
#: Level-meter update interval while recording (s): 20 updates a second looks smooth.
LEVEL_INTERVAL_S = 0.05
#: A block whose peak reaches this magnitude is counted as clipping (0.99 = -0.09 dBFS).
CLIP_LEVEL = 0.99

Kind = Literal["input", "output"]


@dataclass(frozen=True)
class AudioDevice:
    """One PortAudio device as listed by :func:`list_devices`."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate: float
    """The device's native rate (Hz); recording uses it and the analysis resamples."""
    is_default_input: bool = False
    is_default_output: bool = False


@dataclass(frozen=True)
class RecordingLevel:
    """A level-meter reading, passed to ``record(on_level=...)`` about 20 times a second."""

    elapsed_s: float
    rms_db: float
    """RMS of the last ~50 ms in dBFS (-100 for digital silence)."""
    peak: float
    """Peak magnitude of the last ~50 ms in [0, 1]."""
    clipped: bool
    """True once any block of this recording reached full scale."""


def _sounddevice() -> Any:
    """Import sounddevice, turning a missing PortAudio into a :class:`DeviceError`."""
    try:
        import sounddevice as sd
    except OSError as exc:  # sounddevice raises OSError("PortAudio library not found")
        raise DeviceError(f"audio devices unavailable: {exc}; {PORTAUDIO_HINT}.") from exc
    except ImportError as exc:
        raise DeviceError(
            f"audio devices unavailable: the sounddevice package is missing ({exc}); run "
            "`pip install sounddevice` and " + PORTAUDIO_HINT + "."
        ) from exc
    _route_alsa_messages()
    return sd


_alsa_handler: Any = None


def _route_alsa_messages() -> None:
    """Send alsa-lib's messages to this module's logger instead of the terminal (Linux).

    alsa-lib prints lines such as ``ALSA lib pcm.c:8570:(snd_pcm_recover) underrun occurred``
    straight to stderr, where they land in the middle of the REPL's prompt. They are harmless
    (PortAudio recovers; real failures still arrive as PortAudio errors) and are logged at
    DEBUG level instead. Without libasound (macOS, Windows) this does nothing.
    """
    global _alsa_handler
    if _alsa_handler is not None:
        return
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        _alsa_handler = False
        return
    try:
        asound = ctypes.cdll.LoadLibrary(ctypes.util.find_library("asound") or "libasound.so.2")
    except OSError:
        _alsa_handler = False
        return
    # void handler(const char *file, int line, const char *function, int err, const char *fmt, ...)
    handler_type = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                    ctypes.c_char_p)

    def handler(file: bytes, line: int, function: bytes, err: int, fmt: bytes) -> None:
        _LOGGER.debug("ALSA %s:%d (%s): %s", (file or b"").decode(errors="replace"), line,
                      (function or b"").decode(errors="replace"), (fmt or b"").decode(errors="replace"))

    _alsa_handler = handler_type(handler)  # kept referenced for the life of the process
    asound.snd_lib_error_set_handler(_alsa_handler)


def list_devices() -> list[AudioDevice]:
    """All audio devices PortAudio sees (an empty list on a machine without any)."""
    sd = _sounddevice()
    try:
        raw = sd.query_devices()
        apis = sd.query_hostapis()
        default_in, default_out = sd.default.device
    except sd.PortAudioError as exc:
        raise DeviceError(f"cannot list audio devices: {exc}; {PORTAUDIO_HINT}.") from exc
    return [
        AudioDevice(
            index=int(d["index"]),
            name=str(d["name"]),
            hostapi=str(apis[d["hostapi"]]["name"]),
            max_input_channels=int(d["max_input_channels"]),
            max_output_channels=int(d["max_output_channels"]),
            default_sample_rate=float(d["default_samplerate"]),
            is_default_input=int(d["index"]) == default_in,
            is_default_output=int(d["index"]) == default_out,
        )
        for d in raw
    ]


def find_device(spec: int | str | None, *, kind: Kind) -> AudioDevice:
    """The device to use for ``kind``: an index, a unique part of a name, or the default (None).

    Raises
    ------
    DeviceError
        No such device, an ambiguous name, a device without channels of that kind, or no
        default device at all (e.g. no microphone).
    """
    devices = list_devices()
    channels = "max_input_channels" if kind == "input" else "max_output_channels"
    usable = [d for d in devices if getattr(d, channels) > 0]
    what = "microphone (input device)" if kind == "input" else "speaker (output device)"
    if not usable:
        raise DeviceError(
            f"no {what} found; connect one (and check `/devices`), or "
            + ("use --ref FILE / /load PATH." if kind == "input" else "use --no-play; files are still written.")
        )
    if spec is None or spec == "":
        flag = "is_default_input" if kind == "input" else "is_default_output"
        return next((d for d in usable if getattr(d, flag)), usable[0])
    if isinstance(spec, int) or str(spec).strip().isdigit():
        index = int(spec)
        match = [d for d in usable if d.index == index]
    else:
        match = [d for d in usable if str(spec).lower() in d.name.lower()]
    if len(match) != 1:
        names = ", ".join(f"{d.index}: {d.name}" for d in usable)
        problem = "matches several" if match else "matches no"
        raise DeviceError(f"{kind} device {spec!r} {problem} {what}; choose one of: {names}.")
    return match[0]


def record(
    seconds: float,
    *,
    device: int | str | None = None,
    sample_rate: int | None = None,
    on_level: Callable[[RecordingLevel], None] | None = None,
) -> tuple[np.ndarray, int]:
    """Record ``seconds`` of mono audio from an input device.

    Parameters
    ----------
    seconds : float
        Recording length, 0.5-120 s.
    device : int or str, optional
        Index or name part of the input device; the default input when None.
    sample_rate : int, optional
        Rate to record at (Hz); the device's native rate when None (the analysis resamples).
    on_level : callable, optional
        Called about 20 times a second from the calling thread with a :class:`RecordingLevel`.

    Returns
    -------
    (np.ndarray, int)
        float32 mono samples and their sample rate.

    Raises
    ------
    DeviceError
        PortAudio missing, no microphone, or the device failed. ``KeyboardInterrupt`` (Ctrl-C)
        stops the recording, closes the stream and propagates.
    """
    if not 0.5 <= float(seconds) <= 120.0:
        raise DeviceError(f"recording length {seconds!r} s is out of range; use 0.5-120 s (5 s is typical).")
    sd = _sounddevice()
    dev = find_device(device, kind="input")
    sr = int(sample_rate or dev.default_sample_rate)
    blocks: list[np.ndarray] = []

    def callback(data: np.ndarray, frames: int, t: Any, status: Any) -> None:
        if status:
            _LOGGER.debug("input stream status: %s", status)
        blocks.append(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0].copy())

    try:
        with sd.InputStream(device=dev.index, samplerate=sr, channels=1, dtype="float32",
                            callback=callback, latency="high"):
            _wait_recording(float(seconds), sr, blocks, on_level)
    except sd.PortAudioError as exc:
        raise DeviceError(f"recording from {dev.name!r} at {sr} Hz failed: {exc}; try another "
                          "--input-device (see /devices) or --ref FILE.") from exc
    audio = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)
    return audio[: int(round(seconds * sr))].astype(np.float32, copy=False), sr


def _wait_recording(seconds: float, sr: int, blocks: list[np.ndarray],
                    on_level: Callable[[RecordingLevel], None] | None) -> None:
    """Poll the blocks the callback collects until ``seconds`` of audio arrived."""
    start = time.monotonic()
    need = int(round(seconds * sr))
    clipped, seen = False, 0
    # Allow for a slow-starting device, then give up rather than hang.
    deadline = start + seconds + 5.0
    while True:
        have = sum(len(b) for b in blocks[:])
        recent = blocks[seen:] if len(blocks) > seen else blocks[-1:]
        seen = len(blocks)
        chunk = np.concatenate(recent) if recent else np.zeros(1, dtype=np.float32)
        peak = float(np.max(np.abs(chunk))) if chunk.size else 0.0
        clipped = clipped or peak >= CLIP_LEVEL
        if on_level is not None:
            rms = float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2))) if chunk.size else 0.0
            db = 20.0 * np.log10(rms) if rms > 1e-5 else -100.0
            on_level(RecordingLevel(min(have / sr, seconds), db, peak, clipped))
        if have >= need:
            return
        if time.monotonic() > deadline:
            raise DeviceError(f"the input device delivered only {have / sr:.1f} s of audio in "
                              f"{seconds + 5:.0f} s; it may be busy or disconnected. Check /devices.")
        time.sleep(LEVEL_INTERVAL_S)
