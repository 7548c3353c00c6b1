"""Helpers shared by the benchmarks: one-core pinning, timing, machine facts, the 5 s test clip.

Import this module before NumPy in a benchmark that claims "one core" and call
:func:`pin_one_core` first thing: the math libraries read their thread counts at import time.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the benchmarks import personalization_engine from the checkout
    sys.path.insert(0, str(REPO))
DEFAULT_CLIP = REPO.parent / "shared" / "data" / "voices" / "LJ001-0004.flac"
#: Length of the test clip (s) and the analysis sample rate (Hz).
CLIP_S = 5.0
SR = 16_000

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS")


def pin_one_core() -> None:
    """Limit every math library's thread pool to 1 (call before NumPy is imported)."""
    for var in _THREAD_VARS:
        os.environ[var] = "1"


def limit_threads() -> str:
    """Also cap already-loaded thread pools (threadpoolctl, when installed); says what was done."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        return "env vars + threadpoolctl(1)"
    except ImportError:
        return "env vars"


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, float, Any]:
    """Median and minimum wall time of ``reps`` calls in ms (after a warm-up call), last result.

    The minimum is the cost without interference from other processes on a shared machine.
    """
    import numpy as np

    result = fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times)), 1000.0 * float(np.min(times)), result


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def five_second_clip(path: Path) -> Any:
    """``path`` loaded as the app loads it (16 kHz, trimmed), cut or zero-padded to CLIP_S."""
    import numpy as np

    from personalization_engine.audio_io import load_audio

    clip = load_audio(path, sample_rate=SR)
    n = int(CLIP_S * SR)
    x = np.zeros(n, np.float32)
    x[: min(n, len(clip.samples))] = clip.samples[:n]
    return x
