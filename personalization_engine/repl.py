"""The Rich terminal UI: the interactive cloning studio, batch mode and the Voice DNA panel.

This is the only module that imports Rich. The work is done by the library (``analysis``,
``qwen_adapter``, ``cloning``, ``fingerprint``, ``voice_library``, ``audio_device``,
``playback``); this module shows it. Library errors (:class:`PersonalizationError`) print their
one-line message and the prompt comes back; anything else is a bug, shown as one line (the
traceback with ``--debug``).

Doors into the same code:

* :func:`run` - the interactive session of ``run_qwen_interactive.py`` (and its ``--text-file``
  batch mode);
* :func:`run_batch` / :func:`run_clone_command` - ``python -m personalization_engine clone``;
* :func:`render_profile`, :func:`sparkline`, :func:`print_analysis` - ``... analyze``.
"""

from __future__ import annotations

import difflib
import logging
import math
import re
import shlex
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from . import audio_device, playback
from .cloning import CloneSettings, SynthesisProgress, clone_line
from .errors import DeviceError, OutputWriteError, PersonalizationError, ProfileError
from .fingerprint import OutputPair
from .schema import EMOTION_LABELS, AudioClip, GenerationResult, ReferenceInfo, VoiceProfile
from .voice_library import VoiceLibrary, validate_name

_LOGGER = logging.getLogger(__name__)

#: Eight block heights for sparklines, lowest first.
SPARK_CHARS = "▁▂▃▄▅▆▇█"
#: Similarity colours: at or above the first is a good clone, below the second a poor one.
SIM_GOOD, SIM_POOR = 0.75, 0.5
#: Level meter range (dBFS): -60 is a quiet room, 0 is full scale.
METER_FLOOR_DB = -60.0

InputFn = Callable[[str], str]


@dataclass(frozen=True)
class ReplOptions:
    """Everything ``run_qwen_interactive.py`` can set (defaults are the command's defaults)."""

    ref: str | None = None
    """Reference clip; skips recording."""
    voice: str | None = None
    """A saved voice to start with (``voices/NAME``)."""
    transcript: str | None = None
    """Transcript of the reference: enables ICL mode."""
    model: str = "0.6b"
    device: str = "auto"
    dtype: str = "auto"
    out_dir: Path = Path("outputs")
    """Output folder, relative to the working directory."""
    voices_dir: Path = Path("voices")
    """Voice library folder, relative to the working directory."""
    play: bool = True
    input_device: str | None = None
    output_device: str | None = None
    list_devices: bool = False
    seconds: float = 5.0
    """Recording length (s)."""
    countdown: int = 3
    """Seconds of 3-2-1 countdown before recording."""
    language: str = "auto"
    seed: int | None = None
    text_file: Path | None = None
    """Batch mode: one output pair per non-empty line, then exit."""
    debug: bool = False


# --------------------------------------------------------------------------- rendering


def make_console(**kwargs: Any) -> Console:
    """The Console every command of the engine prints to (stderr stays free for logs)."""
    return Console(highlight=False, **kwargs)


