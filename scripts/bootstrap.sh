#!/usr/bin/env bash
# Create or refresh .venv from the requirements files; a no-op (well under a second) when
# nothing changed. Usage: scripts/bootstrap.sh [requirements.txt|requirements-dev.txt]
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:-requirements.txt}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for cand in python3.11 python3 python; do
    if command -v "$cand" >/dev/null 2>&1; then py="$cand"; break; fi
  done
fi
[ -n "$py" ] || { echo "bootstrap: Python 3.11 not found; install it and retry." >&2; exit 1; }
# The stamp covers every requirements file the chosen one pulls in.
stamp_src=$(cat requirements.txt "$req" | sha256sum | cut -d' ' -f1)
stamp=".venv/.requirements-$(basename "$req" .txt).sha256"
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_src" ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $("$py" --version 2>&1)" >&2
  "$py" -m venv .venv
fi
echo "bootstrap: installing $req into .venv (first time: several minutes, torch is large)" >&2
# torch 2.9.1 from PyPI is the CUDA build: about 8 GB installed, about 3 GB of wheels on the way.
# No pip cache (it would keep a second copy of those wheels), and a plain warning up front when the
# disk looks too small, since pip's own report of a full disk names neither the cause nor the size.
need_kb=$((11 * 1024 * 1024))
free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
if [ ! -f .venv/lib/python3*/site-packages/torch/__init__.py ] && [ "${free_kb:-0}" -lt "$need_kb" ]; then
  echo "bootstrap: warning: $((free_kb / 1024)) MB free here; a first install needs about 11 GB" \
    "(torch's CUDA build). Free some space if pip stops with 'No space left on device'." >&2
fi
export PIP_NO_CACHE_DIR=1
.venv/bin/python -m pip install --quiet --upgrade pip >&2
.venv/bin/python -m pip install --quiet -r "$req" >&2
# A stamp for this file, and one for the runtime file when the dev file (a superset) was installed.
echo "$stamp_src" > "$stamp"
if [ "$req" != requirements.txt ]; then
  cat requirements.txt requirements.txt | sha256sum | cut -d' ' -f1 > .venv/.requirements-requirements.sha256
fi
