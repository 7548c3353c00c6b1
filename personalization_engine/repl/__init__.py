"""The Rich terminal UI: the only part of the package that imports Rich.

A typed line walks down: :mod:`.loop` (the prompt) -> :mod:`.commands` (text or a
``/command``) -> :class:`~personalization_engine.session.CloneSession` -> ``cloning.clone_line``
-> the TTS model -> the output pair. :mod:`.render` draws records (Voice DNA panels,
sparklines, tables, result lines), :mod:`.view` shows the session's events, a line's progress
and a batch, and :mod:`.audio` owns the microphone and speakers.
"""

from __future__ import annotations

from ..cli import Options as ReplOptions
from ..cli import read_text_file
from .loop import run
from .render import make_console, print_analysis, render_profile, sparkline

__all__ = ["ReplOptions", "make_console", "print_analysis", "read_text_file", "render_profile", "run", "sparkline"]