def sparkline(values: Sequence[float] | np.ndarray, width: int = 40) -> str:
    """A unicode block sparkline of ``values``; NaN (unvoiced) stretches become spaces.

    Values are averaged into ``width`` bins (or one character per value when there are fewer),
    and scaled from their minimum to their maximum. A bin with no finite value is a space.

    Examples
    --------
    >>> sparkline([1, 2, 3, float("nan"), 3, 2, 1], width=7)
    '▁▅█ █▅▁'
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0 or width <= 0:
        return ""
    n = min(int(width), v.size)
    edges = np.linspace(0, v.size, n + 1).astype(int)
    bins = np.full(n, np.nan)
    for i in range(n):
        part = v[edges[i] : max(edges[i + 1], edges[i] + 1)]
        part = part[np.isfinite(part)]
        if part.size:
            bins[i] = part.mean()
    finite = bins[np.isfinite(bins)]
    if finite.size == 0:
        return " " * n
    lo, hi = float(finite.min()), float(finite.max())
    span = hi - lo
    chars = []
    for b in bins:
        if not np.isfinite(b):
            chars.append(" ")
        elif span <= 0:
            chars.append(SPARK_CHARS[len(SPARK_CHARS) // 2 - 1])
        else:
            chars.append(SPARK_CHARS[min(len(SPARK_CHARS) - 1, int((b - lo) / span * len(SPARK_CHARS)))])
    return "".join(chars)


def _bar(fraction: float, width: int = 20) -> str:
    """A horizontal bar of ``width`` cells, filled to ``fraction`` (eighth-cell resolution)."""
    eighths = "▏▎▍▌▋▊▉"
    f = min(max(float(fraction), 0.0), 1.0) * width
    full = int(f)
    rest = int((f - full) * 8)
    bar = "█" * full + (eighths[rest - 1] if rest and full < width else "")
    return bar + " " * (width - len(bar))


def _stress_line(profile: VoiceProfile, width: int = 40) -> str:
    """A timeline of the clip: stressed syllables as bars whose height is their prominence."""
    duration = max(profile.prosody.duration_s, 1e-6)
    cells = ["·"] * width
    for point in profile.prosody.energy.stress:
        i = min(width - 1, max(0, int(point.time_s / duration * width)))
        level = SPARK_CHARS[min(len(SPARK_CHARS) - 1, int(max(point.prominence, 0.0) * len(SPARK_CHARS)))]
        cells[i] = max(cells[i], level, key=lambda c: SPARK_CHARS.find(c))
    return "".join(cells)


def _fmt(value: float | None, spec: str, unit: str = "") -> str:
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{value:{spec}}{unit}"


def render_emotion(profile: VoiceProfile | None, *, note: str | None = None) -> RenderableType:
    """The emotion line and a bar chart of the 7 probabilities (or why it is unavailable)."""
    emotion = profile.emotion if profile is not None else None
    if emotion is None:
        return Text(f"unavailable ({note or 'no emotion model loaded'})", style="dim")
    head = Text(f"{emotion.label} ", style="bold magenta")
    head.append(f"{emotion.probability:.0%}")
    if emotion.uncertain:
        head.append("  (uncertain: low confidence)", style="yellow")
    chart = Table.grid(padding=(0, 1))
    for label in EMOTION_LABELS:
        p = float(emotion.distribution.get(label, 0.0))
        style = "magenta" if label == emotion.label else "grey50"
        chart.add_row(Text(f"{label:<9}", style=style), Text(_bar(p, 20), style=style), Text(f"{p:4.0%}", style=style))
    return Group(head, chart)


def render_profile(profile: VoiceProfile, *, title: str, emotion_note: str | None = None,
                   subtitle: str | None = None) -> RenderableType:
    """The Voice DNA of one clip as a Rich panel: pitch, energy/stress, rate and emotion.

    Parameters
    ----------
    profile : VoiceProfile
        From :func:`analysis.analyze_voice`.
    title : str
        Panel title (a file or voice name).
    emotion_note : str, optional
        Why the emotion is missing, shown when ``profile.emotion`` is None.
    subtitle : str, optional
        Panel subtitle (e.g. durations).
    """
    p = profile.prosody
    pitch, energy, rate = p.pitch, p.energy, p.rate
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column()
    grid.add_row("Register", Text(pitch.register, style="bold"))
    grid.add_row("Pitch", f"median {_fmt(pitch.median_hz, '.0f', ' Hz')} · mean {_fmt(pitch.mean_hz, '.0f')} "
                          f"± {_fmt(pitch.std_hz, '.0f', ' Hz')} · range {_fmt(pitch.p5_hz, '.0f')}–"
                          f"{_fmt(pitch.p95_hz, '.0f', ' Hz')} ({_fmt(pitch.range_semitones, '.1f', ' st')}) · "
                          f"voiced {_fmt(pitch.voiced_fraction * 100, '.0f', '%')}")
    # Semitones, not Hz: equal steps sound equal, and one octave jump does not flatten the rest.
    log_f0 = 12.0 * np.log2(np.asarray(pitch.contour.f0_hz, dtype=np.float64).clip(min=1.0))
    log_f0[~np.isfinite(np.asarray(pitch.contour.f0_hz, dtype=np.float64))] = np.nan
    grid.add_row("Contour", Text(sparkline(log_f0, 40), style="green")
                 + Text(f"  {_fmt(_nanmin(pitch.contour.f0_hz), '.0f')}–{_fmt(_nanmax(pitch.contour.f0_hz), '.0f', ' Hz')}",
                        style="dim"))
    grid.add_row("Energy", f"mean {_fmt(energy.mean_db, '.1f', ' dBFS')} · dynamic range "
                           f"{_fmt(energy.dynamic_range_db, '.1f', ' dB')}")
    grid.add_row("Stress", Text(_stress_line(profile), style="yellow")
                 + Text(f"  {len(energy.stress)} stressed syllables", style="dim"))
    grid.add_row("Rate", f"{_fmt(rate.syllables_per_s, '.1f')} syllables/s · articulation "
                         f"{_fmt(rate.articulation_rate, '.1f')}/s · {rate.pause_count} "
                         f"{'pause' if rate.pause_count == 1 else 'pauses'} "
                         f"({_fmt(rate.pause_ratio * 100, '.0f', '%')} of the time)")
    grid.add_row("Emotion", render_emotion(profile, note=emotion_note))
    sub = subtitle or f"{p.duration_s:.1f} s clip · {p.speech_duration_s:.1f} s speech"
    return Panel(grid, title=f"[bold]Voice DNA[/] · {title}", subtitle=sub, border_style="cyan", expand=False)


def _nanmin(x: np.ndarray) -> float | None:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmin(x)) if np.isfinite(x).any() else None


def _nanmax(x: np.ndarray) -> float | None:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmax(x)) if np.isfinite(x).any() else None


def print_analysis(console: Console, name: str, clip: AudioClip, profile: VoiceProfile,
                   *, emotion_note: str | None = None) -> None:
    """Print the Voice DNA panel of one analysed file (the ``analyze`` command)."""
    from .analysis import emotion_unavailable_reason

    note = emotion_note or (emotion_unavailable_reason() if profile.emotion is None else None)
    sub = (f"{clip.original_duration_s:.1f} s file · {clip.duration_s:.1f} s analysed · "
           f"{clip.speech_duration_s:.1f} s speech · {clip.original_sample_rate} Hz")
    console.print(render_profile(profile, title=name, emotion_note=note, subtitle=sub))
    for warning in clip.warnings:
        console.print(f"[yellow]⚠ {escape(warning)}[/]")


def render_devices(devices: Sequence[audio_device.AudioDevice]) -> RenderableType:
    """A table of the audio devices, defaults marked."""
    table = Table(title="Audio devices", title_justify="left")
    for col in ("#", "name", "host API", "in", "out", "rate", "default"):
        table.add_column(col, justify="right" if col in ("#", "in", "out", "rate") else "left")
    for d in devices:
        marks = " ".join(m for m, on in (("input", d.is_default_input), ("output", d.is_default_output)) if on)
        table.add_row(str(d.index), d.name, d.hostapi, str(d.max_input_channels), str(d.max_output_channels),
                      f"{d.default_sample_rate:.0f}", marks)
    return table


def _meter(level: audio_device.RecordingLevel, seconds: float, width: int = 30) -> RenderableType:
    """The live recording line: elapsed time, a level bar and a clipping warning."""
    frac = (max(level.rms_db, METER_FLOOR_DB) - METER_FLOOR_DB) / -METER_FLOOR_DB
    style = "red" if level.peak >= audio_device.CLIP_LEVEL else "yellow" if level.rms_db > -12 else "green"
    line = Text("● REC ", style="bold red")
    line.append(f"{level.elapsed_s:4.1f} / {seconds:.1f} s  ")
    line.append(_bar(frac, width), style=style)
    line.append(f" {level.rms_db:6.1f} dBFS" if level.rms_db > -100 else "   silent  ")
    if level.clipped:
        line.append("  CLIPPING: move back or lower the input gain", style="bold red")
    return line


# --------------------------------------------------------------------------- commands table

COMMANDS: dict[str, tuple[str, str]] = {
    "/record": ("[SECONDS]", "record a new reference voice from the microphone"),
    "/load": ("PATH", "use an audio file as the reference voice"),
    "/transcript": ("TEXT", "set the reference's transcript (switches to ICL mode); no TEXT clears it"),
    "/mode": ("xvector|icl", "voice-prompt mode: speaker embedding only, or in-context with the transcript"),
    "/model": ("NAME|DIR", "switch model: 0.6b, 1.7b or a local folder"),
    "/lang": ("CODE", "language of the lines (auto, en, zh, de, fr, ...)"),
    "/play": ("[N]", "replay output N of this session (default: the last)"),
    "/stop": ("", "stop playback"),
    "/voice save": ("NAME [--force]", "save the current voice to the library (voices/NAME/)"),
    "/voice use": ("NAME", "switch to a saved voice"),
    "/voices": ("", "list the saved voices"),
    "/devices": ("", "list audio devices"),
    "/info": ("", "show the current voice's Voice DNA again"),
    "/help": ("", "this list"),
    "/quit": ("", "leave (Ctrl-D or Ctrl-C at an empty prompt also work)"),
}


def render_help() -> RenderableType:
    table = Table(title="Type a line and press Enter to speak it. Commands:", title_justify="left", box=None)
    table.add_column("command", style="bold cyan", no_wrap=True)
    table.add_column("")
    for name, (args, text) in COMMANDS.items():
        table.add_row(f"{name} {args}".strip(), text)
    return table


# --------------------------------------------------------------------------- batch


def run_batch(
    model: Any,
    voice: Any,
    lines: Sequence[str],
    out_dir: str | Path,
    *,
    console: Console,
    language: str = "auto",
    seed: int | None = None,
    reference: ReferenceInfo | None = None,
    analysis_s: float | None = None,
    prompt_s: float | None = None,
    player: playback.Player | None = None,
) -> list[Path]:
    """Speak each line in ``voice`` with a progress bar; one output pair per line.

    The single implementation behind ``run_qwen_interactive.py --text-file`` and
    ``python -m personalization_engine clone``. A line that fails (e.g. text the model cannot
    speak) is reported and skipped; a write failure (disk full) stops the batch. Ctrl-C stops
    after printing what was written (every written pair is complete) and propagates.

    Returns
    -------
    list of Path
        The written wav files, in line order (each has its ``.json`` beside it).
    """
    settings = CloneSettings(out_dir=Path(out_dir), reference=reference or _reference_from_voice(voice),
                             language=language, seed=seed, analysis_s=analysis_s, prompt_s=prompt_s)
    written: list[Path] = []
    failed: list[int] = []
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("cloning", total=len(lines))
            on_chunk = None if player is None else lambda chunk, _p: _feed_chunk(player, chunk)
            for i, line in enumerate(lines, 1):
                progress.update(task, description=f"line {i}: {_short(line, 30)}")
                try:
                    # With a player, each line streams into it as it is made (queued behind the last).
                    pair, result = clone_line(model, voice, line, settings, on_chunk=on_chunk, stream=player is not None)
                except PersonalizationError as exc:
                    if player is not None:
                        player.finish()
                    failed.append(i)
                    progress.console.print(f"[red]✖ line {i}: {escape(str(exc))}[/]")
                    if isinstance(exc, OutputWriteError):
                        break  # the next line would fail the same way
                    progress.advance(task)
                    continue
                written.append(pair.wav_path)
                progress.console.print(_result_line(len(written), pair, result))
                progress.advance(task)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted after {len(written)} of {len(lines)} lines; "
                      "every written pair is complete.[/]")
        raise
    _batch_summary(console, written, failed, len(lines), Path(out_dir))
    return written


def _batch_summary(console: Console, written: list[Path], failed: list[int], total: int, out_dir: Path) -> None:
    style = "green" if len(written) == total else "yellow"
    console.print(f"[{style}]{len(written)} of {total} lines written to {escape(str(out_dir.resolve()))}/[/]")
    if failed:
        console.print(f"[yellow]failed lines: {', '.join(map(str, failed))}[/]")


def run_clone_command(
    *,
    ref: str,
    lines: Sequence[str],
    transcript: str | None = None,
    model: str = "0.6b",
    device: str = "auto",
    dtype: str = "auto",
    language: str = "auto",
    seed: int | None = None,
    out_dir: str | Path = "outputs",
    console: Console | None = None,
) -> int:
    """``python -m personalization_engine clone``: the batch mode without the REPL around it.

    Returns the exit code: 0 all lines written, 1 some failed, 2 bad input, 130 interrupted.
    """
    options = ReplOptions(ref=ref, transcript=transcript, model=model, device=device, dtype=dtype,
                          language=language, seed=seed, out_dir=Path(out_dir), play=False)
    return _run_batch_mode(options, list(lines), console or make_console())


def _run_batch_mode(options: ReplOptions, lines: list[str], console: Console) -> int:
    session = _Session(options, console, None, interactive=False)
    session.banner()
    try:
        session.setup_audio()
        if options.voice:
            session.use_voice(options.voice)
        elif options.ref:
            session.load_reference(options.ref, transcript=options.transcript)
        else:
            raise ProfileError("batch mode needs a voice: give --ref FILE or --voice NAME.")
        session.ensure_voice()
        written = run_batch(session.model, session.voice, lines, options.out_dir, console=console,
                            language=session.language, seed=options.seed, reference=session.reference_info(),
                            analysis_s=session.ref.analysis_s if session.ref else None,
                            prompt_s=session.prompt_s, player=session.player)
        if session.player is not None and session.player.is_playing:
            console.print("[dim]waiting for playback to finish (Ctrl-C to skip)…[/]")
            session.player.wait()
    except PersonalizationError as exc:
        console.print(f"[red]✖ {escape(str(exc))}[/]")
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        session.close()
    return 0 if len(written) == len(lines) else 1


def read_text_file(path: str | Path) -> list[str]:
    """The non-empty, stripped lines of a UTF-8 text file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ProfileError(f"{p}: text file not found; check the path.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{p}: cannot read the text file ({exc}); it must be UTF-8 text.") from exc
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ProfileError(f"{p}: no text to speak (the file has no non-empty lines).")
    return lines


