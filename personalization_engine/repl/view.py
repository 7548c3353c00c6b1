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
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..batch import BatchProgress, BatchReport
from ..batch import run_batch as _run_batch
from ..cloning import SynthesisProgress
from ..schema import GenerationResult
from ..session import CloneSession, Reference, SessionEvents, SpokenLine
from ..text_segmenter import split_text
from .audio import AudioView
from .render import render_batch_summary, render_profile, render_result, short

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
        self.console.print(f"[green]✔[/] model {escape(model.model_id)} ({model.size}, {model.kind}) on "
                           f"{model.device}, {str(model.dtype).replace('torch.', '')} · {seconds:.1f} s")

    def voice_rebuilding(self, made_by: str, model_id: str) -> None:
        self.console.print(f"[yellow]this voice was made with {escape(made_by)}; rebuilding its prompt for "
                           f"{escape(model_id)}.[/]")

    def voice_ready(self, name: str, mode: str, seconds: float) -> None:
        self.console.print(f"[green]✔[/] voice prompt ready: {escape(name)} · {mode} · {seconds:.1f} s")


def speak(console: Console, session: CloneSession, text: str, audio: AudioView) -> SpokenLine:
    """Speak one typed line with a progress bar, playing its chunks as they come; print its result.

    Streamed when playing (time to first audio is what the user hears); the pair written is the
    whole utterance either way. Ctrl-C stops the sound too, and propagates.
    """
    session.prepare()  # its spinners first: one live display at a time
    segments = len(split_text(text.strip())) if text.strip() else 1
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        what = "synthesizing…" if segments == 1 else f"synthesizing {segments} segments…"
        task = progress.add_task(what, total=segments if segments > 1 else None)

        def on_chunk(chunk: GenerationResult, p: SynthesisProgress) -> None:
            audio.feed(chunk)  # play each chunk as it arrives
            heard = f" · first audio {p.time_to_first_audio_s:.2f} s" if p.time_to_first_audio_s else ""
            progress.update(task, completed=chunk.segment_idx + 1,
                            description=f"{what} {p.frames} frames · {p.audio_s:.1f} s audio · "
                                        f"{p.speed:.2f}× real-time{heard}")

        def on_audio(result: GenerationResult) -> None:
            progress.update(task, description="analysing and writing…")

        try:
            spoken = session.speak(text, on_chunk=on_chunk, on_audio=on_audio, stream=audio.player is not None)
        except KeyboardInterrupt:
            audio.stop()  # cancelled: the half-made line stops sounding too
            raise
        except BaseException:
            audio.finish()
            raise
    console.print(render_result(spoken.n, spoken.pair, spoken.result, playing=audio.playing))
    return spoken


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

        def on_progress(step: BatchProgress) -> None:
            done = step.done
            if done is None:
                progress.update(task, description=f"line {step.index}: {short(step.text, 30)}")
            elif done.error is not None:
                if audio is not None:
                    audio.finish()
                progress.console.print(f"[red]✖ line {step.index}: {escape(str(done.error))}[/]")
                progress.advance(task)
            else:
                if done.pair is not None and done.result is not None and done.n is not None:
                    progress.console.print(render_result(done.n, done.pair, done.result))
                progress.advance(task)

        on_chunk = None if not playing or audio is None else (lambda chunk, _p: audio.feed(chunk))
        report = _run_batch(session, lines, on_progress, on_chunk=on_chunk, stream=playing)
    if report.interrupted:
        console.print(f"[yellow]interrupted after {len(report.written)} of {report.total} lines; "
                      "every written pair is complete.[/]")
        return report
    console.print(render_batch_summary(report))
    return report
