#!/usr/bin/env python3
"""Clone your voice from a few seconds of speech and speak typed lines in it (Qwen3-TTS).

Interactive:  python run_qwen_interactive.py [--ref voice.wav] [--model 0.6b]
Batch:        python run_qwen_interactive.py --ref voice.wav --text-file lines.txt --no-play

Every line becomes outputs/cloned_TIMESTAMP.wav + cloned_TIMESTAMP.json (its fingerprint).
This script only parses arguments (personalization_engine.cli) and starts the REPL
(personalization_engine.repl).
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from personalization_engine import cli, repl

    options = cli.parse(argv, description=__doc__.splitlines()[0])
    try:
        return repl.run(options)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
