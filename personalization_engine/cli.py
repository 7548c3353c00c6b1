"""The command line both entry points share: flags, their defaults, logging, text files.

``run_qwen_interactive.py`` is ``parse(argv)`` then ``repl.run(options)``;
``python -m personalization_engine clone`` adds the same voice/model/output flags to its
sub-command with :func:`add_clone_flags` and reads them back with :func:`options_from_args`.
The defaults live once, in :class:`Options`.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import OutputWriteError, ProfileError
from .session import SessionConfig
from .tts.quant import QUANT_CHOICES

#: Log line format of both entry points (stderr; the console output stays on stdout).
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class Options:
    """Everything the command line can set (the defaults are the commands' defaults)."""

    ref: str | None = None
    """Reference clip; skips recording."""
    voice: str | None = None
    """A saved voice to start with (``voices/NAME``)."""
    transcript: str | None = None
    """Transcript of the reference: enables ICL mode."""
    model: str = "0.6b"
    device: str = "auto"
    dtype: str = "auto"
    quant: str = "auto"
    """Compact weights: auto (int8 on CPU, unchanged on a GPU), none, bf16, int8 or int4."""
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

    def session_config(self) -> SessionConfig:
        """The part of the options a :class:`~personalization_engine.session.CloneSession` starts with."""
        return SessionConfig(model=self.model, device=self.device, dtype=self.dtype, quant=self.quant,
                             out_dir=self.out_dir,
                             voices_dir=self.voices_dir, language=self.language, seed=self.seed,
                             transcript=self.transcript)


_DEFAULTS = Options()


def _add_model_flags(group: argparse._ActionsContainer) -> None:
    group.add_argument("--model", default=_DEFAULTS.model, metavar="NAME|DIR",
                       help="0.6b (default), 1.7b or a local folder")
    group.add_argument("--device", default=_DEFAULTS.device, help="auto (default), cuda, mps or cpu")
    group.add_argument("--dtype", default=_DEFAULTS.dtype, help="auto (default), bfloat16, float16 or float32")
    group.add_argument("--quant", default=_DEFAULTS.quant, type=str.lower, choices=QUANT_CHOICES,
                       help="compact talker weights: auto (default: int8 on CPU, unchanged on a GPU), none, "
                            "bf16, int8 or int4 (int8/int4: CPU only)")
    group.add_argument("--lang", default=_DEFAULTS.language, metavar="CODE",
                       help="language of the lines (default: auto)")
    group.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="sampling seed, for reproducible output")


def _add_out_flag(group: argparse._ActionsContainer) -> None:
    group.add_argument("--out", default=str(_DEFAULTS.out_dir), metavar="DIR",
                       help="output folder (default: ./outputs)")


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``run_qwen_interactive.py``."""
    p = argparse.ArgumentParser(description=description, epilog="Type /help in the session for its commands.")
    voice = p.add_argument_group("voice")
    voice.add_argument("--ref", metavar="FILE", help="reference clip of the voice (skips recording)")
    voice.add_argument("--voice", metavar="NAME", help="start with a voice saved with /voice save NAME")
    voice.add_argument("--transcript", metavar="TEXT", help="what the reference says (enables ICL mode)")
    voice.add_argument("--seconds", type=float, default=_DEFAULTS.seconds, metavar="N",
                       help="recording length (default 5)")
    voice.add_argument("--countdown", type=int, default=_DEFAULTS.countdown, metavar="N",
                       help="countdown before recording (default 3)")
    _add_model_flags(p.add_argument_group("model"))
    files = p.add_argument_group("files")
    _add_out_flag(files)
    files.add_argument("--voices", default=str(_DEFAULTS.voices_dir), metavar="DIR",
                       help="voice library folder (default: ./voices)")
    files.add_argument("--text-file", metavar="FILE", help="batch mode: speak each non-empty line, then exit")
    audio = p.add_argument_group("audio")
    audio.add_argument("--no-play", action="store_true", help="do not play the outputs")
    audio.add_argument("--input-device", metavar="ID|NAME", help="microphone (index or part of its name)")
    audio.add_argument("--output-device", metavar="ID|NAME", help="speakers (index or part of its name)")
    audio.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--debug", action="store_true", help="debug logs and full tracebacks")
    return p


def add_clone_flags(p: argparse.ArgumentParser) -> None:
    """The flags of ``python -m personalization_engine clone`` (a subset of the script's)."""
    p.add_argument("--ref", required=True, metavar="FILE", help="reference clip of the voice (3-15 s of speech)")
    p.add_argument("--transcript", metavar="TEXT", help="transcript of the reference (enables ICL mode)")
    text = p.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", metavar="TEXT", help="one line to speak")
    text.add_argument("--text-file", metavar="FILE", help="a UTF-8 file: one output pair per non-empty line")
    _add_model_flags(p)
    _add_out_flag(p)


def options_from_args(args: argparse.Namespace) -> Options:
    """:class:`Options` from either parser's namespace (flags a parser lacks keep their defaults)."""
    get = vars(args).get
    text_file = get("text_file")
    return Options(
        ref=get("ref"), voice=get("voice"), transcript=get("transcript"),
        model=get("model", _DEFAULTS.model), device=get("device", _DEFAULTS.device),
        dtype=get("dtype", _DEFAULTS.dtype), quant=get("quant", _DEFAULTS.quant),
        out_dir=Path(get("out", _DEFAULTS.out_dir)),
        voices_dir=Path(get("voices", _DEFAULTS.voices_dir)), play=not get("no_play", False),
        input_device=get("input_device"), output_device=get("output_device"),
        list_devices=bool(get("list_devices", False)), seconds=get("seconds", _DEFAULTS.seconds),
        countdown=get("countdown", _DEFAULTS.countdown), language=get("lang", _DEFAULTS.language),
        seed=get("seed"), text_file=Path(text_file) if text_file else None, debug=bool(get("debug", False)),
    )


def parse(argv: list[str] | None = None, *, description: str | None = None) -> Options:
    """Parse ``run_qwen_interactive.py``'s arguments and set up logging."""
    options = options_from_args(build_parser(description).parse_args(argv))
    setup_logging(options.debug)
    return options


def setup_logging(debug: bool) -> None:
    """Errors only (debug logs with ``--debug``), to stderr. Called by the entry points only."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.ERROR, format=LOG_FORMAT)


def check_out_dir(path: str | Path) -> Path:
    """Check that output pairs can be written under ``path``, before anything slow starts.

    The folder need not exist: its nearest existing parent must be a folder where one can be
    made. Nothing is left behind (a probe folder is made and removed at once).

    Raises
    ------
    OutputWriteError
        A parent is a file, or the folder (or its parent) is not writable, e.g. under /proc.
    """
    p = Path(path).expanduser()
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputWriteError(f"--out {p}: {existing} is a file, not a folder; give a folder for the outputs.")
    try:
        probe = tempfile.mkdtemp(prefix=".out-check-", dir=existing)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputWriteError(f"--out {p}: cannot write in {existing} ({exc.strerror or exc}); "
                               "give a writable folder.") from exc
    return p


def read_text_file(path: str | Path) -> list[str]:
    """The non-empty, stripped lines of a UTF-8 text file.

    Raises
    ------
    ProfileError
        The file is missing, unreadable, not UTF-8, or has no non-empty line.
    """
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