# --------------------------------------------------------------------------- the session


@dataclass(frozen=True)
class _Reference:
    """The current reference voice."""

    name: str
    kind: str
    """file | recording | voice."""
    source: Any
    """What ``create_voice`` gets: a path, or ``(samples, sample_rate)`` of a recording."""
    profile: VoiceProfile | None
    analysis_s: float | None
    emotion_note: str | None


class _Session:
    """State and commands of one interactive (or batch) session."""

    def __init__(self, options: ReplOptions, console: Console, input_fn: InputFn | None,
                 *, interactive: bool = True) -> None:
        self.o = options
        self.console = console
        self.input_fn = input_fn or _terminal_input(console)
        self.interactive = interactive
        self.library = VoiceLibrary(options.voices_dir)
        self.model: Any = None
        self.model_name = options.model
        self.voice: Any = None
        self.ref: _Reference | None = None
        self.transcript = options.transcript
        self.mode = "icl" if options.transcript else "xvector"
        self.language = options.language
        self.prompt_s: float | None = None
        self.outputs: list[OutputPair] = []
        self.player: playback.Player | None = None
        self.mic: audio_device.AudioDevice | None = None
        self.mic_off: str | None = None
        self.play_off: str | None = None
        self._reported_player_error = False
        self._warned: set[str] = set()

    # ---- start and stop

    def banner(self) -> None:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold cyan")
        grid.add_column()
        grid.add_row("device", _describe_device(self.o.device, self.o.dtype))
        seed = f" · seed {self.o.seed}" if self.o.seed is not None else ""
        grid.add_row("model", Text(f"{self.model_name} · mode {self.mode}{seed}"))
        grid.add_row("outputs", Text(f"{self.o.out_dir.resolve()}/"))
        grid.add_row("voices", Text(f"{self.o.voices_dir.resolve()}/"))
        hint = "Type a line to speak it · /help for commands · Ctrl-D to quit" if self.interactive else "batch mode"
        self.console.print(Panel(grid, title="[bold]Qwen3-TTS voice cloning studio[/]", subtitle=hint,
                                 border_style="blue", expand=False))

    def setup_audio(self) -> None:
        """Find the microphone and speakers; say once, clearly, what is unavailable."""
        if self.interactive:
            try:
                self.mic = audio_device.find_device(self.o.input_device, kind="input")
            except DeviceError as exc:
                self.mic_off = str(exc)
        if not self.o.play:
            self.play_off = "--no-play"
        else:
            # Kept open (silent when idle): a line's first chunk plays without the device's start-up delay.
            player = playback.Player(device=self.o.output_device, keep_open=True)
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

    def start(self) -> None:
        """Get the first reference: --voice, --ref, or a recording."""
        if self.o.voice:
            self.use_voice(self.o.voice)
        elif self.o.ref:
            self.load_reference(self.o.ref, transcript=self.o.transcript)
        elif self.mic is not None:
            what = (f"read this aloud: “{escape(self.o.transcript)}”" if self.o.transcript
                    else "read any sentence in your normal voice")
            self.console.print(f"No reference yet: let's record one ({self.o.seconds:g} s; {what}).")
            self.record_reference(self.o.seconds, transcript=self.o.transcript)
        else:
            self.console.print("[yellow]No reference voice yet: use /load PATH (or --ref FILE).[/]")
        if self.ref is not None:
            self.ensure_voice()

    def close(self) -> None:
        if self.player is not None:
            self.player.close()
        if self.model is not None:
            try:
                self.model.close()
            except Exception as exc:  # closing must never hide how the session ended
                _LOGGER.debug("closing the model: %s", exc)

    # ---- the loop

    def loop(self) -> None:
        while True:
            self._report_player()
            try:
                line = self.input_fn(self._prompt())
            except EOFError:
                self.console.print()
                return
            except KeyboardInterrupt:
                if _line_buffer():
                    self.console.print("\n[dim]line discarded (Ctrl-C on an empty prompt quits)[/]")
                    continue
                self.console.print()
                return
            if self.guard(self.handle, line) is False:
                return

    def guard(self, step: Callable[..., Any], *args: Any) -> Any:
        """Run one step: errors print one line and Ctrl-C cancels it, never ending the session."""
        try:
            return step(*args)
        except KeyboardInterrupt:
            self.console.print("[yellow]cancelled: back to the prompt (nothing was written).[/]")
        except PersonalizationError as exc:
            self.console.print(f"[red]✖ {escape(str(exc))}[/]")
        except Exception as exc:  # a bug: one line, the traceback with --debug
            _LOGGER.debug("unexpected error", exc_info=True)
            if self.o.debug:
                self.console.print_exception()
            else:
                self.console.print(f"[red]✖ unexpected error: {type(exc).__name__}: {escape(str(exc))} "
                                   "(run with --debug for the traceback)[/]")
        return None

    def _prompt(self) -> str:
        who = self.ref.name if self.ref is not None else "no voice"
        lang = "" if self.language == "auto" else f" · {self.language}"
        return f"[bold magenta]{escape(_short(who, 24))}[/] [dim]{self.mode}{lang}[/] › "

    def handle(self, line: str) -> bool:
        text = line.strip()
        if not text:
            return True
        if text.startswith("//"):  # a line that starts with "/" is spoken as "//..."
            self.speak(text[1:])
            return True
        if not text.startswith("/"):
            self.speak(text)
            return True
        name, _, rest = text.partition(" ")
        name, rest = name.lower(), rest.strip()
        if name in ("/quit", "/exit", "/q"):
            return False
        handler = getattr(self, "cmd_" + name[1:], None)
        if handler is None or name[1:] in ("", "_"):
            close = difflib.get_close_matches(name, [c.split()[0] for c in COMMANDS], n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.console.print(f"[yellow]unknown command {escape(name)}{hint}; type /help for the list.[/]")
            return True
        handler(rest)
        return True

    def _report_player(self) -> None:
        if self.player is not None and self.player.error is not None and not self._reported_player_error:
            self._reported_player_error = True
            self.play_off = str(self.player.error)
            self.console.print(f"[yellow]🔈 playback off: {escape(str(self.player.error))}; outputs are still written.[/]")
            self.player = None

    # ---- the reference voice

    def load_reference(self, path: str, *, transcript: str | None = None) -> None:
        """Analyse a reference file and make it the current voice."""
        p = Path(path).expanduser()
        clip, profile, elapsed, note = self._analyse(str(p))
        self._set_reference(_Reference(p.name, "file", str(p), profile, elapsed, note), transcript=transcript)

    def record_reference(self, seconds: float, *, transcript: str | None = None) -> bool:
        """Record (with countdown and level meter) until the user keeps a take; True if kept."""
        if self.mic is None:
            raise DeviceError(f"{self.mic_off or 'no microphone'}; use /load PATH instead.")
        while True:
            if self.player is not None:
                self.player.stop()  # the speakers must not play into the microphone
            self._countdown()
            samples, sr = self._record_live(seconds)
            try:
                clip, profile, elapsed, note = self._analyse((samples, sr))
            except PersonalizationError as exc:
                self.console.print(f"[red]✖ {escape(str(exc))}[/]")
                if self._choose("[r]e-record or [c]ancel?", "rc", "r") == "r":
                    continue
                return False
            self._show_profile(profile, "your recording", note)
            while True:
                if self.player is not None:
                    choice = self._choose("[k]eep, [r]e-record, [p]lay back or [c]ancel?", "krpc", "k")
                else:
                    choice = self._choose("[k]eep, [r]e-record or [c]ancel?", "krc", "k")
                if choice != "p":
                    break
                self._play((samples, sr), what="the recording")
            if self.player is not None:
                self.player.stop()  # decided: stop the take's play back, the next line plays at once
            if choice == "k":
                self._set_reference(_Reference("recording", "recording", (samples, sr), profile, elapsed, note),
                                    transcript=transcript, show=False)
                return True
            if choice == "c":
                return False

    def _countdown(self) -> None:
        if self.o.countdown <= 0:
            return
        with Live(Text(""), console=self.console, transient=True) as live:
            for i in range(self.o.countdown, 0, -1):
                live.update(Text(f"  recording in {i}…", style="bold yellow"))
                time.sleep(1.0)

    def _record_live(self, seconds: float) -> tuple[np.ndarray, int]:
        start = audio_device.RecordingLevel(0.0, -100.0, 0.0, False)
        with Live(_meter(start, seconds), console=self.console, refresh_per_second=20) as live:
            samples, sr = audio_device.record(seconds, device=self.mic.index if self.mic else None,
                                              on_level=lambda lv: live.update(_meter(lv, seconds)))
        peak = float(np.max(np.abs(samples))) if samples.size else 0.0
        if peak >= audio_device.CLIP_LEVEL:
            self.console.print("[red]⚠ the recording clipped: re-record further from the microphone "
                               "or with the input gain lower.[/]")
        return samples, sr

    def _analyse(self, source: Any) -> tuple[AudioClip, VoiceProfile, float, str | None]:
        from .analysis import analyze_voice

        t0 = time.perf_counter()
        with self.console.status("analysing the voice (pitch, energy, rate, emotion)…"):
            clip, profile = analyze_voice(source)
        elapsed = time.perf_counter() - t0
        for warning in clip.warnings:
            self._warn(warning)
        return clip, profile, elapsed, _emotion_note(profile)

    def _warn(self, message: str) -> None:
        """Print a warning once per session (the adapter repeats the loader's warnings)."""
        if message not in self._warned:
            self._warned.add(message)
            self.console.print(f"[yellow]⚠ {escape(message)}[/]")

    def _set_reference(self, ref: _Reference, *, voice: Any = None, transcript: str | None = None,
                       show: bool = True) -> None:
        """Make ``ref`` the current voice; its transcript (ICL) or None (x-vector) replaces the old one."""
        if show and ref.profile is not None:
            self._show_profile(ref.profile, ref.name, ref.emotion_note)
        if self.transcript and not transcript:
            self.console.print("[dim]the transcript belonged to the previous reference: cleared, mode xvector "
                               "(/transcript TEXT for ICL mode).[/]")
        self.transcript = transcript or None
        self.mode = "icl" if self.transcript else "xvector"
        self.ref = ref
        self.voice = voice
        if self.model is not None and voice is None:
            self._build_voice()

    def _show_profile(self, profile: VoiceProfile, title: str, note: str | None) -> None:
        self.console.print(render_profile(profile, title=title, emotion_note=note))

    def reference_info(self) -> ReferenceInfo:
        ref = self.ref
        if ref is None:
            return _reference_from_voice(self.voice)
        return ReferenceInfo(
            name=ref.name, kind=ref.kind, sha256=getattr(self.voice, "reference_sha256", None),
            transcript=getattr(self.voice, "transcript", None), profile=ref.profile,
            emotion_unavailable=ref.emotion_note,
        )

    # ---- the model and the voice prompt

    def ensure_voice(self) -> None:
        """Load the model if needed, then build the voice prompt if needed (or if made by another model)."""
        if self.model is None or getattr(self.model, "closed", False):
            self.model = self._load_model(self.model_name)
        made_by = getattr(self.voice, "model_id", None)
        if self.voice is not None and made_by and made_by != self.model.model_id and self.ref is not None:
            self.console.print(f"[yellow]this voice was made with {escape(made_by)}; rebuilding its prompt for "
                               f"{escape(self.model.model_id)}.[/]")
            self.voice = None
        if self.voice is None and self.ref is not None:
            self._build_voice()

    def _load_model(self, name: str) -> Any:
        from .qwen_adapter import load_model

        t0 = time.perf_counter()
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task(f"loading model {name}…", total=None)
            model = load_model(name, device=self.o.device, dtype=self.o.dtype,
                               progress=_progress_callback(progress, task))
        self.console.print(f"[green]✔[/] model {escape(model.model_id)} ({model.size}, {model.kind}) on "
                           f"{model.device}, {str(model.dtype).replace('torch.', '')} · "
                           f"{time.perf_counter() - t0:.1f} s")
        for warning in getattr(model, "warnings", ()):
            self._warn(warning)
        return model

    def _build_voice(self) -> None:
        assert self.ref is not None and self.model is not None
        transcript = self.transcript if self.mode == "icl" else None
        t0 = time.perf_counter()
        with self.console.status(f"building the voice prompt ({self.mode})…"):
            self.voice = self.model.create_voice(self.ref.source, transcript=transcript, name=self.ref.name,
                                                 profile=self.ref.profile)
        self.prompt_s = time.perf_counter() - t0
        for warning in getattr(self.voice, "warnings", ()):
            self._warn(warning)
        self.console.print(f"[green]✔[/] voice prompt ready: {escape(self.ref.name)} · {self.voice.mode} · "
                           f"{self.prompt_s:.1f} s")

    # ---- speaking

    def speak(self, text: str) -> None:
        if self.ref is None and self.voice is None:
            raise ProfileError("no voice yet: /record, /load PATH or /voice use NAME first.")
        self.ensure_voice()
        settings = CloneSettings(out_dir=self.o.out_dir, reference=self.reference_info(), language=self.language,
                                 seed=self.o.seed, analysis_s=self.ref.analysis_s if self.ref else None,
                                 prompt_s=self.prompt_s)
        from .text_segmenter import split_text

        segments = len(split_text(text.strip())) if text.strip() else 1
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20),
                   TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as progress:
            what = "synthesizing…" if segments == 1 else f"synthesizing {segments} segments…"
            task = progress.add_task(what, total=segments if segments > 1 else None)

            def on_chunk(chunk: GenerationResult, p: SynthesisProgress) -> None:
                if self.player is not None:  # play each chunk as it arrives
                    _feed_chunk(self.player, chunk)
                heard = f" · first audio {p.time_to_first_audio_s:.2f} s" if p.time_to_first_audio_s else ""
                progress.update(task, completed=chunk.segment_idx + 1,
                                description=f"{what} {p.frames} frames · {p.audio_s:.1f} s audio · "
                                            f"{p.speed:.2f}× real-time{heard}")

            def on_audio(result: GenerationResult) -> None:
                progress.update(task, description="analysing and writing…")

            try:
                # Streamed when playing (time to first audio is what the user hears); the pair
                # written is the whole utterance either way.
                pair, result = clone_line(self.model, self.voice, text, settings, on_chunk=on_chunk,
                                          on_audio=on_audio, stream=self.player is not None)
            except KeyboardInterrupt:
                if self.player is not None:
                    self.player.stop()  # cancelled: the half-made line stops sounding too
                raise
            except BaseException:
                if self.player is not None:
                    self.player.finish()
                raise
        self.outputs.append(pair)
        self.console.print(_result_line(len(self.outputs), pair, result,
                                        playing=self.player is not None and self.player.error is None))

    def _play(self, audio: tuple[np.ndarray, int], *, what: str, interrupt: bool = True) -> None:
        if self.player is None:
            raise DeviceError(f"playback is off ({self.play_off}); cannot play {what}.")
        try:
            self.player.play(audio[0], audio[1], interrupt=interrupt)
        except DeviceError:
            self._report_player()

    # ---- commands (cmd_NAME handles "/NAME ARGS")

    def cmd_help(self, args: str) -> None:
        self.console.print(render_help())

    def cmd_record(self, args: str) -> None:
        seconds = self.o.seconds
        if args:
            seconds = _number(args, "/record SECONDS", low=1.0, high=60.0)
        if self.record_reference(seconds):
            self.ensure_voice()

    def cmd_load(self, args: str) -> None:
        # A path with spaces works unquoted when it names an existing file.
        path = args if args and Path(args).expanduser().is_file() else _one_arg(args, "/load PATH")
        self.load_reference(path)
        self.ensure_voice()

    def cmd_transcript(self, args: str) -> None:
        self.transcript = args or None
        self.mode = "icl" if self.transcript else "xvector"
        self.console.print(f"transcript {'set' if self.transcript else 'cleared'}; mode {self.mode}")
        self._rebuild()

    def cmd_mode(self, args: str) -> None:
        mode = args.lower()
        if mode not in ("xvector", "icl"):
            raise ProfileError(f"unknown mode {args!r}; usage: /mode xvector|icl")
        if mode == "icl" and not self.transcript:
            raise ProfileError("ICL mode needs the reference's transcript: /transcript TEXT (what the "
                               "reference clip says, word for word).")
        self.mode = mode
        self._rebuild()

    def _rebuild(self) -> None:
        if self.ref is not None and self.model is not None:
            self._build_voice()
        else:
            self.voice = None

    def cmd_model(self, args: str) -> None:
        name = _one_arg(args, "/model NAME|DIR (0.6b, 1.7b or a local folder)")
        try:
            model = self._load_model(name)
        finally:
            if self.model is not None and getattr(self.model, "closed", False):
                self.model = None  # the adapter freed it first: reload it when next needed
        old, self.model, self.model_name = self.model, model, name
        if old is not None and old is not model:
            old.close()
        self._rebuild()

    def cmd_lang(self, args: str) -> None:
        code = _one_arg(args, "/lang CODE (auto, en, zh, de, ...)").lower()
        known = _languages()
        if code not in known:
            raise ProfileError(f"unknown language {code!r}; choose one of: {', '.join(sorted(known))}.")
        self.language = code
        self.console.print(f"language: {code}")

    def cmd_play(self, args: str) -> None:
        if not self.outputs:
            raise ProfileError("nothing to play yet: type a line first.")
        n = len(self.outputs) if not args else int(_number(args, "/play [N]", low=1, high=len(self.outputs)))
        if n != int(n):
            raise ProfileError(f"/play takes a whole number 1-{len(self.outputs)}.")
        pair = self.outputs[int(n) - 1]
        import soundfile as sf

        audio, sr = sf.read(str(pair.wav_path), dtype="float32")
        self._play((audio, sr), what=pair.wav_path.name)
        self.console.print(f"▶ {int(n)}: {pair.wav_path.name}")

    def cmd_stop(self, args: str) -> None:
        if self.player is not None:
            self.player.stop()
        self.console.print("■ stopped")

    def cmd_voice(self, args: str) -> None:
        try:
            words = shlex.split(args)
        except ValueError as exc:
            raise ProfileError(f"cannot parse {args!r} ({exc}); usage: /voice save NAME | /voice use NAME") from exc
        if len(words) >= 2 and words[0] == "save" and set(words[2:]) <= {"--force"}:
            self.save_voice(words[1], overwrite="--force" in words[2:])
        elif len(words) == 2 and words[0] == "use":
            self.use_voice(words[1])
        else:
            raise ProfileError("usage: /voice save NAME [--force] | /voice use NAME")

    def save_voice(self, name: str, *, overwrite: bool = False) -> None:
        validate_name(name)
        if self.voice is None or self.ref is None:
            raise ProfileError("no voice to save yet: /record or /load PATH first.")
        source = self.ref.source
        if not isinstance(source, tuple):
            import soundfile as sf

            data, sr = sf.read(str(source), dtype="float32", always_2d=True)
            source = (data.mean(axis=1), sr)
        path = self.library.save(name, self.voice, reference_audio=source, reference_name=self.ref.name,
                                 model_id=getattr(self.model, "model_id", None), overwrite=overwrite)
        self.console.print(f"[green]✔[/] saved voice {name!r} to {escape(str(path))}/ (use it later with /voice use {name})")

    def use_voice(self, name: str) -> None:
        t0 = time.perf_counter()
        voice, entry = self.library.load(name)
        self.prompt_s = time.perf_counter() - t0  # loading the saved prompt replaces building it
        profile, elapsed, note = getattr(voice, "profile", None), None, None
        if profile is None:
            _, profile, elapsed, note = self._analyse(str(entry.reference_path))
        else:
            note = _emotion_note(profile)
        ref = _Reference(name, "voice", str(entry.reference_path), profile, elapsed, note)
        self._set_reference(ref, voice=voice, transcript=getattr(voice, "transcript", None))
        self.console.print(f"[green]✔[/] using saved voice {name!r} ({self.mode})")
        if self.model is not None:
            self.ensure_voice()  # rebuilds the prompt if the voice was saved with another model

    def cmd_voices(self, args: str) -> None:
        entries = self.library.entries()
        if not entries:
            self.console.print(f"no saved voices in {escape(str(self.library.root))}/ yet: /voice save NAME")
            return
        table = Table(title=f"Voices in {self.library.root}/", title_justify="left")
        for col in ("name", "mode", "register", "median F0", "reference", "saved"):
            table.add_column(col)
        for e in entries:
            if isinstance(e, ProfileError):
                table.add_row(Text("damaged", style="red"), Text(str(e), style="red"), "", "", "", "")
                continue
            pitch = (e.voice_dna or {}).get("pitch") or {}
            median = pitch.get("median_hz")
            table.add_row(e.name, e.mode, str(pitch.get("register", "")), f"{median:.0f} Hz" if median else "",
                          e.reference_name or "", e.created_at[:16].replace("T", " "))
        self.console.print(table)

    def cmd_devices(self, args: str) -> None:
        devices = audio_device.list_devices()
        if not devices:
            self.console.print("[yellow]no audio devices found (no microphone, no speakers).[/]")
            return
        self.console.print(render_devices(devices))

    def cmd_info(self, args: str) -> None:
        if self.ref is None:
            raise ProfileError("no voice yet: /record, /load PATH or /voice use NAME first.")
        if self.ref.profile is not None:
            self._show_profile(self.ref.profile, self.ref.name, self.ref.emotion_note)
        sha = getattr(self.voice, "reference_sha256", None)
        details = [f"mode {self.mode}", f"language {self.language}", f"model {getattr(self.model, 'model_id', self.model_name)}"]
        if sha:
            details.append(f"reference sha256 {sha[:12]}…")
        if self.transcript:
            details.append(f"transcript “{_short(self.transcript, 60)}”")
        self.console.print("[dim]" + " · ".join(details) + "[/]")

    def _choose(self, question: str, letters: str, default: str) -> str:
        """Ask until one of ``letters`` (or Enter for ``default``) is typed."""
        while True:
            answer = self.input_fn(escape(f"{question} [{default}] ")).strip().lower()[:1] or default
            if answer in letters:
                return answer
            self.console.print(f"[yellow]type one of {', '.join(letters)} (or Enter for {default}).[/]")


