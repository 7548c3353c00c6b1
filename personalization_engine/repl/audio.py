"""The REPL's microphone and speakers: find them, say once what is off, record with a live
meter, and play (whole clips, or a line's chunks as they are made)."""

from __future__ import annotations

import logging
import time

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from .. import audio_device, playback
from ..errors import DeviceError
from ..schema import GenerationResult
from .render import render_meter

_LOGGER = logging.getLogger(__name__)


class AudioView:
    """The session's microphone (``mic``) and player (``player``), each None when off."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.player: playback.Player | None = None
        self.mic: audio_device.AudioDevice | None = None
        self.mic_off: str | None = None
        """Why there is no microphone (None when there is one, or none was looked for)."""
        self.play_off: str | None = None
        """Why playback is off ("--no-play", or the device error)."""
        self._reported_player_error = False

    def setup(self, *, input_device: str | None, output_device: str | None, play: bool, microphone: bool) -> None:
        """Find the microphone and speakers; say once, clearly, what is unavailable."""
        if microphone:
            try:
                self.mic = audio_device.find_device(input_device, kind="input")
            except DeviceError as exc:
                self.mic_off = str(exc)
        if not play:
            self.play_off = "--no-play"
        else:
            # Kept open (silent when idle): a line's first chunk plays without the device's start-up delay.
            player = playback.Player(device=output_device, keep_open=True)
            try:
                player.open()
                self.player = player
            except DeviceError as exc:
                self.play_off = str(exc)
        if self.mic_off:
            self.console.print(f"[yellow]🎤 microphone off: {escape(self.mic_off)}[/]")
        if self.play_off and self.play_off != "--no-play":
            same = self.play_off == self.mic_off
            reason = " (same reason); " if same else f": {escape(self.play_off)}; "
            self.console.print(f"[yellow]🔈 playback off{reason}outputs are still written.[/]")
        parts = []
        if self.mic is not None:
            parts.append(f"mic: {self.mic.name} ({self.mic.default_sample_rate:.0f} Hz)")
        if self.player is not None and self.player.device is not None:
            parts.append(f"playback: {self.player.device.name}")
        if parts:
            self.console.print("[dim]" + " · ".join(parts) + "[/]")

    @property
    def playing(self) -> bool:
        """A player is on and has not failed."""
        return self.player is not None and self.player.error is None

    def report_player_error(self) -> None:
        """Say once that playback failed (and turn it off); outputs are still written."""
        if self.player is not None and self.player.error is not None and not self._reported_player_error:
            self._reported_player_error = True
            self.play_off = str(self.player.error)
            self.console.print(f"[yellow]🔈 playback off: {escape(self.play_off)}; outputs are still written.[/]")
            self.player = None

    def play(self, audio: tuple[np.ndarray, int], *, what: str, interrupt: bool = True) -> None:
        """Play a whole clip (interrupting what plays)."""
        if self.player is None:
            raise DeviceError(f"playback is off ({self.play_off}); cannot play {what}.")
        try:
            self.player.play(audio[0], audio[1], interrupt=interrupt)
        except DeviceError:
            self.report_player_error()

    def stop(self) -> None:
        if self.player is not None:
            self.player.stop()

    def finish(self) -> None:
        """A streamed line ended early: let what was queued play out."""
        if self.player is not None:
            self.player.finish()

    def feed(self, chunk: GenerationResult) -> None:
        """Queue one chunk for playback as it arrives, then the pause that follows it.

        A playback failure is not raised here: the player keeps it in ``error`` and
        :meth:`report_player_error` says it once (playback goes off, the line is still written).
        """
        player = self.player
        if player is None or player.error is not None:
            return
        try:
            player.feed(chunk.audio, chunk.sample_rate, final=chunk.is_final)
            pause = chunk.pause_after_s
            if pause > 0 and not chunk.is_final:
                player.pause(pause)
        except DeviceError as exc:
            _LOGGER.info("playback failed: %s", exc)

    def countdown(self, seconds: int) -> None:
        """The 3-2-1 before a recording."""
        if seconds <= 0:
            return
        with Live(Text(""), console=self.console, transient=True) as live:
            for i in range(seconds, 0, -1):
                live.update(Text(f"  recording in {i}…", style="bold yellow"))
                time.sleep(1.0)

    def record(self, seconds: float) -> tuple[np.ndarray, int]:
        """Record ``seconds`` from the microphone with a live level meter."""
        if self.mic is None:
            raise DeviceError(f"{self.mic_off or 'no microphone'}; use /load PATH instead.")
        start = audio_device.RecordingLevel(0.0, -100.0, 0.0, False)
        with Live(render_meter(start, seconds), console=self.console, refresh_per_second=20) as live:
            samples, sr = audio_device.record(seconds, device=self.mic.index,
                                              on_level=lambda lv: live.update(render_meter(lv, seconds)))
        peak = float(np.max(np.abs(samples))) if samples.size else 0.0
        if peak >= audio_device.CLIP_LEVEL:
            self.console.print("[red]⚠ the recording clipped: re-record further from the microphone "
                               "or with the input gain lower.[/]")
        return samples, sr

    def close(self) -> None:
        if self.player is not None:
            self.player.close()
