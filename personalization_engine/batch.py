"""Many lines through one session: one output pair per line, and a :class:`BatchReport`.

The single batch runner behind ``run_qwen_interactive.py --text-file`` and
``python -m personalization_engine clone``. A line that fails (e.g. text the model cannot
speak) is recorded and skipped; a write failure (disk full) stops the batch, because the next
line would fail the same way; Ctrl-C stops it after the line being made (every written pair is
complete) and is recorded in the report. Progress goes to a callback; nothing is printed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .cloning import ChunkCallback
from .errors import OutputWriteError, PersonalizationError
from .fingerprint import OutputPair
from .schema import GenerationResult
from .session import CloneSession

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class LineResult:
    """What became of one line: its pair, or the error that stopped it."""

    index: int
    """1-based line number in the batch."""
    text: str
    pair: OutputPair | None = None
    result: GenerationResult | None = None
    n: int | None = None
    """The session's output number of the pair (None when the line failed)."""
    error: PersonalizationError | None = None

    @property
    def ok(self) -> bool:
        return self.pair is not None


@dataclass(frozen=True)
class BatchProgress:
    """Reported before each line (``done`` None) and after it (``done`` its result)."""

    index: int
    """1-based line number."""
    total: int
    text: str
    done: LineResult | None = None


ProgressCallback = Callable[[BatchProgress], None]


@dataclass(frozen=True)
class BatchReport:
    """The outcome of a batch: one :class:`LineResult` per line tried, in order."""

    lines: tuple[LineResult, ...]
    total: int
    """Lines given (more than ``len(lines)`` when the batch stopped early)."""
    out_dir: Path
    interrupted: bool = False
    """Ctrl-C stopped the batch."""

    @property
    def written(self) -> list[Path]:
        """The written wav files, in line order (each has its ``.json`` beside it)."""
        return [r.pair.wav_path for r in self.lines if r.pair is not None]

    @property
    def failed(self) -> list[int]:
        """Line numbers that failed."""
        return [r.index for r in self.lines if not r.ok]

    @property
    def complete(self) -> bool:
        """Every line was written."""
        return len(self.written) == self.total


def run_batch(
    session: CloneSession,
    lines: Sequence[str],
    on_progress: ProgressCallback | None = None,
    *,
    on_chunk: ChunkCallback | None = None,
    stream: bool = False,
) -> BatchReport:
    """Speak each line in the session's voice; one output pair per line.

    Parameters
    ----------
    session : CloneSession
        With a reference (or a saved voice) set; the model is loaded on the first line.
    lines : sequence of str
        The lines, already stripped and non-empty (see ``cli.read_text_file``).
    on_progress : callable, optional
        Gets a :class:`BatchProgress` before and after each line.
    on_chunk, stream
        Passed to :meth:`CloneSession.speak` (e.g. to stream each line into a player).

    Returns
    -------
    BatchReport
        Also when Ctrl-C stopped the batch (``interrupted``).

    Raises
    ------
    PersonalizationError
        The session could not load its model or build its voice (no line can be spoken).
    """
    results: list[LineResult] = []
    total = len(lines)
    if lines:
        session.prepare()  # no voice, or a model that cannot load, fails the batch, not each line
    try:
        for i, text in enumerate(lines, 1):
            if on_progress is not None:
                on_progress(BatchProgress(i, total, text))
            try:
                spoken = session.speak(text, on_chunk=on_chunk, stream=stream)
                done = LineResult(i, text, spoken.pair, spoken.result, spoken.n)
            except PersonalizationError as exc:
                _LOGGER.info("line %d failed: %s", i, exc)
                done = LineResult(i, text, error=exc)
            results.append(done)
            if on_progress is not None:
                on_progress(BatchProgress(i, total, text, done))
            if isinstance(done.error, OutputWriteError):
                break  # the next line would fail the same way
    except KeyboardInterrupt:
        return BatchReport(tuple(results), total, session.out_dir, interrupted=True)
    return BatchReport(tuple(results), total, session.out_dir)
