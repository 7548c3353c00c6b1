#!/usr/bin/env python3
"""Clone your voice from a few seconds of speech and speak typed lines in it (Qwen3-TTS).

Interactive:  python run_qwen_interactive.py [--ref voice.wav] [--model 0.6b]
Batch:        python run_qwen_interactive.py --ref voice.wav --text-file lines.txt --no-play

Every line becomes outputs/cloned_TIMESTAMP.wav + cloned_TIMESTAMP.json (its fingerprint).
This script only parses arguments and sets up logging; the session is personalization_engine.repl.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="Type /help in the session for its commands.")
    voice = p.add_argument_group("voice")
    voice.add_argument("--ref", metavar="FILE", help="reference clip of the voice (skips recording)")
    voice.add_argument("--voice", metavar="NAME", help="start with a voice saved with /voice save NAME")
    voice.add_argument("--transcript", metavar="TEXT", help="what the reference says (enables ICL mode)")
    voice.add_argument("--seconds", type=float, default=5.0, metavar="N", help="recording length (default 5)")
    voice.add_argument("--countdown", type=int, default=3, metavar="N", help="countdown before recording (default 3)")
    model = p.add_argument_group("model")
    model.add_argument("--model", default="0.6b", metavar="NAME|DIR", help="0.6b (default), 1.7b or a local folder")
    model.add_argument("--device", default="auto", help="auto (default), cuda, mps or cpu")
    model.add_argument("--dtype", default="auto", help="auto (default), bfloat16, float16 or float32")
    model.add_argument("--lang", default="auto", metavar="CODE", help="language of the lines (default: auto)")
    model.add_argument("--seed", type=int, default=None, help="sampling seed, for reproducible output")
    files = p.add_argument_group("files")
    files.add_argument("--out", default="outputs", metavar="DIR", help="output folder (default: ./outputs)")
    files.add_argument("--voices", default="voices", metavar="DIR", help="voice library folder (default: ./voices)")
    files.add_argument("--text-file", metavar="FILE", help="batch mode: speak each non-empty line, then exit")
    audio = p.add_argument_group("audio")
    audio.add_argument("--no-play", action="store_true", help="do not play the outputs")
    audio.add_argument("--input-device", metavar="ID|NAME", help="microphone (index or part of its name)")
    audio.add_argument("--output-device", metavar="ID|NAME", help="speakers (index or part of its name)")
    audio.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--debug", action="store_true", help="debug logs and full tracebacks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from personalization_engine.repl import ReplOptions, run

    options = ReplOptions(
        ref=args.ref,
        voice=args.voice,
        transcript=args.transcript,
        model=args.model,
        device=args.device,
        dtype=args.dtype,
        out_dir=Path(args.out),
        voices_dir=Path(args.voices),
        play=not args.no_play,
        input_device=args.input_device,
        output_device=args.output_device,
        list_devices=args.list_devices,
        seconds=args.seconds,
        countdown=args.countdown,
        language=args.lang,
        seed=args.seed,
        text_file=Path(args.text_file) if args.text_file else None,
        debug=args.debug,
    )
    try:
        return run(options)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
