#!/usr/bin/env bash
# Run the app: creates/refreshes .venv from requirements.txt when needed, then starts the REPL.
# Any arguments go to run_qwen_interactive.py (e.g. ./run.sh --ref my_voice.wav).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/bootstrap.sh requirements.txt
exec .venv/bin/python run_qwen_interactive.py "$@"
