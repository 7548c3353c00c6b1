#!/usr/bin/env bash
# Run the checks: creates/refreshes .venv from requirements-dev.txt when needed, then ruff (lint),
# mypy (types) and pytest, in that order; the first that fails stops the run (set -e).
# Extra arguments go to pytest (e.g. ./test.sh -k audio_io). Slow and GPU tests are opt-in:
# ./test.sh -m slow, ./test.sh -m gpu.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/bootstrap.sh requirements-dev.txt
.venv/bin/ruff check personalization_engine bench tests
.venv/bin/mypy  # files and options: [tool.mypy] in pyproject.toml
exec .venv/bin/python -m pytest "$@"
