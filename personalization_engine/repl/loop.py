"""The prompt loop: start a session, read typed lines, hand each to ``commands.handle``.

:func:`run` is the interactive session of ``run_qwen_interactive.py`` (and its ``--text-file``
batch mode). Library errors (:class:`PersonalizationError`) print their one-line message and
the prompt comes back; Ctrl-C cancels the step under way; anything else is a bug, shown as one
line (the traceback with ``--debug``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from .. import audio_device
from ..cli import Options, check_out_dir, read_text_file
from ..errors import DeviceError, ModelLoadError, PersonalizationError, ProfileError
from ..session import CloneSession
from . import commands, view
from .audio import AudioView
from .render import make_console, render_banner, render_devices, short
from .typeahead import TypeAhead

_LOGGER = logging.getLogger(__name__)

InputFn = Callable[[str], str]


class Repl:
    """One interactive (or batch) run: the session, its console, its audio and its input."""

    def __init__(self, options: Options, console: Console, input_fn: InputFn | None, *,
                 interactive: bool = True) -> None:
        self.options = options
        self.console = console
        self.input_fn = input_fn or _terminal_input(console)
        self.interactive = interactive
        self.session = CloneSession(options.session_config(), events=view.ConsoleEvents(console))
        self.audio = AudioView(console)
        # Lines typed while a line is made are queued, not echoed over the progress bar.
        self.typeahead = TypeAhead(enabled=interactive and input_fn is None and console.is_terminal)

    def banner(self) -> None:
        """The start panel, after checking (without downloading) that the model's weights can be had."""
        o, s = self.options, self.session
        missing = s.check_model()
        self.console.print(render_banner(device=s.device_description(), model=s.model_name, mode=s.mode, seed=o.seed,
                                         out_dir=o.out_dir, voices_dir=o.voices_dir, interactive=self.interactive,
                                         quant=s.quant_mode(), model_missing=missing))

    def setup_audio(self) -> None:
        o = self.options
        self.audio.setup(input_device=o.input_device, output_device=o.output_device, play=o.play,
                         microphone=self.interactive)

    def start(self) -> None:
        """Get the first reference: --voice, --ref, or a recording."""
        o, session = self.options, self.session
        if o.voice:
            commands.use_voice(self, o.voice)
        elif o.ref:
            session.load_reference(o.ref, transcript=o.transcript)
        elif self.audio.mic is not None:
            what = (f"read this aloud: “{escape(o.transcript)}”" if o.transcript
                    else "read any sentence in your normal voice")
            self.console.print(f"No reference yet: let's record one ({o.seconds:g} s; {what}).")
            commands.record_reference(self, o.seconds, transcript=o.transcript)
        else:
            self.console.print("[yellow]No reference voice yet: use /load PATH (or --ref FILE).[/]")
        session.warm_up()  # without weights the banner said so: the reference gives its Voice DNA only

    def loop(self) -> None:
        while True:
            self.audio.report_player_error()
            queued = self.typeahead.pop()
            if queued is not None:  # typed while the last line was made: shown as if typed now
                self.console.print(self._prompt() + escape(queued))
                if self.guard(commands.handle, self, queued) is False:
                    return
                continue
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
            if self.guard(commands.handle, self, line) is False:
                return

    def guard(self, step: Callable[..., Any], *args: Any) -> Any:
        """Run one step: errors print one line and Ctrl-C cancels it, never ending the session."""
        try:
            return step(*args)
        except KeyboardInterrupt:
            dropped = self.typeahead.clear()
            also = f"; {dropped} queued {'line' if dropped == 1 else 'lines'} dropped" if dropped else ""
            self.console.print(f"[yellow]cancelled: back to the prompt (nothing was written{also}).[/]")
        except PersonalizationError as exc:
            self.console.print(f"[red]✖ {escape(str(exc))}[/]")
        except Exception as exc:  # a bug: one line, the traceback with --debug
            _LOGGER.debug("unexpected error", exc_info=True)
            if self.options.debug:
                self.console.print_exception()
            else:
                self.console.print(f"[red]✖ unexpected error: {type(exc).__name__}: {escape(str(exc))} "
                                   "(run with --debug for the traceback)[/]")
        return None

    def _prompt(self) -> str:
        ref = self.session.reference
        who = ref.name if ref is not None else "no voice"
        lang = "" if self.session.language == "auto" else f" · {self.session.language}"
        return f"[bold magenta]{escape(short(who, 24))}[/] [dim]{self.session.mode}{lang}[/] › "

    def close(self) -> None:
        self.audio.close()
        self.session.close()


