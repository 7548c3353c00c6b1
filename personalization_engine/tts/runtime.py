"""Torch-facing helpers of the tts package: quiet import, seeding, memory, similarity.

Nothing here loads weights; ``tts.model`` uses these around qwen-tts calls, and the
benchmarks use :func:`fixed_min_frames` on the plain qwen-tts path too. torch is imported on
first use (:func:`torch_module`), so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np


def process_peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in 1e9 bytes (0.0 where unknown)."""
    try:
        import resource
    except ImportError:  # Windows
        return _windows_peak_rss() / 1e9
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9


def reset_peak_memory(device: str) -> None:
    """Start a new CUDA peak-memory measurement on ``device`` (nothing to do elsewhere)."""
    if device.startswith("cuda"):
        torch_module().cuda.reset_peak_memory_stats(device)


def peak_memory_gb(device: str) -> float:
    """Peak CUDA memory allocated since :func:`reset_peak_memory` (GB); on CPU/MPS the process's peak RSS."""
    if device.startswith("cuda"):
        return float(torch_module().cuda.max_memory_allocated(device)) / 1e9
    return process_peak_rss_gb()


def _windows_peak_rss() -> float:
    try:
        import ctypes
        from ctypes import wintypes

        class Counters(ctypes.Structure):
            _fields_ = [("cb", wintypes.DWORD), ("PageFaultCount", wintypes.DWORD)] + [
                (n, ctypes.c_size_t) for n in ("PeakWorkingSetSize", "WorkingSetSize", "QuotaPeakPagedPoolUsage",
                                               "QuotaPagedPoolUsage", "QuotaPeakNonPagedPoolUsage",
                                               "QuotaNonPagedPoolUsage", "PagefileUsage", "PeakPagefileUsage")]
        c = Counters(cb=ctypes.sizeof(Counters))
        handle = ctypes.windll.kernel32.GetCurrentProcess()  # type: ignore[attr-defined]
        ok = ctypes.windll.psapi.GetProcessMemoryInfo(handle, ctypes.byref(c), c.cb)  # type: ignore[attr-defined]
        return float(c.PeakWorkingSetSize) if ok else 0.0
    except (OSError, AttributeError):
        return 0.0


#: glibc ``mallopt`` parameters (malloc.h) and glibc's defaults for them.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_DEFAULT_MMAP_THRESHOLD = _DEFAULT_TRIM_THRESHOLD = 128 * 1024
#: Blocks below this size come from the heap, not from a fresh ``mmap`` (glibc's ceiling on 64 bit).
KEEP_BLOCK_BYTES = 32 * 2**20
#: Free memory at the top of the heap kept for reuse before it goes back to the OS.
KEEP_TOP_BYTES = 256 * 2**20


def keep_freed_memory(enable: bool = True) -> bool:
    """Let glibc reuse freed activation buffers instead of returning them to the OS (Linux).

    A streamed codec chunk allocates and frees tensors of 1-12 MB (a 16-frame chunk at 96
    channels and 24 kHz is 12 MB). glibc serves blocks from 128 KB up with a fresh ``mmap`` and
    unmaps them on ``free``, so every chunk touches its pages anew: 30-70 thousand page faults
    per 4 s of decoded audio, about 10 % of the decoder's CPU time here (measured: thread CPU
    0.77 -> 0.69 s per s of audio, faults 0 after the first chunk). With ``enable`` blocks up to
    :data:`KEEP_BLOCK_BYTES` come from the heap and up to :data:`KEEP_TOP_BYTES` of freed heap
    stay mapped; what is free now (a load's temporaries) is released first (``malloc_trim``), so
    call it after loading. ``enable=False`` sets glibc's default thresholds again (128 KB) and
    releases what it can, but as fixed values: glibc's own adjustment of them cannot be restored in a
    running process (benchmarks compare against it in a fresh one). Process wide, like
    ``MALLOC_MMAP_THRESHOLD_``; returns False where there is no glibc (nothing done).
    """
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mmap_at, trim_at = ((KEEP_BLOCK_BYTES, KEEP_TOP_BYTES) if enable
                        else (_DEFAULT_MMAP_THRESHOLD, _DEFAULT_TRIM_THRESHOLD))
    ok = bool(mallopt(_M_MMAP_THRESHOLD, mmap_at)) and bool(mallopt(_M_TRIM_THRESHOLD, trim_at))
    if ok:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)
    return ok


@contextlib.contextmanager
def fixed_min_frames(talker: Any, frames: int | None) -> Iterator[None]:
    """Suppress end-of-speech until ``frames`` codec frames (benchmarks on random weights only).

    qwen-tts hard-codes ``min_new_tokens=2`` for the talker; this wraps the talker's
    ``generate`` for the duration of the block to raise it to ``frames + 1`` tokens.
    """
    if not frames:
        yield
        return
    original = talker.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        kwargs["min_new_tokens"] = int(frames) + 1
        return original(*args, **kwargs)

    talker.generate = generate
    try:
        yield
    finally:
        del talker.generate  # the instance attribute goes; the class method is back


@contextlib.contextmanager
def seeded(seed: int | None, offset: int, device: str) -> Iterator[None]:
    """Seed torch for one segment inside a forked RNG state (the caller's RNG is untouched)."""
    if seed is None:
        yield
        return
    torch = torch_module()
    devices = [int(device[5:])] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed((seed + offset) % 2**63)
        yield


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / denom) if denom > 0 else 0.0


def free_memory() -> None:
    gc.collect()
    torch = torch_module()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@functools.cache
def import_qwen_tts() -> Any:
    """Import qwen_tts without its import-time noise on the terminal.

    qwen-tts 0.1.1 prints a flash-attn banner, and its ``sox`` dependency runs ``sox -h`` in a
    shell and logs a warning when SoX is absent (SoX is only used by the 25 Hz tokenizer, which
    this engine never loads). Both are silenced for the duration of the import.
    """
    logging.getLogger("sox").setLevel(logging.ERROR)
    with quiet_stdio():
        import qwen_tts
    return qwen_tts


@contextlib.contextmanager
def quiet_stdio() -> Iterator[None]:
    """Send file descriptors 1 and 2 (and sys.stdout/err) to /dev/null for the block."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved: list[tuple[int, int]] = []
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            with contextlib.suppress(OSError):
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def torch_module() -> Any:
    """``torch``, imported on first use (importing the package stays light)."""
    import torch

    return torch