# --------------------------------------------------------------------------- small helpers


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _one_arg(args: str, usage: str) -> str:
    try:
        words = shlex.split(args)
    except ValueError as exc:
        raise ProfileError(f"cannot parse {args!r} ({exc}); usage: {usage}") from exc
    if len(words) != 1:
        raise ProfileError(f"usage: {usage}")
    return words[0]


def _number(args: str, usage: str, *, low: float, high: float) -> float:
    try:
        value = float(_one_arg(args, usage))
    except ValueError as exc:
        raise ProfileError(f"{args!r} is not a number; usage: {usage}") from exc
    if not low <= value <= high:
        raise ProfileError(f"{value:g} is out of range {low:g}-{high:g}; usage: {usage}")
    return value


def _emotion_note(profile: VoiceProfile | None) -> str | None:
    if profile is None or profile.emotion is not None:
        return None
    try:
        from .analysis import emotion_unavailable_reason

        return emotion_unavailable_reason() or "the detector gave no estimate"
    except Exception as exc:  # the emotion model is optional: say why, never fail
        return f"{type(exc).__name__}: {exc}"


def _reference_from_voice(voice: Any) -> ReferenceInfo:
    profile = getattr(voice, "profile", None)
    return ReferenceInfo(
        name=str(getattr(voice, "name", None) or "reference"), kind="file",
        sha256=getattr(voice, "reference_sha256", None), transcript=getattr(voice, "transcript", None),
        profile=profile, emotion_unavailable=_emotion_note(profile),
    )


