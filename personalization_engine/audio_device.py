"""Microphones and speakers: list devices, record a clip, play audio in the background.

``sounddevice`` (and through it the PortAudio C library) is imported only inside the functions
here, so importing the package never needs PortAudio. A missing PortAudio, a machine without a
microphone or a failing device all become a :class:`DeviceError` whose message says what to do.

Recording and playback always use **separate streams** (``sd.rec``/``sd.play`` share one global
stream, so calling one stops the other). The :class:`Player` is a queue of chunks in front of
a callback output stream: it plays a clip while the prompt waits for the next line, and plays
a line chunk by chunk while it is still being generated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
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
#: Least output buffering (s). The callback runs in Python: while synthesis or analysis holds
#: the GIL it can be late, and a short buffer then underruns (ALSA printed "underrun occurred"
#: during the REPL's analysis with PulseAudio's 35 ms "high" latency). 0.1 s rides out those
#: stalls and adds about as much to the time until a line is heard (0.13 s measured from
#: ``feed`` to the sink on a warm stream).
OUTPUT_LATENCY_S = 0.1
#: A started stream counts as running once it played this much past its primed buffer (s).
START_MARGIN_S = 0.05
#: Longest wait for a started stream to run before audio is handed over anyway (s).
START_WAIT_S = 3.0
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


@dataclass
class _Item:
    """One queued piece of audio (``audio`` None: ``silence_s`` of silence)."""

    audio: np.ndarray | None
    sample_rate: int
    generation: int
    silence_s: float = 0.0


class Player:
    """Background playback through a queue of chunks; never blocks the caller.

    ``feed`` queues a chunk of audio that is still being generated (``final=True`` on the last
    one), ``pause`` queues silence (the pause between two segments), ``play`` queues a whole
    clip. A worker thread converts each chunk to the device's rate and hands it to the output
    stream, whose callback copies queued samples to the device; when the queue runs dry before
    the final chunk arrived (the generator is slower than real time), the callback plays
    silence and counts an underrun instead of failing. ``stop`` drops everything queued; the
    device falls silent within its buffer (OUTPUT_LATENCY_S). New audio queues behind what is
    playing. With ``keep_open`` the stream stays open, silent when idle, so every line starts
    without the device's start-up delay. A device failure is kept in :attr:`error` (the REPL
    reports it once and turns playback off); ``feed`` then raises it.

    Examples
    --------
    >>> player = Player()                                  # doctest: +SKIP
    >>> for chunk in chunks:                               # doctest: +SKIP
    ...     player.feed(chunk.audio, 24_000, final=chunk.is_final)
    >>> player.wait()                                      # doctest: +SKIP
    """

    def __init__(self, *, device: int | str | None = None, keep_open: bool = False,
                 sample_rate: int = 24_000) -> None:
        self._device_spec = device
        self._keep_open = keep_open  # hold the stream open (silent when idle) until close()
        self._sample_rate = int(sample_rate)  # rate a kept-open stream is opened at
        self._cond = threading.Condition()  # guards _pending, _generation, _expecting, _closed
        self._pending: deque[_Item] = deque()
        self._generation = 0
        self._expecting = False  # an utterance is being fed and its final chunk has not come
        self._closed = False
        self._buf_lock = threading.Lock()  # guards the device-side buffer (shared with the callback)
        self._ready: deque[np.ndarray] = deque()
        self._offset = 0  # samples of _ready[0] already played
        self._ready_samples = 0
        self._sounding_until = 0.0  # monotonic time the last handed-over sample leaves the device
        self._starving = False
        self._stream_lock = threading.RLock()  # guards opening, closing and aborting the stream
        self._stream: Any = None
        self._out_rate = 0
        self._latency = 0.0  # the open stream's output latency (s)
        self._frames_out = 0  # frames the callback has handed to the device (sound or silence)
        self._thread: threading.Thread | None = None
        self.underruns = 0
        """Times the queue ran dry while an utterance was still being fed (silence was played)."""
        self.starved_s = 0.0
        """Seconds of silence played because of underruns."""
        self.error: DeviceError | None = None
        self.device: AudioDevice | None = None

    # ---- the caller's side (never blocks)

    def open(self) -> AudioDevice:
        """Check that an output device exists (raises :class:`DeviceError` if not).

        With ``keep_open`` the output stream is opened and started now, playing silence while
        idle, so the first chunk of every later line plays without the device's start-up delay
        (measured here: about 2 s through ALSA's PulseAudio plugin on a null sink).
        """
        self.device = find_device(self._device_spec, kind="output")
        if self._keep_open:
            with self._stream_lock:
                if self._stream is None:
                    self._open_stream(self._sample_rate)
                    try:
                        self._stream.start()
                    except Exception as exc:  # sounddevice.PortAudioError: a busy or vanished device
                        self._close_stream(drain=False)
                        raise DeviceError(f"cannot start playback on {self.device.name!r}: {exc}; choose "
                                          "another --output-device (see /devices) or use --no-play.") from exc
        return self.device

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Wait until a kept-open stream is really running (past the device's start-up delay)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._running():
                return True
            time.sleep(0.02)
        return False

    def feed(self, samples: np.ndarray, sample_rate: int, *, final: bool = False) -> None:
        """Queue a chunk of mono float32 audio; ``final`` marks the last chunk of an utterance."""
        if self.error is not None:
            raise self.error
        audio = np.ascontiguousarray(np.asarray(samples, dtype=np.float32).reshape(-1))
        with self._cond:
            if audio.size:
                self._pending.append(_Item(audio, int(sample_rate), self._generation))
            self._expecting = not final
            self._start_worker()
            self._cond.notify_all()

    def pause(self, seconds: float) -> None:
        """Queue ``seconds`` of silence (the pause after a segment)."""
        if seconds > 0:
            with self._cond:
                self._pending.append(_Item(None, 0, self._generation, float(seconds)))
                self._start_worker()
                self._cond.notify_all()

    def finish(self) -> None:
        """No more chunks are coming (e.g. generation failed before its final chunk)."""
        with self._cond:
            self._expecting = False

    def play(self, samples: np.ndarray, sample_rate: int, *, interrupt: bool = False) -> None:
        """Queue a whole clip; with ``interrupt`` stop what is playing first."""
        if interrupt:
            self.stop()
        self.feed(samples, sample_rate, final=True)

    def stop(self) -> None:
        """Drop everything queued; the device falls silent within its latency.

        The stream stays open (the callback plays silence from its next block), so the next
        line starts without the device's start-up delay.
        """
        with self._cond:
            self._generation += 1
            self._pending.clear()
            self._expecting = False
        with self._buf_lock:
            self._ready.clear()
            self._offset = self._ready_samples = 0
            self._sounding_until = 0.0

    @property
    def queued_s(self) -> float:
        """Seconds of audio queued and not yet handed to the device."""
        pending = sum(len(i.audio) / i.sample_rate if i.audio is not None else i.silence_s
                      for i in list(self._pending))
        return pending + (self._ready_samples / self._out_rate if self._out_rate else 0.0)

    @property
    def is_playing(self) -> bool:
        """True while audio is queued, an utterance is being fed, or sound is still leaving the device."""
        return (bool(self._pending) or self._ready_samples > 0 or self._expecting
                or time.monotonic() < self._sounding_until)

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
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        with self._stream_lock:
            self._close_stream(drain=False)

    # ---- the worker thread: converts chunks and owns the stream

    def _start_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._closed = False
            self._thread = threading.Thread(target=self._run, name="player", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    if not self._pending and not self._closed:
                        self._cond.wait(timeout=0.05)
                    if self._closed:
                        return
                    item = self._pending[0] if self._pending else None
                if item is not None:
                    self._hand_over(item)
                    with self._cond:
                        if self._pending and self._pending[0] is item:
                            self._pending.popleft()
                else:
                    self._close_if_idle()
        except DeviceError as exc:
            self._fail(exc)
        except Exception as exc:  # a device vanishing mid-stream: report, never kill the app
            self._fail(DeviceError(f"playback failed: {exc}; playback is off (files are still written)."))

    def _fail(self, exc: DeviceError) -> None:
        self.error = exc
        _LOGGER.warning("playback stopped: %s", exc)
        with self._cond:
            self._pending.clear()
            self._expecting = False
        with self._buf_lock:
            self._ready.clear()
            self._offset = self._ready_samples = 0
            self._sounding_until = 0.0
        with self._stream_lock:
            self._close_stream(drain=False)

    def _hand_over(self, item: _Item) -> None:
        """Convert ``item`` to the stream's rate and append it to the device-side buffer."""
        with self._stream_lock:
            if item.generation != self._generation:
                return
            if self._stream is None:
                self._open_stream(item.sample_rate or self._sample_rate)
            elif not self._stream.active and not self._stream.stopped:  # started, then died
                raise DeviceError("the output stream stopped unexpectedly (device unplugged or busy?); "
                                  "playback is off (files are still written).")
            if not self._stream.active:
                self._stream.start()
            self._wait_running()
            if item.audio is None:
                audio = np.zeros(int(round(item.silence_s * self._out_rate)), dtype=np.float32)
            elif item.sample_rate != self._out_rate:
                from .audio_io import resample

                audio = resample(item.audio, item.sample_rate, self._out_rate)
            else:
                audio = item.audio
            with self._buf_lock:
                if item.generation != self._generation:
                    return
                self._ready.append(audio)
                self._ready_samples += len(audio)
            _LOGGER.debug("queued %.2f s for the device (%.2f s waiting)", len(audio) / self._out_rate,
                          self._ready_samples / self._out_rate)

    def _running(self) -> bool:
        """True once the stream plays in real time, past the buffer PortAudio fills at start."""
        return bool(self._out_rate) and self._frames_out / self._out_rate > self._latency + START_MARGIN_S

    def _wait_running(self) -> None:
        """Hold audio back until a just-started stream really runs (at most START_WAIT_S).

        Some devices take a while to start after PortAudio primed them (about 2 s through ALSA's
        PulseAudio plugin on a null sink), and audio handed over during that time lost its first
        tens of ms there; silence is primed instead.
        """
        end = time.monotonic() + START_WAIT_S
        while not self._running() and time.monotonic() < end and self._stream is not None and self._stream.active:
            time.sleep(0.005)

    def _open_stream(self, sample_rate: int) -> None:
        """Open (not start) the stream; call with ``_stream_lock`` held."""
        self._stream = _open_output(self._device_spec, sample_rate, self._callback)
        self._out_rate = int(self._stream.samplerate)
        self._latency = float(self._stream.latency)
        self._frames_out = 0

    def _close_if_idle(self) -> None:
        with self._stream_lock:
            if self._stream is None or self._keep_open:
                return
            idle = not self._pending and self._ready_samples == 0 and not self._expecting
            if idle and time.monotonic() > self._sounding_until + IDLE_CLOSE_S:
                self._close_stream(drain=True)

    def _close_stream(self, *, drain: bool) -> None:
        """Close the stream (call with ``_stream_lock`` held); aborting drops buffered sound."""
        self._stream = _close_stream(self._stream, drain=drain)

    # ---- the device's side: PortAudio's callback thread

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        out = outdata[:, 0]
        n = 0
        with self._buf_lock:
            while n < frames and self._ready:
                head = self._ready[0]
                take = min(frames - n, len(head) - self._offset)
                out[n : n + take] = head[self._offset : self._offset + take]
                n += take
                self._offset += take
                if self._offset >= len(head):
                    self._ready.popleft()
                    self._offset = 0
            self._ready_samples -= n
            self._frames_out += frames
            rate = self._out_rate or 1
            if n:
                self._sounding_until = time.monotonic() + self._latency + frames / rate
            if n < frames:
                out[n:] = 0.0  # underrun or idle: silence, never garbage
                if self._expecting or self._pending:
                    self.starved_s += (frames - n) / rate
                    if not self._starving:
                        self.underruns += 1
                    self._starving = True
            else:
                self._starving = False
        if len(outdata[0]) > 1:
            outdata[:, 1:] = outdata[:, :1]


def _open_output(device: int | str | None, sr: int, callback: Callable[..., None]) -> Any:
    """An unstarted callback stream at ``sr`` or, if the device refuses it, at its own rate."""
    sd = _sounddevice()
    dev = find_device(device, kind="output")
    last: Exception | None = None
    for rate in dict.fromkeys((sr, int(dev.default_sample_rate))):
        try:
            return sd.OutputStream(device=dev.index, samplerate=rate, channels=1, dtype="float32",
                                   latency=max(OUTPUT_LATENCY_S, _high_latency(sd, dev.index)),
                                   callback=callback)
        except sd.PortAudioError as exc:
            last = exc
    raise DeviceError(f"cannot open {dev.name!r} for playback: {last}; choose another "
                      "--output-device (see /devices) or use --no-play.")


def _high_latency(sd: Any, index: int) -> float:
    """The device's own "high" output latency (s), 0 where PortAudio cannot say."""
    try:
        return float(sd.query_devices(index)["default_high_output_latency"])
    except Exception:  # a device that vanished meanwhile: the stream open will report it
        return 0.0


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
