"""Command line: ``python -m personalization_engine analyze|clone ...``.

Thin entry: argument parsing (the shared flags are in ``cli.py``) and exit codes; the work is in
the library (``session``, ``batch``) and the Rich rendering in ``repl/render.py`` and
``repl/view.py``. Exit codes: 0 success, 2 bad input (one line naming the file and the
problem, no traceback), 1 an unexpected failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from . import cli
from .errors import ModelLoadError, PersonalizationError

if TYPE_CHECKING:
    from rich.console import Console

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m personalization_engine", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("analyze", help="measure the Voice DNA (pitch, energy/stress, rate, emotion) of clips")
    a.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg, mp3)")
    a.add_argument("--json", action="store_true",
                   help="print JSON Lines: one JSON object per file, one per line (several files: several "
                        "lines, not one array; e.g. `jq -s .` joins them)")
    a.add_argument("--contours", action="store_true", help="include the pitch and energy contours in --json")
    a.add_argument("--no-emotion", action="store_true", help="skip the emotion detector")
    cli.add_clone_flags(sub.add_parser("clone", help="speak lines of text in the voice of a reference clip"))
    return p


def _analyze(args: argparse.Namespace) -> int:
    from .analysis import analyze_voice, emotion_unavailable_reason
    from .repl import render

    console = None if args.json else render.make_console()
    status = EXIT_OK
    if console is not None and not args.no_emotion:
        reason = emotion_unavailable_reason()
        if reason:
            console.print(f"[yellow]emotion: unavailable ({reason})[/]")
    for name in args.files:
        try:
            clip, profile = analyze_voice(name, emotion=not args.no_emotion)
        except PersonalizationError as exc:
            msg = str(exc)
            print(f"error: {msg if name in msg else f'{name}: {msg}'}", file=sys.stderr)
            status = EXIT_BAD_INPUT
            continue
        if console is None:
            # duration_s is the file's; the profile's own duration is that of the trimmed clip.
            record = {"file": name, **profile.to_dict(contours=args.contours)}
            record["duration_s"] = round(clip.original_duration_s, 3)
            record["analysed_duration_s"] = round(clip.duration_s, 3)
            record["warnings"] = list(clip.warnings)
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            render.print_analysis(console, name, clip, profile)
    return status


def _clone(args: argparse.Namespace, console: Console | None = None) -> int:
    """One session, its reference from --ref, every line through ``batch.run_batch``."""
    from .repl import render, view
    from .session import CloneSession

    options = cli.options_from_args(args)
    lines = [args.text.strip()] if args.text is not None else cli.read_text_file(args.text_file)
    if not any(lines):
        print("error: no text to speak: give --text or a --text-file with non-empty lines", file=sys.stderr)
        return EXIT_BAD_INPUT
    cli.check_out_dir(options.out_dir)  # before the model loads: a bad --out is one line, exit 2
    console = console or render.make_console()
    session = CloneSession(options.session_config(), events=view.ConsoleEvents(console))
    missing = session.check_model()
    console.print(render.render_banner(device=session.device_description(), model=session.model_name,
                                       mode=session.mode, seed=options.seed, out_dir=options.out_dir,
                                       voices_dir=options.voices_dir, interactive=False, quant=session.quant_mode(),
                                       model_missing=missing))
    if missing:
        raise ModelLoadError(missing)  # exit 2 with the download command; nothing analysed or written
    try:
        session.load_reference(args.ref, transcript=options.transcript)
        report = view.run_batch(console, session, lines)
    finally:
        session.close()
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if report.complete else EXIT_FAILURE


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cli.setup_logging(args.debug)
    try:
        return _analyze(args) if args.command == "analyze" else _clone(args)
    except PersonalizationError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