def _result_line(n: int, pair: OutputPair, result: GenerationResult, *, playing: bool = False) -> Text:
    fp = pair.fingerprint
    line = Text("✔ ", style="green")
    line.append(f"{n}: ", style="dim")
    line.append(pair.wav_path.name, style="bold")
    line.append(f" · {result.audio_duration_s:.1f} s · RTF {result.real_time_factor:.2f}")
    if result.time_to_first_audio_s is not None:
        line.append(f" · TTFA {result.time_to_first_audio_s:.2f} s")
    if fp.similarity is not None:
        style = "green" if fp.similarity >= SIM_GOOD else "yellow" if fp.similarity >= SIM_POOR else "red"
        line.append(" · similarity ")
        line.append(f"{fp.similarity:.2f}", style=style)
    comparison = fp.to_dict()["comparison"]
    if comparison["pitch_median_semitones"] is not None:
        line.append(f" · pitch {comparison['pitch_median_semitones']:+.1f} st", style="dim")
    if comparison["speaking_rate_ratio"] is not None:
        line.append(f" · rate ×{comparison['speaking_rate_ratio']:.2f}", style="dim")
    if playing:
        line.append("  ♪", style="cyan")
    return line


def _feed_chunk(player: playback.Player, chunk: GenerationResult) -> None:
    """Queue one chunk for playback as it arrives, then the pause that follows it.

    A playback failure is not raised here: the player keeps it in ``error`` and the session
    reports it once (playback goes off, the line is still written).
    """
    if player.error is not None:
        return
    try:
        player.feed(chunk.audio, chunk.sample_rate, final=chunk.is_final)
        pause = float(chunk.pause_after_s)
        if pause > 0 and not chunk.is_final:
            player.pause(pause)
    except DeviceError as exc:
        _LOGGER.info("playback failed: %s", exc)


