"""The session on a Rich console: its events as printed lines and spinners, a line spoken with
a progress bar (and played as it is made), and a batch with a progress bar and a summary.

:class:`ConsoleEvents` is the Rich implementation of
:class:`~personalization_engine.session.SessionEvents`; :func:`speak` and :func:`run_batch`
wrap :meth:`CloneSession.speak` and :func:`batch.run_batch` with their displays. The REPL and
``python -m personalization_engine clone`` both use them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..batch import BatchProgress, BatchReport
from ..batch import run_batch as _run_batch
from ..cloning import SynthesisProgress
from ..schema import GenerationResult
from ..session import CloneSession, Reference, SessionEvents, SpokenLine
from ..text_segmenter import check_speakable, split_text
from .audio import AudioView
from .render import render_batch_summary, render_profile, render_result, short
from .typeahead import TypeAhead, queued_text

if TYPE_CHECKING:
    from ..tts import TTSModel


class ConsoleEvents(SessionEvents):
    """Print what the session reports: spinners for slow steps, one line per event."""

    def __init__(self, console: Console) -> None:
        self.console = console

    @contextlib.contextmanager
    def busy(self, what: str) -> Iterator[Callable[[str], None]]:
        with self.console.status(what) as status:
            yield lambda description: status.update(description)

    def warning(self, message: str) -> None:
        self.console.print(f"[yellow]⚠ {escape(message)}[/]")

    def reference_changed(self, reference: Reference) -> None:
        if reference.profile is not None:
            self.console.print(render_profile(reference.profile, title=reference.name,
                                              emotion_note=reference.emotion_note))

    def transcript_cleared(self) -> None:
        self.console.print("[dim]the transcript belonged to the previous reference: cleared, mode xvector "
                           "(/transcript TEXT for ICL mode).[/]")

    def model_loaded(self, model: TTSModel, seconds: float) -> None:
        report = model.quant_report
        kernels = f" ({report.kernels})" if report is not None and report.kernels else ""
        self.console.print(f"[green]✔[/] model {escape(model.model_id)} ({model.size}, {model.kind}) on "
                           f"{model.device}, {str(model.dtype).replace('torch.', '')}, quant {model.quant}"
                           f"{escape(kernels)} · {seconds:.1f} s")

    def voice_rebuilding(self, made_by: str, model_id: str) -> None:
        self.console.print(f"[yellow]this voice was made with {escape(made_by)}; rebuilding its prompt for "
                           f"{escape(model_id)}.[/]")

    def voice_ready(self, name: str, mode: str, seconds: float) -> None:
        self.console.print(f"[green]✔[/] voice prompt ready: {escape(name)} · {mode} · {seconds:.1f} s")


def speak(console: Console, session: CloneSession, text: str, audio: AudioView,
          typeahead: TypeAhead | None = None) -> SpokenLine:
    """Speak one typed line with a progress bar, playing its chunks as they come; print its result.

    Streamed when playing (time to first audio is what the user hears); the pair written is the
    whole utterance either way. Ctrl-C stops the sound too, and propagates. Lines typed
    meanwhile go to ``typeahead`` (not echoed over the progress bar), counted on the bar.
    """
    ahead = typeahead if typeahead is not None else TypeAhead(enabled=False)  # (an empty queue is falsy)
    shown: list[tuple[Progress, TaskID]] = []

    def on_queued(count: int) -> None:
        for progress, task in shown:
            progress.update(task, queued=queued_text(count))

    check_speakable(text)  # "..." is refused before anything else is said about the model
    with ahead.capturing(on_queued):
        session.prepare()  # its spinners first: one live display at a time
        spoken = _speak_with_progress(console, session, text, audio, shown, queued_text(len(ahead)))
    console.print(render_result(spoken.n, spoken.pair, spoken.result, playing=audio.playing,
                                underruns=audio.underruns()))
    return spoken


def _speak_with_progress(console: Console, session: CloneSession, text: str, audio: AudioView,
                         shown: list[tuple[Progress, TaskID]], queued: str) -> SpokenLine:
    segments = len(split_text(text.strip())) if text.strip() else 1
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20), TimeElapsedColumn(),
               TextColumn("{task.fields[queued]}", style="yellow"))
    with Progress(*columns, console=console, transient=True) as progress:
        what = "synthesizing…" if segments == 1 else f"synthesizing {segments} segments…"
        task = progress.add_task(what, total=segments if segments > 1 else None, queued=queued)
        shown.append((progress, task))

        def on_chunk(chunk: GenerationResult, p: SynthesisProgress) -> None:
            audio.feed(chunk)  # play each chunk as it arrives
            progress.update(task, completed=chunk.segment_idx + 1, description=f"{what} {progress_text(p)}")

        def on_audio(result: GenerationResult) -> None:
            progress.update(task, description="analysing and writing…")

        streamed = audio.player is not None
        if streamed:
            audio.begin_line(text, session.frames_per_s)
        try:
            return session.speak(text, on_chunk=on_chunk, on_audio=on_audio, stream=streamed)
        except KeyboardInterrupt:
            audio.stop()  # cancelled: the half-made line stops sounding too
            raise
        except BaseException:
            audio.finish()
            raise
        finally:
            shown.clear()


@dataclass
class _LineShown:
    """The batch line being made: its progress label and how many segments it has."""

    label: str = ""
    segments: int = 1


def progress_text(p: SynthesisProgress) -> str:
    """The running totals of a line: frames, audio made, RTF, and (streamed only) first audio."""
    rtf = p.real_time_factor
    speed = f" · RTF {rtf:.2f}" if rtf is not None else ""
    heard = (f" · first audio {p.time_to_first_audio_s:.2f} s"
             if p.streamed and p.time_to_first_audio_s is not None else "")
    return f"{p.frames} frames · {p.audio_s:.1f} s audio{speed}{heard}"


def run_batch(console: Console, session: CloneSession, lines: Sequence[str],
              audio: AudioView | None = None) -> BatchReport:
    """:func:`batch.run_batch` with a progress bar, a result line per line and a summary.

    With a player, each line streams into it as it is made (queued behind the last).
    """
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    playing = audio is not None and audio.player is not None
    if lines:
        session.ensure_voice()  # its spinners first: one live display at a time
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("cloning", total=len(lines))
        current = _LineShown()

        def on_progress(step: BatchProgress) -> None:
            done = step.done
            if done is None:
                current.label = f"line {step.index}: {short(step.text, 30)}"
                current.segments = max(1, len(split_text(step.text)))
                progress.update(task, description=current.label)
                if playing and audio is not None:
                    audio.begin_line(step.text, session.frames_per_s)
            elif done.error is not None:
                if audio is not None:
                    audio.finish()
                progress.console.print(f"[red]✖ line {step.index}: {escape(str(done.error))}[/]")
                progress.advance(task)
            else:
                if done.pair is not None and done.result is not None and done.n is not None:
                    underruns = audio.underruns() if playing and audio is not None else None
                    progress.console.print(render_result(done.n, done.pair, done.result, playing=playing,
                                                         underruns=underruns))
                progress.advance(task)

        def on_chunk(chunk: GenerationResult, p: SynthesisProgress) -> None:
            if playing and audio is not None:
                audio.feed(chunk)
            n = current.segments
            seg = f" · segment {chunk.segment_idx + 1}/{n}" if n > 1 else ""
            progress.update(task, description=f"{current.label}{seg} · {progress_text(p)}")

        report = _run_batch(session, lines, on_progress, on_chunk=on_chunk, stream=playing)
    if report.interrupted:
        console.print(f"[yellow]interrupted after {len(report.written)} of {report.total} lines; "
                      "every written pair is complete.[/]")
        return report
    console.print(render_batch_summary(report))
    return report
