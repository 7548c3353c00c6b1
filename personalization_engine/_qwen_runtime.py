"""Torch-facing helpers of the Qwen3-TTS adapter: quiet import, seeding, memory, joining.

Nothing here loads weights; ``qwen_adapter`` uses these around qwen-tts calls, and the
benchmarks use :func:`fixed_min_frames` on the plain qwen-tts path too.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import sys
from typing import Any, Callable, Iterator

import numpy as np

from .errors import SynthesisError
from .schema import GenerationResult


def join_results(results: list[GenerationResult], *, text: str = "",
                 similarity: Callable[[np.ndarray], float | None] | None = None) -> GenerationResult:
    """Join segment results, or streamed chunks, into one final result.

    Chunks of a segment are concatenated directly; a segment's pause
    (``extra["pause_after_s"]``) follows its last record (``extra["segment_final"]``, which a
    non-streamed result implicitly is), except after the final one. ``similarity`` measures
    the joined audio when there is more than one segment; with one segment its own value is kept.
    """
    if not results:
        raise SynthesisError("nothing was generated")
    sr = results[0].sample_rate
    parts: list[np.ndarray] = []
    finals: list[GenerationResult] = []
    seg_frames: dict[int, int] = {}
    for r in results:
        parts.append(r.audio)
        seg_frames[r.segment_idx] = seg_frames.get(r.segment_idx, 0) + r.frames
        if r.extra.get("segment_final", True):
            finals.append(r)
            pause = float(r.extra.get("pause_after_s", 0.0)) if not r.is_final else 0.0
            parts.append(np.zeros(int(round(pause * sr)), dtype=np.float32))
    audio = np.concatenate(parts).astype(np.float32)
    duration = len(audio) / sr
    elapsed = sum(r.processing_time_s for r in results)
    if len(seg_frames) == 1:
        sim = finals[-1].similarity if finals else None
    else:
        sim = similarity(audio) if similarity is not None else None
    return GenerationResult(
        audio=audio, sample_rate=sr, segment_idx=0, frames=sum(r.frames for r in results), audio_duration_s=duration,
        processing_time_s=elapsed, real_time_factor=elapsed / duration if duration > 0 else float("inf"),
        peak_memory_gb=max(r.peak_memory_gb for r in results), is_final=True,
        text=text or " ".join(r.text for r in finals), similarity=sim, time_to_first_audio_s=results[0].time_to_first_audio_s,
        extra={"segments": len(seg_frames), "segment_frames": list(seg_frames.values()), "chunks": len(results),
               "segment_similarity": [r.similarity for r in finals],
               "pauses_s": [float(r.extra.get("pause_after_s", 0.0)) for r in finals[:-1]],
               "hit_budget": any(r.extra.get("hit_budget") for r in results)},
    )


def process_peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in 1e9 bytes (0.0 where unknown)."""
    try:
        import resource
    except ImportError:  # Windows
        return _windows_peak_rss() / 1e9
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9


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


@functools.lru_cache(maxsize=None)
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