def _languages() -> set[str]:
    """Language names and ISO codes the adapter accepts (``auto`` included)."""
    from . import qwen_adapter

    return {*qwen_adapter.SUPPORTED_LANGUAGES, *qwen_adapter.LANGUAGE_CODES, "auto"}


def _describe_device(device: str, dtype: str = "auto") -> str:
    """The compute device in words: GPU name and memory, or CPU threads (never raises)."""
    from . import qwen_adapter

    try:
        dev, dt, _ = qwen_adapter.resolve_device(device, dtype)
    except PersonalizationError as exc:
        return f"{device} (unusable: {exc})"
    return f"{qwen_adapter.describe_device(dev)} · {dt}"


def _progress_callback(progress: Progress, task: Any) -> Callable[..., None]:
    """Adapt the adapter's load progress reports to a Rich task."""

    def report(*args: Any, **kwargs: Any) -> None:
        desc = kwargs.get("stage") or kwargs.get("description") or (args[0] if args else None)
        done = kwargs.get("completed", args[1] if len(args) > 1 else None)
        total = kwargs.get("total", args[2] if len(args) > 2 else None)
        progress.update(task, description=str(desc) if desc else None, completed=done, total=total)

    return report


def _line_buffer() -> str:
    """What the user had typed when Ctrl-C hit the prompt ("" without readline)."""
    try:
        import readline

        return readline.get_line_buffer()
    except Exception:  # no readline on this platform
        return ""


