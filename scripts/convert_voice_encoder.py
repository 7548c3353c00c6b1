"""Convert Resemblyzer's pretrained voice encoder into ``models/voice_encoder.safetensors``.

The emotion features (``personalization_engine/emotion/voice_encoder.py``) run the LSTM of
Resemblyzer's GE2E speaker encoder (Apache-2.0, https://github.com/resemble-ai/Resemblyzer,
version 0.1.4 on PyPI, which ships ``resemblyzer/pretrained.pt``). This script keeps its three
LSTM layers only (the embedding projection, the GE2E similarity scalars and the optimizer state
are dropped), stores them as float16 safetensors (no pickle at run time) and prints the file's
SHA-256, which ``voice_encoder.WEIGHTS_SHA256`` pins.

``pretrained.pt`` is read with ``torch.load(weights_only=True)``: tensors and plain containers
only, no code runs. Reproduce the shipped file from the repository root::

    .venv/bin/pip download resemblyzer==0.1.4 --no-deps -d /tmp/rz
    (cd /tmp/rz && python -m zipfile -e Resemblyzer-0.1.4-py3-none-any.whl .)
    .venv/bin/python scripts/convert_voice_encoder.py /tmp/rz/resemblyzer/pretrained.pt
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    import torch
    from safetensors.torch import save

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pretrained", type=Path, help="resemblyzer/pretrained.pt from the Resemblyzer 0.1.4 wheel")
    ap.add_argument("--out", type=Path, default=REPO / "models" / "voice_encoder.safetensors")
    args = ap.parse_args(argv)
    state = torch.load(args.pretrained, map_location="cpu", weights_only=True)["model_state"]
    lstm = {k.removeprefix("lstm."): v.to(torch.float16).contiguous()
            for k, v in state.items() if k.startswith("lstm.")}
    want = sorted(f"{w}_{kind}_l{i}" for w in ("weight", "bias") for kind in ("ih", "hh") for i in range(3))
    if sorted(lstm) != want:
        sys.stderr.write(f"{args.pretrained}: not a 3-layer LSTM voice encoder (keys {sorted(lstm)})\n")
        return 1
    data = save(lstm, metadata={"source": "Resemblyzer 0.1.4 pretrained.pt (Apache-2.0), LSTM layers only, float16"})
    args.out.write_bytes(data)
    sys.stdout.write(f"{args.out}: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
