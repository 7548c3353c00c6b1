"""Memory bandwidth of this machine, the bound on CPU generation speed (issue 10).

A decode step reads every linear weight of the talker once and the code predictor's 15 times:
generation is a stream of weight bytes. This measures what one and two cores can stream:

* ``numpy``: summing a 400 MB float32 array (pure streaming reads), in one process and in two
  processes at once (each its own array: do two cores add bandwidth?);
* ``int4 kernel``: our native int4 matvec (``tts/_native.py``) over a set of 1024 x 3072 layers
  cycled like a decode step, for working sets from 4 MB (fits the 32 MB L3) to 100 MB
  (DRAM), on one thread: where it is compute-bound and where memory-bound.

Usage: ``.venv/bin/python bench/bench_bandwidth.py [--out bench/results/bandwidth.txt]``.
Run it on an idle machine; the load is written next to the numbers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _benchlib import cpu_model  # noqa: E402

ARRAY_BYTES = 400_000_000


def _numpy_stream() -> float:
    """GB/s of summing a 400 MB float32 array (best of 10 passes after one warm-up)."""
    import numpy as np

    a = np.ones(ARRAY_BYTES // 4, dtype=np.float32)
    a.sum()
    best = float("inf")
    for _ in range(10):
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    return a.nbytes / best / 1e9


def _int4_working_sets() -> list[tuple[float, float]]:
    """(working set MB, GB/s) of our int4 matvec cycling over 1024 x 3072 layers, one thread."""
    import torch

    from personalization_engine.tts._qlinear import NativeInt4Linear

    torch.set_num_threads(1)
    torch.manual_seed(0)
    first = NativeInt4Linear.from_float(torch.randn(3072, 1024))
    per = sum(b.numel() * b.element_size() for b in first.buffers())  # packed bytes per layer
    layers = [first] + [NativeInt4Linear.from_float(torch.randn(3072, 1024)) for _ in range(int(100e6 / per))]
    x = torch.randn(1, 1024)
    rows = []
    for n in (2, 4, 8, 12, 16, 24, 32, len(layers)):
        use = layers[:n]
        for layer in use:
            layer(x)
        reps = max(3, 300 // n)
        t = time.perf_counter()
        for _ in range(reps):
            for layer in use:
                layer(x)
        rows.append((n * per / 1e6, n * per * reps / (time.perf_counter() - t) / 1e9))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bandwidth.txt")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(f"{_numpy_stream():.2f}")
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = [sys.executable, __file__, "--child"]
    lines = [f"# {cpu_model()}, {os.cpu_count()} cores; load before: {os.getloadavg()}",
             f"# command: .venv/bin/python bench/bench_bandwidth.py --out {args.out}"]
    solo = float(subprocess.run(child, env=env, capture_output=True, text=True, check=True).stdout)
    pair = [subprocess.Popen(child, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    both = [float(proc.communicate()[0]) for proc in pair]
    lines.append(f"numpy sum of 400 MB, one process:          {solo:5.1f} GB/s")
    lines.append(f"numpy sum of 400 MB, two processes at once: {both[0]:5.1f} + {both[1]:5.1f} = "
                 f"{sum(both):5.1f} GB/s")
    lines.append("int4 matvec (ours), one thread, layers cycled like a decode step:")
    for mb, gbs in _int4_working_sets():
        lines.append(f"  working set {mb:6.1f} MB: {gbs:5.1f} GB/s of packed weights")
    lines.append(f"# load after: {os.getloadavg()}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