_ANSI = re.compile(r"(\x1b\[[0-9;]*m)")


def _terminal_input(console: Console) -> InputFn:
    """``input()`` with line editing, showing a Rich-markup prompt readline can measure."""
    try:
        import readline  # noqa: F401  (enables line editing and history for input())
    except ImportError:
        pass

    def ask(prompt: str) -> str:
        if not console.is_terminal:
            console.print(prompt, end="")
            return input()
        with console.capture() as capture:
            console.print(Text.from_markup(prompt), end="")
        # Mark escape codes as zero-width so readline keeps the cursor where it belongs.
        return input(_ANSI.sub("\x01\\1\x02", capture.get()))

    return ask


# --------------------------------------------------------------------------- entry


def run(options: ReplOptions, *, console: Console | None = None, input_fn: InputFn | None = None) -> int:
    """Run the interactive session (or batch mode with ``options.text_file``).

    Parameters
    ----------
    options : ReplOptions
    console : Console, optional
        Where to print (tests pass one writing to a StringIO).
    input_fn : callable, optional
        ``input_fn(prompt) -> str``; raises EOFError at the end (tests pass scripted input).

    Returns
    -------
    int
        Exit code: 0, 1 (batch: some lines failed), 2 (bad input), 130 (interrupted).
    """
    console = console or make_console()
    if options.list_devices:
        return _list_devices(console)
    _preload_emotion_detector()
    if options.text_file is not None:
        try:
            lines = read_text_file(options.text_file)
        except PersonalizationError as exc:
            console.print(f"[red]✖ {escape(str(exc))}[/]")
            return 2
        return _run_batch_mode(options, lines, console)
    session = _Session(options, console, input_fn)
    session.banner()
    try:
        session.setup_audio()
        session.guard(session.start)
        session.loop()
    finally:
        session.close()
        n = len(session.outputs)
        console.print(f"Outputs are in {escape(str(options.out_dir.resolve()))}/ ({n} {'pair' if n == 1 else 'pairs'} "
                      "written this session). Bye!")
    return 0


def _preload_emotion_detector() -> None:
    """Load the emotion SVM in the background: importing scikit-learn takes ~0.6-0.9 s here, and
    the first analysis (after a recording or ``--ref``) then finds the detector ready."""
    from . import analysis

    threading.Thread(target=analysis.default_detector, name="emotion-preload", daemon=True).start()


def _list_devices(console: Console) -> int:
    try:
        devices = audio_device.list_devices()
    except DeviceError as exc:
        console.print(f"[red]✖ {escape(str(exc))}[/]")
        return 2
    if not devices:
        console.print("[yellow]no audio devices found.[/]")
    else:
        console.print(render_devices(devices))
    return 0
