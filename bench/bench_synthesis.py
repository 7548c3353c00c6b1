"""Synthesis speed on full-size random-weight models: our path vs plain qwen-tts, same run.

For each model size, one random-weight model (``build_full_size.py``) is built and three ways
of cloning a voice run on the *same* weights, interleaved, with the same capped frame count
(end-of-speech suppressed, since random weights never say it reliably):

* ``ours``         ``TTSModel.synthesize(text, voice)`` with a Voice made once by ``create_voice``
                   (includes the similarity measurement every result carries);
* ``ours-stream``  ``TTSModel.generate(text, voice, stream=True)`` with the default chunks (first
                   after 4 frames, then every 16), consumed to the end (chunks are decoded while
                   the worker thread keeps generating);
* ``plain``        ``Qwen3TTSModel.generate_voice_clone(text, ref_audio=..., ref_text=...)``, the
                   documented one-call usage (the voice prompt is rebuilt on every call);
* ``plain+prompt`` ``generate_voice_clone(text, voice_clone_prompt=items)`` with the prompt from
                   ``create_voice_clone_prompt`` built once (the best the plain API can do).

Reported per run: codec frames per second of wall time, real-time factor (wall time / audio
duration; < 1 is faster than real time), time to first audio (from the call to the first
audio handed to the caller: the whole call for the non-streaming paths), the peak resident
memory of the process during the run (Linux VmHWM, reset before each run), and each path's
wall time relative to ``plain`` (median of the per-rep ratios; the paths of a rep run back
to back). Results go to stdout and to ``--out``, with the machine's
``uptime`` load before and after (other work on a shared machine skews CPU timings).

Usage::

    .venv/bin/python bench/bench_synthesis.py --sizes 0.6b 1.7b --frames 24 --reps 3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
from _benchlib import cpu_model  # noqa: E402
from build_full_size import build_full_size  # noqa: E402

from personalization_engine.audio_io import load_audio  # noqa: E402
from personalization_engine.rates import FRAMES_PER_S, SAMPLES_PER_FRAME, TTS_SAMPLE_RATE  # noqa: E402
from personalization_engine.tts.runtime import fixed_min_frames, import_qwen_tts  # noqa: E402

VOICES = REPO.parent / "shared" / "data" / "voices"
REF = VOICES / "LJ001-0004.flac"
REF_TEXT = "produced the block books, which were the immediate predecessors of the true printed book,"
TEXT = "Please call Stella and ask her to bring these things with her from the store."
FPS = FRAMES_PER_S
PATHS = ("ours", "ours-stream", "plain", "plain+prompt")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["0.6b", "1.7b"], choices=["0.6b", "1.7b"])
    p.add_argument("--modes", nargs="+", default=["icl", "xvector"], choices=["icl", "xvector"])
    p.add_argument("--frames", type=int, default=24, help="codec frames per run (12.5 per second of audio)")
    p.add_argument("--reps", type=int, default=3, help="timed runs per path (after one warm-up)")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS), help="paths to time")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bench_synthesis_cpu.txt")
    p.add_argument("--append", action="store_true", help="append to --out instead of replacing it")
    args = p.parse_args(argv)

    import_qwen_tts()  # quietly, before anything else imports it
    lines = _header(argv)
    _emit(lines, f"{'model':6s} {'mode':8s} {'path':13s} {'frames':>6s} {'wall_s':>8s} {'frames/s':>9s} {'RTF':>7s} "
                 f"{'TTFA_s':>7s} {'peak_GB':>8s} {'x_plain':>7s}")
    ref_samples, ref_sr = load_audio(REF, sample_rate=TTS_SAMPLE_RATE)
    for size in args.sizes:
        t0 = time.perf_counter()
        model = build_full_size(size)
        _emit(lines, f"# {size}: random-weight model built in {time.perf_counter() - t0:.0f} s")
        for mode in args.modes:
            _bench_mode(model, size, mode, (ref_samples, ref_sr), args, lines)
        model.close()
        del model
    _emit(lines, f"# load after: {_load()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a" if args.append else "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n\n")
    print(f"written to {args.out}")
    return 0


def _bench_mode(model: Any, size: str, mode: str, ref: tuple[np.ndarray, int], args: argparse.Namespace,
                lines: list[str]) -> None:
    n = args.frames
    transcript = REF_TEXT if mode == "icl" else None
    t0 = time.perf_counter()
    voice = model.create_voice(ref, transcript=transcript, analyze=False)
    _emit(lines, f"# {size} {mode}: create_voice (once) {time.perf_counter() - t0:.2f} s")
    qwen = model._qwen
    plain_kwargs: dict[str, Any] = {"ref_text": transcript} if transcript else {"x_vector_only_mode": True}
    items = qwen.create_voice_clone_prompt(ref_audio=ref, x_vector_only_mode=transcript is None, **(
        {"ref_text": transcript} if transcript else {}))

    def ours(frames: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        r = model.synthesize(TEXT, voice, seed=0, max_new_frames=frames, _min_new_frames=frames)
        return r.frames, time.perf_counter() - t0

    def ours_stream(frames: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        first, total = None, 0
        for chunk in model.generate(TEXT, voice, seed=0, max_new_frames=frames, _min_new_frames=frames, stream=True):
            first = time.perf_counter() - t0 if first is None else first
            total += chunk.frames
        return total, float(first)

    def plain(frames: int) -> tuple[int, float]:
        return _plain_run(qwen, frames, lambda **kw: qwen.generate_voice_clone(
            TEXT, language="Auto", ref_audio=ref, **plain_kwargs, **kw))

    def plain_prompt(frames: int) -> tuple[int, float]:
        return _plain_run(qwen, frames, lambda **kw: qwen.generate_voice_clone(
            TEXT, language="Auto", voice_clone_prompt=items, **kw))

    every = {"ours": ours, "ours-stream": ours_stream, "plain": plain, "plain+prompt": plain_prompt}
    paths = [(name, every[name]) for name in PATHS if name in args.paths]
    for _, run in paths:  # warm-up: first-call allocations and kernel selection
        run(2)
    timings: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in paths}
    for _ in range(args.reps):
        for name, run in paths:  # interleaved, so background load hits every path alike
            _reset_peak_rss()
            t0 = time.perf_counter()
            frames, ttfa = run(n)
            wall = time.perf_counter() - t0
            if frames != n:
                raise RuntimeError(f"{name} produced {frames} frames, expected {n}")
            timings[name].append((wall, ttfa, _peak_rss_gb()))
            print(f"#   {size} {mode} {name}: {wall:.2f} s, first audio {ttfa:.2f} s (load {_load()})", flush=True)
    plain_walls = [w for w, _, _ in timings.get("plain", [])]
    for name, runs in timings.items():
        wall = statistics.median(w for w, _, _ in runs)
        ttfa = statistics.median(t for _, t, _ in runs)
        peak = max(m for _, _, m in runs)
        # Paired: run i of every path ran back to back, so the ratio cancels drifting load.
        # (strict=False: a path that failed part-way has fewer runs; the paired ones still compare)
        pairs = zip(runs, plain_walls, strict=False)
        ratio = statistics.median(w / p for (w, _, _), p in pairs) if plain_walls else float("nan")
        _emit(lines, f"{size:6s} {mode:8s} {name:13s} {n:6d} {wall:8.2f} {n / wall:9.2f} {wall / (n / FPS):7.2f} "
                     f"{ttfa:7.2f} {peak:8.2f} {ratio:7.2f}")
    _emit(lines, f"# {size} {mode}: load now {_load()}")


def _plain_run(qwen: Any, frames: int, call: Callable[..., tuple[list[np.ndarray], int]]) -> tuple[int, float]:
    """One plain qwen-tts call with the same sampling seed and fixed frame count as ours."""
    import torch

    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]), fixed_min_frames(qwen.model.talker, frames):
        torch.manual_seed(0)
        wavs, sr = call(max_new_tokens=frames + 1)
    return int(round(len(wavs[0]) / SAMPLES_PER_FRAME)), time.perf_counter() - t0  # no audio before the end


def _header(argv: list[str] | None) -> list[str]:
    from importlib.metadata import version

    import torch
    import transformers

    cmd = " ".join([".venv/bin/python", "bench/bench_synthesis.py"] + (argv if argv is not None else sys.argv[1:]))
    return [
        "# bench_synthesis: full-size random-weight Qwen3-TTS, CPU, float32",
        f"# command: {cmd}",
        f"# date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"# cpu: {cpu_model()} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}); "
        f"python {platform.python_version()}",
        f"# torch {torch.__version__}, transformers {transformers.__version__}, qwen-tts {version('qwen-tts')}",
        f"# text: {TEXT!r}; reference: {REF.name}",
        f"# OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; load before: {_load()}",
        "# wall_s, TTFA_s: medians of the timed runs; RTF = wall_s / audio duration; TTFA_s = time to first audio "
        "(the whole call unless streaming); peak_GB: process VmHWM during a run; x_plain = median over the reps of "
        "wall / plain's wall in the same rep (paired)",
    ]


def _load() -> str:
    """The 1/5/15-minute load averages (``uptime``), and the cores they compare to."""
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3]) + f" on {os.cpu_count()} cores"
    return "unknown"



def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (Linux: write 5 to /proc/self/clear_refs)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_gb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e9
    from personalization_engine.tts.runtime import process_peak_rss_gb

    return process_peak_rss_gb()


def _emit(lines: list[str], line: str) -> None:
    lines.append(line)
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
