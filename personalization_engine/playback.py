"""Background playback: a queue of chunks in front of a callback output stream.

The :class:`Player` plays a clip while the prompt waits for the next line, and plays a line
chunk by chunk while it is still being generated. Like :mod:`.audio_device` it imports
``sounddevice`` only inside its functions, and a failing device becomes a :class:`DeviceError`.
Recording uses its own stream (see :mod:`.audio_device`), never this one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .audio_device import AudioDevice, _sounddevice, find_device
from .errors import DeviceError
from .prebuffer import DEFAULT_CHUNK_FRAMES, LineGate, LineStats, PrebufferPolicy
from .rates import FRAMES_PER_S, TTS_SAMPLE_RATE

__all__ = ["LineStats", "Player", "PrebufferPolicy"]

_LOGGER = logging.getLogger(__name__)

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
#: How often a held-back line re-checks its pre-buffer (s).
_GATE_POLL_S = 0.02


@dataclass
class _Item:
    """One queued piece of audio (``audio`` None: ``silence_s`` of silence)."""

    audio: np.ndarray | None
    sample_rate: int
    generation: int
    silence_s: float = 0.0
    line: int = 0

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate if self.audio is not None else self.silence_s


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
    ...     player.feed(chunk.audio, chunk.sample_rate, final=chunk.is_final)
    >>> player.wait()                                      # doctest: +SKIP
    """

    def __init__(self, *, device: int | str | None = None, keep_open: bool = False,
                 sample_rate: int = TTS_SAMPLE_RATE) -> None:
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
        # the utterance being fed has sounded: a dry queue before its first sample is the time
        # to first audio (a slow first resample, say), not an underrun
        self._sounding = False
        self._stream_lock = threading.RLock()  # guards opening, closing and aborting the stream
        self._stream: Any = None
        self._out_rate = 0
        self._latency = 0.0  # the open stream's output latency (s)
        self._frames_out = 0  # frames the callback has handed to the device (sound or silence)
        self._thread: threading.Thread | None = None
        self.underruns = 0
        """Times the queue ran dry while an utterance that had begun to sound was still being fed
        (silence was played)."""
        self.starved_s = 0.0
        """Seconds of silence played because of underruns."""
        self.error: DeviceError | None = None
        self.device: AudioDevice | None = None
        self._gate = LineGate()  # the current line's pre-buffer (guarded by _cond)
        self._line = 0

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
                    stream = self._open_stream(self._sample_rate)
                    try:
                        stream.start()
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
                self._pending.append(_Item(audio, int(sample_rate), self._generation, line=self._line))
                self._gate.fed(len(audio) / int(sample_rate), time.monotonic())
            self._gate.final = self._gate.final or final
            self._expecting = not final
            self._start_worker()
            self._cond.notify_all()

    def pause(self, seconds: float) -> None:
        """Queue ``seconds`` of silence (the pause after a segment)."""
        if seconds > 0:
            with self._cond:
                self._pending.append(_Item(None, 0, self._generation, float(seconds), line=self._line))
                self._start_worker()
                self._cond.notify_all()

    def finish(self) -> None:
        """No more chunks are coming (e.g. generation failed before its final chunk)."""
        with self._cond:
            self._expecting = False
            self._gate.final = True
            self._cond.notify_all()

    def begin_line(self, expected_audio_s: float, frames_per_s: float | None, *,
                   chunk_frames: int = DEFAULT_CHUNK_FRAMES, policy: PrebufferPolicy | None = None) -> None:
        """Start a new streamed line, held back until enough of it is queued to play without gaps.

        ``expected_audio_s``: the line's predicted length (s); ``frames_per_s``: this model's
        measured generation speed on this machine (codec frames per second of wall time; None
        before any measurement: real time is assumed until the line's own chunks show its speed,
        so a session's first line is held too instead of running dry chunk after chunk).
        ``policy`` replaces the default :class:`PrebufferPolicy` built from the two. The line's
        chunks then go through :meth:`feed` as usual; its start waits until the queued audio
        covers ``policy.required_s(expected - fed)`` (also taking the speed observed on this
        line's chunks when that is slower), or its final chunk came. :attr:`line_stats` counts
        the line's underruns.
        """
        if policy is None:
            speed = float(frames_per_s) if frames_per_s is not None else FRAMES_PER_S
            policy = PrebufferPolicy(speed, chunk_frames=int(chunk_frames))
        with self._cond:
            self._line += 1
            self._gate = LineGate(policy=policy, expected_s=max(0.0, float(expected_audio_s)), line=self._line,
                               begun_at=time.monotonic())
            self._cond.notify_all()

    @property
    def line_stats(self) -> LineStats:
        """Underruns and pre-buffering of the line begun last (see :meth:`begin_line`)."""
        g = self._gate
        return LineStats(underruns=g.underruns, starved_s=round(g.starved_s, 3), held_s=round(g.held_s, 3),
                         prebuffered_s=round(g.prebuffered_s, 3))

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
        self._clear_ready()

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

    def _clear_ready(self) -> None:
        """Drop the audio already handed to the device side (it falls silent within its latency)."""
        with self._buf_lock:
            self._ready.clear()
            self._offset = self._ready_samples = 0
            self._sounding_until = 0.0

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
                    if item is not None and self._holds(item):
                        self._cond.wait(timeout=_GATE_POLL_S)
                        continue
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

    def _holds(self, item: _Item) -> bool:
        """Whether ``item`` (the queue's head) must wait for its line's pre-buffer; opens the
        gate when the queued audio suffices (call with ``_cond`` held)."""
        gate = self._gate
        if gate.open or gate.policy is None or item.line != gate.line or item.generation != self._generation:
            return False
        now = time.monotonic()
        ready_s = self._ready_samples / self._out_rate if self._out_rate else 0.0
        queued = sum(i.duration_s for i in self._pending) + ready_s
        need = gate.policy.required_s(gate.expected_s - gate.fed_s, audio_per_s=gate.observed_audio_per_s(gate.policy))
        if gate.final or queued >= need:
            gate.open, gate.held_s, gate.prebuffered_s = True, now - gate.first_at, queued
            _LOGGER.debug("line starts after %.2f s with %.2f s queued (needed %.2f s)", gate.held_s, queued, need)
            return False
        return True

    def _fail(self, exc: DeviceError) -> None:
        self.error = exc
        _LOGGER.warning("playback stopped: %s", exc)
        with self._cond:
            self._pending.clear()
            self._expecting = False
        self._clear_ready()
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

    def _open_stream(self, sample_rate: int) -> Any:
        """Open (not start) the stream and return it; call with ``_stream_lock`` held."""
        self._stream = _open_output(self._device_spec, sample_rate, self._callback)
        self._out_rate = int(self._stream.samplerate)
        self._latency = float(self._stream.latency)
        self._frames_out = 0
        return self._stream

    def _close_if_idle(self) -> None:
        with self._stream_lock:
            if self._stream is None or self._keep_open:
                return
            idle = not self._pending and self._ready_samples == 0 and not self._expecting
            if idle and time.monotonic() > self._sounding_until + IDLE_CLOSE_S:
                self._close_stream(drain=True)

    def _close_stream(self, *, drain: bool) -> None:
        """Close the stream (call with ``_stream_lock`` held); aborting drops buffered sound."""
        _close_stream(self._stream, drain=drain)
        self._stream = None

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
                self._sounding = True
            if n < frames:
                out[n:] = 0.0  # underrun or idle: silence, never garbage
                gate = self._gate
                holding = gate.policy is not None and not gate.open
                fed = bool(self._expecting or self._pending)
                if not fed:
                    self._sounding = False  # the utterance is over; the next one starts afresh
                if fed and self._sounding and not holding:
                    self.starved_s += (frames - n) / rate
                    gate.starved_s += (frames - n) / rate
                    if not self._starving:
                        self.underruns += 1
                        gate.underruns += 1
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
