#!/usr/bin/env bash
# Run the test suite: creates/refreshes .venv from requirements-dev.txt when needed, then pytest.
# Extra arguments go to pytest (e.g. ./test.sh -k audio_io). Slow and GPU tests are opt-in:
# ./test.sh -m slow, ./test.sh -m gpu.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/bootstrap.sh requirements-dev.txt
exec .venv/bin/python -m pytest "$@"
