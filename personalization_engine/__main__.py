"""Command line: ``python -m personalization_engine analyze|clone ...``.

Thin entry: argument parsing and exit codes only; the work is in the library and the Rich
rendering in ``repl.py``. Exit codes: 0 success, 2 bad input (one line naming the file and the
problem, no traceback), 1 an unexpected failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import PersonalizationError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m personalization_engine", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("analyze", help="measure the Voice DNA (pitch, energy/stress, rate, emotion) of clips")
    a.add_argument("files", nargs="+", metavar="FILE", help="audio files (wav, flac, ogg, mp3)")
    a.add_argument("--json", action="store_true", help="one JSON object per line per file")
    a.add_argument("--contours", action="store_true", help="include the pitch and energy contours in --json")
    a.add_argument("--no-emotion", action="store_true", help="skip the emotion detector")
    c = sub.add_parser("clone", help="speak lines of text in the voice of a reference clip")
    c.add_argument("--ref", required=True, metavar="FILE", help="reference clip of the voice (3-15 s of speech)")
    c.add_argument("--transcript", metavar="TEXT", help="transcript of the reference (enables ICL mode)")
    text = c.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", metavar="TEXT", help="one line to speak")
    text.add_argument("--text-file", metavar="FILE", help="a UTF-8 file: one output pair per non-empty line")
    c.add_argument("--model", default="0.6b", metavar="NAME|DIR", help="0.6b (default), 1.7b, or a local folder")
    c.add_argument("--device", default="auto", help="auto (default), cuda, mps or cpu")
    c.add_argument("--dtype", default="auto", help="auto (default), bfloat16, float16 or float32")
    c.add_argument("--lang", default="auto", help="language of the text (default: auto)")
    c.add_argument("--seed", type=int, default=None, help="sampling seed for reproducible output")
    c.add_argument("--out", default="outputs", metavar="DIR", help="output folder (default: outputs/)")
    return p


def _analyze(args: argparse.Namespace) -> int:
    from . import repl
    from .analysis import analyze_voice, emotion_unavailable_reason

    console = None if args.json else repl.make_console()
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
        if args.json:
            # duration_s is the file's; the profile's own duration is that of the trimmed clip.
            record = {"file": name, **profile.to_dict(contours=args.contours)}
            record["duration_s"] = round(clip.original_duration_s, 3)
            record["analysed_duration_s"] = round(clip.duration_s, 3)
            record["warnings"] = list(clip.warnings)
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            repl.print_analysis(console, name, clip, profile)
    return status


def _clone(args: argparse.Namespace) -> int:
    from . import repl

    if args.text is not None:
        lines = [args.text]
    else:
        path = Path(args.text_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            print(f"error: {path}: cannot read the text file ({exc})", file=sys.stderr)
            return EXIT_BAD_INPUT
    lines = [ln.strip() for ln in lines if ln.strip()]
    if not lines:
        print("error: no text to speak: give --text or a --text-file with non-empty lines", file=sys.stderr)
        return EXIT_BAD_INPUT
    return repl.run_clone_command(
        ref=args.ref,
        transcript=args.transcript,
        lines=lines,
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        language=args.lang,
        seed=args.seed,
        out_dir=Path(args.out),
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
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
