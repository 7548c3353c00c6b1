"""Microphones and speakers: list devices, record a clip, play audio in the background.

``sounddevice`` (and through it the PortAudio C library) is imported only inside the functions
here, so importing the package never needs PortAudio. A missing PortAudio, a machine without a
microphone or a failing device all become a :class:`DeviceError` whose message says what to do.

Recording and playback always use **separate streams** (``sd.rec``/``sd.play`` share one global
stream, so calling one stops the other). The :class:`Player` runs its own thread and accepts
chunks, so it can play a clip while the prompt waits for the next line, and later play audio
that is still being generated.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal

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
#: Playback block (s): the player checks for /stop between blocks, so this bounds stop latency.
PLAY_BLOCK_S = 0.1
#: The output stream is closed after this long without audio (s), freeing the device.
IDLE_CLOSE_S = 1.0

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
    return sd


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


class Player:
    """Background playback on its own output stream; never blocks the caller.

    ``play`` queues a clip (or a chunk of a clip still being generated) behind what is already
    playing; ``stop`` drops everything queued and silences the device within ~0.1 s. A device
    failure is kept in :attr:`error` (the REPL reports it once and turns playback off).
    """

    def __init__(self, *, device: int | str | None = None) -> None:
        self._device_spec = device
        self._queue: queue.Queue[tuple[int, np.ndarray, int] | None] = queue.Queue()
        self._generation = 0
        self._busy = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._play_until = 0.0
        self.error: DeviceError | None = None
        self.device: AudioDevice | None = None

    def open(self) -> AudioDevice:
        """Check that an output device exists (raises :class:`DeviceError` if not)."""
        self.device = find_device(self._device_spec, kind="output")
        return self.device

    def play(self, samples: np.ndarray, sample_rate: int, *, interrupt: bool = False) -> None:
        """Queue mono float32 audio; with ``interrupt`` stop what is playing first."""
        if self.error is not None:
            raise self.error
        if interrupt:
            self.stop()
        audio = np.ascontiguousarray(np.asarray(samples, dtype=np.float32).reshape(-1))
        with self._lock:
            self._busy.set()
            self._queue.put((self._generation, audio, int(sample_rate)))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="player", daemon=True)
                self._thread.start()

    feed = play  # a chunk of a clip still being generated is queued the same way

    def stop(self) -> None:
        """Drop everything queued and stop the sound now."""
        with self._lock:
            self._generation += 1
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._play_until = 0.0

    @property
    def is_playing(self) -> bool:
        """True while audio is queued, being written, or still sounding."""
        return self._busy.is_set() or time.monotonic() < self._play_until

    def wait(self, timeout: float | None = None) -> bool:
        """Block until playback finished (True) or ``timeout`` passed (False)."""
        end = None if timeout is None else time.monotonic() + timeout
        while self.is_playing and self.error is None:
            if end is not None and time.monotonic() > end:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        """Stop playback and end the thread."""
        self.stop()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _run(self) -> None:
        stream: Any = None
        try:
            while True:
                try:
                    item = self._queue.get(timeout=IDLE_CLOSE_S)
                except queue.Empty:
                    stream = _close_stream(stream, drain=True)
                    self._busy.clear()
                    continue
                if item is None:
                    break
                self._busy.set()
                stream = self._play_item(stream, *item)
                if self._queue.empty():
                    self._busy.clear()
        except DeviceError as exc:
            self.error = exc
            _LOGGER.warning("playback stopped: %s", exc)
        except Exception as exc:  # a device vanishing mid-stream: report, never kill the app
            self.error = DeviceError(f"playback failed: {exc}; playback is off (files are still written).")
            _LOGGER.warning("playback stopped: %s", exc)
        finally:
            self._busy.clear()
            _close_stream(stream, drain=False)

    def _play_item(self, stream: Any, generation: int, audio: np.ndarray, sr: int) -> Any:
        if generation != self._generation:
            return stream
        if stream is None or stream.samplerate_in != sr:
            stream = _close_stream(stream, drain=True)
            stream = _open_output(self._device_spec, sr)
        if stream.samplerate != sr:
            from .audio_io import resample

            audio = resample(audio, sr, int(stream.samplerate))
        block = max(1, int(stream.samplerate * PLAY_BLOCK_S))
        for start in range(0, len(audio), block):
            if generation != self._generation:
                stream.abort()  # drop what the device still buffers
                stream.close()
                return None
            part = audio[start : start + block]
            stream.write(part.reshape(-1, 1))
            self._play_until = time.monotonic() + float(stream.latency) + 0.05
        return stream


def _open_output(device: int | str | None, sr: int) -> Any:
    """An output stream at ``sr`` or, if the device refuses it, at the device's own rate."""
    sd = _sounddevice()
    dev = find_device(device, kind="output")
    for rate in (sr, int(dev.default_sample_rate)):
        try:
            stream = sd.OutputStream(device=dev.index, samplerate=rate, channels=1,
                                     dtype="float32", latency="high")
        except sd.PortAudioError as exc:
            last = exc
            continue
        stream.samplerate_in = sr  # the rate callers send, for reuse checks
        stream.start()
        return stream
    raise DeviceError(f"cannot open {dev.name!r} for playback: {last}; choose another "
                      "--output-device (see /devices) or use --no-play.")


def _close_stream(stream: Any, *, drain: bool) -> None:
    """Close a stream, letting buffered audio play out when ``drain``."""
    if stream is None:
        return None
    try:
        if drain:
            stream.stop()
        else:
            stream.abort()
        stream.close()
    except Exception as exc:  # closing a dead device must not raise
        _LOGGER.debug("closing output stream: %s", exc)
    return None