def run(options: Options, *, console: Console | None = None, input_fn: InputFn | None = None) -> int:
    """Run the interactive session (or batch mode with ``options.text_file``).

    Parameters
    ----------
    options : Options
        From ``cli.parse``.
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
    try:
        check_out_dir(options.out_dir)  # before any model, recording or progress line
        lines = read_text_file(options.text_file) if options.text_file is not None else None
    except PersonalizationError as exc:
        _error(exc)
        return 2
    _preload_emotion_detector()
    if lines is not None:
        return _run_batch_mode(options, lines, console)
    _restore_ctrl_c()
    app = Repl(options, console, input_fn)
    app.banner()
    try:
        app.setup_audio()
        app.guard(app.start)
        app.loop()
    finally:
        app.close()
        n = len(app.session.outputs)
        console.print(f"Outputs are in {escape(str(options.out_dir.resolve()))}/ ({n} {'pair' if n == 1 else 'pairs'} "
                      "written this session). Bye!")
    return 0


def _run_batch_mode(options: Options, lines: list[str], console: Console) -> int:
    """``--text-file``: every line through one session, played as it is made unless --no-play."""
    app = Repl(options, console, None, interactive=False)
    app.banner()
    try:
        if app.session.model_missing:
            raise ModelLoadError(app.session.model_missing)  # nothing recorded, analysed or written
        app.setup_audio()
        if options.voice:
            commands.use_voice(app, options.voice)
        elif options.ref:
            app.session.load_reference(options.ref, transcript=options.transcript)
        else:
            raise ProfileError("batch mode needs a voice: give --ref FILE or --voice NAME.")
        report = view.run_batch(console, app.session, lines, app.audio)
        if report.interrupted:
            return 130
        player = app.audio.player
        if player is not None and player.is_playing:
            console.print("[dim]waiting for playback to finish (Ctrl-C to skip)…[/]")
            player.wait()
    except PersonalizationError as exc:
        _error(exc)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        app.close()
    return 0 if report.complete else 1


def _error(exc: PersonalizationError) -> None:
    """A run-ending error: one line on stderr (like ``python -m personalization_engine``'s)."""
    print(f"error: {exc}", file=sys.stderr, flush=True)


def _preload_emotion_detector() -> None:
    """Load the emotion detector and its voice encoder in the background: importing scikit-learn
    and torch takes a second or two, and the first analysis (after a recording or ``--ref``) then
    finds both ready."""
    from .. import analysis

    threading.Thread(target=analysis.preload_emotion, name="emotion-preload", daemon=True).start()


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


def _line_buffer() -> str:
    """What the user had typed when Ctrl-C hit the prompt ("" without readline)."""
    try:
        import readline

        return readline.get_line_buffer()
    except Exception:  # no readline on this platform
        return ""


_ANSI = re.compile(r"(\x1b\[[0-9;]*m)")


def _restore_ctrl_c() -> None:
    """Make Ctrl-C raise KeyboardInterrupt again where a launcher set SIGINT to "ignore" (a shell
    starts background jobs that way, and Python keeps an inherited ignore): in the REPL Ctrl-C
    is how a line is cancelled, so it must work. Only from an interactive terminal."""
    if sys.stdin.isatty() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _terminal_input(console: Console) -> InputFn:
    """``input()`` with line editing, showing a Rich-markup prompt readline can measure."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (enables line editing and history for input())

    def ask(prompt: str) -> str:
        if not console.is_terminal:
            console.print(prompt, end="")
            return input()
        with console.capture() as capture:
            console.print(Text.from_markup(prompt), end="")
        # Mark escape codes as zero-width so readline keeps the cursor where it belongs.
        return input(_ANSI.sub("\x01\\1\x02", capture.get()))

    return ask
