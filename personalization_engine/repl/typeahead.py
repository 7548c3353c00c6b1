"""Lines typed while a line is being spoken: read quietly, queued, shown as a count.

While the model works, the terminal would echo what the user types straight over the spinner.
:class:`TypeAhead` turns the echo off for that time (the terminal stays in line mode, so
Ctrl-C still interrupts), reads each finished line as it comes, and keeps it in a queue the
prompt loop takes before asking for more. The progress display shows "2 lines queued";
``/stop`` empties the queue. A line still being typed when the work ends stays in the
terminal's buffer and shows up at the next prompt, so nothing typed is lost.

Only on a real terminal (stdin a TTY, POSIX termios); elsewhere (tests with scripted input,
pipes, Windows) it does nothing and lines are read as before.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator

_LOGGER = logging.getLogger(__name__)

#: How often the reader looks for typed lines while the model works (s).
POLL_S = 0.05


class TypeAhead:
    """The queue of lines typed ahead (see the module docstring)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled and _termios_available() and sys.stdin.isatty()
        self._lines: deque[str] = deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._lines)

    def pop(self) -> str | None:
        """The oldest queued line, or None."""
        with self._lock:
            return self._lines.popleft() if self._lines else None

    def clear(self) -> int:
        """Drop the queued lines; returns how many there were."""
        with self._lock:
            n = len(self._lines)
            self._lines.clear()
            return n

    def push(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    @contextlib.contextmanager
    def capturing(self, on_change: Callable[[int], None] | None = None) -> Iterator[None]:
        """While the body runs: no echo; each typed line is queued and ``on_change(count)`` called."""
        if not self.enabled:
            yield
            return
        import termios

        fd = sys.stdin.fileno()
        try:
            saved = termios.tcgetattr(fd)
        except termios.error as exc:  # not a terminal after all
            _LOGGER.debug("no type-ahead: %s", exc)
            yield
            return
        quiet = list(saved)
        quiet[3] = quiet[3] & ~termios.ECHO  # lflag: no echo; ICANON and ISIG stay (lines, Ctrl-C)
        stop = threading.Event()
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
        reader = threading.Thread(target=self._read, args=(fd, stop, on_change), name="type-ahead", daemon=True)
        reader.start()
        try:
            yield
        finally:
            stop.set()
            reader.join(1.0)
            termios.tcsetattr(fd, termios.TCSANOW, saved)

    def _read(self, fd: int, stop: threading.Event, on_change: Callable[[int], None] | None) -> None:
        pending = b""
        while not stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], POLL_S)
                if not ready:
                    continue
                data = os.read(fd, 4096)  # line mode: returns one finished line at a time
            except OSError as exc:
                _LOGGER.debug("type-ahead stopped: %s", exc)
                return
            if not data:
                return
            pending += data
            while b"\n" in pending:
                raw, pending = pending.split(b"\n", 1)
                self.push(raw.decode("utf-8", errors="replace").rstrip("\r"))
                if on_change is not None:
                    on_change(len(self))
        if pending:
            self.push(pending.decode("utf-8", errors="replace"))


def queued_text(count: int) -> str:
    """``2 lines queued`` (empty for none)."""
    if count <= 0:
        return ""
    return f"{count} {'line' if count == 1 else 'lines'} queued (/stop clears)"


def _termios_available() -> bool:
    try:
        import termios  # noqa: F401
    except ImportError:
        return False
    return True
