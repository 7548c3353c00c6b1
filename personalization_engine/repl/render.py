"""Rich renderings: the Voice DNA panel, sparklines, tables, the banner and result lines.

Pure functions from records to Rich renderables (plus :func:`print_analysis`, used by the
``analyze`` command). Nothing here changes state; the prompt loop and the commands print what
these return.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .. import audio_device
from ..analysis import emotion_unavailable_reason
from ..errors import ProfileError
from ..schema import EMOTION_LABELS, AudioClip, GenerationResult, VoiceProfile

if TYPE_CHECKING:
    from ..batch import BatchReport
    from ..fingerprint import OutputPair
    from ..voice_library import VoiceEntry

#: Eight block heights for sparklines, lowest first.
SPARK_CHARS = "▁▂▃▄▅▆▇█"
#: Similarity colours: at or above the first is a good clone, below the second a poor one.
SIM_GOOD, SIM_POOR = 0.75, 0.5
#: Level meter range (dBFS): -60 is a quiet room, 0 is full scale.
METER_FLOOR_DB = -60.0


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
    if emotion.uncertain:  # never a bare label the model is unsure of: "uncertain (calm 0.34, ...)"
        head = Text(emotion.describe(), style="bold yellow")
    else:
        head = Text(f"{emotion.label} ", style="bold magenta")
        head.append(f"{emotion.probability:.0%}")
    chart = Table.grid(padding=(0, 1))
    for label in EMOTION_LABELS:
        p = float(emotion.distribution.get(label, 0.0))
        style = "magenta" if label == emotion.label and not emotion.uncertain else "grey50"
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
                 + Text(f"  {_fmt(_nanmin(pitch.contour.f0_hz), '.0f')}–"
                        f"{_fmt(_nanmax(pitch.contour.f0_hz), '.0f', ' Hz')}",
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
    note = emotion_note or emotion_unavailable_reason(profile)
    # The speech duration is the profile's (the one ``analyze --json`` writes), not the loader's
    # trim estimate: the panel and the JSON say one number.
    sub = (f"{clip.original_duration_s:.1f} s file · {clip.duration_s:.1f} s analysed · "
           f"{profile.prosody.speech_duration_s:.1f} s speech · {clip.original_sample_rate} Hz")
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


def render_meter(level: audio_device.RecordingLevel, seconds: float, width: int = 30) -> RenderableType:
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


def render_help(commands: dict[str, tuple[str, str]], notes: Sequence[str] = ()) -> RenderableType:
    """The /help table: each command, its arguments and what it does; then ``notes``, one a line."""
    table = Table(title="Type a line and press Enter to speak it. Commands:", title_justify="left", box=None)
    table.add_column("command", style="bold cyan", no_wrap=True)
    table.add_column("")
    for name, (args, text) in commands.items():
        table.add_row(f"{name} {args}".strip(), text)
    if not notes:
        return table
    return Group(table, Text(""), *(Text(f"• {note}", style="dim") for note in notes))


def render_banner(*, device: str, model: str, mode: str, seed: int | None, out_dir: Path, voices_dir: Path,
                  interactive: bool, quant: str | None = None, model_missing: str | None = None) -> RenderableType:
    """The panel a session starts with: device, model and mode, folders, and a hint.

    ``model_missing`` (the weights are neither here nor downloadable) is shown in the panel,
    with its download command, before anything is recorded. The hint is the panel's last line,
    not its subtitle: a subtitle longer than the panel is cut off.
    """
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column()
    grid.add_row("device", device)
    seed_text = f" · seed {seed}" if seed is not None else ""
    quant_text = f" · quant {quant}" if quant else ""
    grid.add_row("model", Text(f"{model}{quant_text} · mode {mode}{seed_text}"))
    if model_missing:
        grid.add_row(Text("weights", style="bold red"),
                     Text(f"not found: {model_missing}\nVoice DNA still works: record, /load, /info.", style="red"))
    grid.add_row("outputs", Text(f"{out_dir.resolve()}/"))
    grid.add_row("voices", Text(f"{voices_dir.resolve()}/"))
    hint = "Type a line to speak it · /help for commands · Ctrl-D to quit" if interactive else "batch mode"
    return Panel(Group(grid, Text(hint, style="dim")), title="[bold]Qwen3-TTS voice cloning studio[/]",
                 border_style="blue", expand=False)


def render_voices(root: Path, entries: Sequence[VoiceEntry | ProfileError]) -> RenderableType:
    """The /voices table (a damaged folder is a red row saying what is wrong)."""
    table = Table(title=f"Voices in {root}/", title_justify="left")
    for col in ("name", "mode", "register", "median F0", "reference", "saved"):
        table.add_column(col)
    for e in entries:
        if isinstance(e, ProfileError):
            table.add_row(Text("damaged", style="red"), Text(str(e), style="red"), "", "", "", "")
            continue
        pitch = e.profile.prosody.pitch if e.profile is not None else None
        register = pitch.register if pitch is not None else ""
        median = f"{pitch.median_hz:.0f} Hz" if pitch is not None and math.isfinite(pitch.median_hz) else ""
        table.add_row(e.name, e.mode, register, median, e.reference_name or "", e.created_at[:16].replace("T", " "))
    return table


def render_result(n: int, pair: OutputPair, result: GenerationResult, *, playing: bool = False,
                  underruns: int | None = None) -> Text:
    """The line printed for each written pair: file, duration, speed, similarity, pitch and rate.

    Speed is RTF (processing time / audio duration; below 1 is faster than real time), the unit
    of the fingerprint and the benchmarks. Time to first audio and ``underruns`` are shown only
    when the line was played as it was made (``playing``): otherwise first audio is simply the
    whole synthesis time.
    """
    fp = pair.fingerprint
    line = Text("✔ ", style="green")
    line.append(f"{n}: ", style="dim")
    line.append(pair.wav_path.name, style="bold")
    line.append(f" · {result.audio_duration_s:.1f} s · RTF {result.real_time_factor:.2f}")
    if playing and result.time_to_first_audio_s is not None:
        line.append(f" · first audio {result.time_to_first_audio_s:.2f} s")
    if playing and underruns is not None:
        line.append(f" · {underruns} {'underrun' if underruns == 1 else 'underruns'}",
                    style="yellow" if underruns else "")
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


def render_batch_summary(report: BatchReport) -> RenderableType:
    """How many lines were written where, and which failed."""
    written = len(report.written)
    style = "green" if report.complete else "yellow"
    text = Text.from_markup(f"[{style}]{written} of {report.total} lines written to "
                            f"{escape(str(report.out_dir.resolve()))}/[/]")
    if report.failed:
        text.append("\n")
        text.append(f"failed lines: {', '.join(map(str, report.failed))}", style="yellow")
    return text


def with_hint(message: str, hint: str, *, unless: str) -> str:
    """``message; hint.`` as one sentence, or ``message`` alone when it already says ``unless``.

    Device errors end with their own advice ("...; files are still written."); appending ours
    glued two sentences ("written.; outputs are still written.").
    """
    if unless.lower() in message.lower():
        return message
    return f"{message.rstrip().rstrip('.;')}; {hint}"


def short(text: str, n: int) -> str:
    """``text`` cut to ``n`` characters with an ellipsis."""
    return text if len(text) <= n else text[: n - 1] + "…"
