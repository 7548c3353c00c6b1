"""Synthesis speed on saved full-size random-weight checkpoints: our path per quant mode vs plain qwen-tts.

Each path runs in a fresh child process (peak RSS is a process high-water mark, it never goes
down), on the same checkpoint (``--checkpoint DIR``, default ``/work/cache/full-SIZE``, written by
``bench/build_full_size.py SIZE --save DIR``), with the same capped frame count (end of speech
held off: random weights never say it reliably):

* ``ours:MODE``  ``load_model(DIR, device="cpu", quant=MODE)``, a voice made once by
                 ``create_voice`` (x-vector or ICL), then ``generate(text, voice, stream=True,
                 seed=0, max_new_frames=N, _min_new_frames=N)`` consumed to the end: our decode
                 loop, chunks decoded by the streaming codec decoder while the loop makes the next
                 ones (``tts.stream.OVERLAP_DECODE``; ``--no-overlap`` adds the same path with
                 generation and decoding one after the other, for the side-by-side;
                 ``--no-helper`` adds it with the decode step's helper thread off, ``--fixed-chunks``
                 with ``adaptive_chunks=False``);
* ``plain``      ``Qwen3TTSModel.from_pretrained(DIR, dtype=float32)`` and
                 ``generate_voice_clone(text, ref_audio=..., ref_text=... | x_vector_only_mode=True)``
                 (the documented one-call usage; no streaming, so its first audio is its whole call),
                 frames fixed with ``tts.runtime.fixed_min_frames``.

Reported per path: RTF (wall time / audio duration; < 1 is faster than real time), time to first
audio (from the call to the first chunk handed to the caller), codec frames per second of wall
time, peak RSS of the child (VmHWM: loading included), x_plain (plain's median wall / this
path's, same size and voice mode: the speed-up), and per child the codec decoder alone
(``ChunkDecoder``, 4 then 16-frame chunks, one thread: seconds of compute per second of audio).
Medians over ``--reps`` timed runs (plain: ``--plain-reps``) after one warm-up. The children run
one after the other; each records the machine's ``uptime`` load before and after (other work on a
shared machine skews CPU timings). Text goes to ``--out``, everything as JSON to ``--json``.

Usage::

    .venv/bin/python bench/bench_synthesis.py --sizes 0.6b --quant int4 int8 bf16 --modes xvector \\
        --frames 50 --json bench/results/bench_synthesis.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _benchlib import cpu_model  # noqa: E402

from personalization_engine.rates import FRAMES_PER_S, SAMPLES_PER_FRAME, TTS_SAMPLE_RATE  # noqa: E402

VOICES = REPO.parent / "shared" / "data" / "voices"
REF = VOICES / "LJ001-0004.flac"
REF_TEXT = "produced the block books, which were the immediate predecessors of the true printed book,"
TEXT = "Please call Stella and ask her to bring these things with her from the store."
QUANTS = ("int4", "int8", "bf16", "none", "auto")
COLUMNS = (f"{'model':6s} {'mode':8s} {'path':16s} {'frames':>6s} {'wall_s':>7s} {'RTF':>6s} {'TTFA_s':>6s} "
           f"{'frames/s':>8s} {'peak_GB':>7s} {'x_plain':>7s} {'codec_s/s':>9s}  load before -> after")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["0.6b"], choices=["0.6b", "1.7b"])
    p.add_argument("--quant", nargs="*", default=["int4", "int8", "bf16"], choices=QUANTS,
                   help="our path once per mode (each in its own process); none given: plain only")
    p.add_argument("--modes", nargs="+", default=["xvector"], choices=["xvector", "icl"])
    p.add_argument("--frames", type=int, default=50, help="codec frames per run (12.5 per second of audio)")
    p.add_argument("--reps", type=int, default=3, help="timed runs per path (after one warm-up)")
    p.add_argument("--plain-reps", type=int, default=1, help="timed runs of plain qwen-tts (slow: 1 by default)")
    p.add_argument("--checkpoint", type=Path, help="saved checkpoint (one size only); default /work/cache/full-SIZE")
    p.add_argument("--no-plain", action="store_true", help="skip plain qwen-tts")
    p.add_argument("--no-overlap", action="store_true", help="also run each mode with decoding not overlapped")
    p.add_argument("--no-helper", action="store_true",
                   help="also run each quant mode with the decode helper thread off (_native.decode_helper(False))")
    p.add_argument("--fixed-chunks", action="store_true",
                   help="also run each mode with fixed-size later chunks (adaptive_chunks=False)")
    p.add_argument("--first-chunk", type=int, nargs="*", default=[],
                   help="also run each mode with these first-chunk sizes (frames; default FIRST_CHUNK_FRAMES, 1)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bench_synthesis_cpu.txt")
    p.add_argument("--json", type=Path, help="write every measurement here as JSON")
    p.add_argument("--append", action="store_true", help="append to --out instead of replacing it")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: one path, JSON on the last stdout line
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args)), flush=True)
        return 0
    if args.checkpoint and len(args.sizes) > 1:
        p.error("--checkpoint names one checkpoint: give one --sizes")

    lines = _header(argv)
    runs: list[dict[str, Any]] = []
    _emit(lines, COLUMNS)
    for size in args.sizes:
        folder = args.checkpoint or Path(f"/work/cache/full-{size}")
        for mode in args.modes:
            paths = ([] if args.no_plain else ["plain"]) + [f"ours:{q}" for q in args.quant]
            paths += [f"ours:{q}:serial" for q in args.quant] if args.no_overlap else []
            paths += [f"ours:{q}:first{n}" for q in args.quant for n in args.first_chunk]
            paths += [f"ours:{q}:fixed" for q in args.quant] if args.fixed_chunks else []
            paths += [f"ours:{q}:nohelper" for q in args.quant] if args.no_helper else []
            results = [_spawn(path, size, mode, folder, args) for path in paths]
            plain = next((r for r in results if r.get("path") == "plain" and "error" not in r), None)
            for r in results:
                r["x_plain"] = plain["wall_s"] / r["wall_s"] if plain and "wall_s" in r else None
                runs.append(r)
                _emit(lines, _row(r))
    _emit(lines, f"# load after: {_load()}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a" if args.append else "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"header": lines[:8], "runs": runs}, indent=1) + "\n", encoding="utf-8")
    print(f"written to {args.out}" + (f" and {args.json}" if args.json else ""))
    return 0


def _spawn(path: str, size: str, mode: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One path in a fresh interpreter; its JSON (or the error it died with)."""
    reps = args.plain_reps if path == "plain" else args.reps
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", path, "--sizes", size, "--modes", mode,
           "--frames", str(args.frames), "--reps", str(reps), "--checkpoint", str(folder)]
    print(f"# running {path} {size} {mode} (load {_load()})", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return dict(json.loads(line))
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"path": path, "size": size, "mode": mode, "error": f"exit {proc.returncode}: {' | '.join(tail)}"}


def _child(args: argparse.Namespace) -> dict[str, Any]:
    """Load, warm up, time ``--reps`` runs of one path; everything as a dict."""
    import numpy as np
    import torch

    from personalization_engine.audio_io import load_audio
    from personalization_engine.tts.runtime import import_qwen_tts

    import_qwen_tts()  # quietly, before anything else imports it
    path, size, mode, n = args.child, args.sizes[0], args.modes[0], args.frames
    out: dict[str, Any] = {"path": path, "size": size, "mode": mode, "frames": n, "load_before": _load(),
                           "torch_threads": torch.get_num_threads()}
    samples, sr = load_audio(REF, sample_rate=TTS_SAMPLE_RATE)
    ref = (samples, sr)  # qwen-tts takes a tuple, nothing else
    transcript = REF_TEXT if mode == "icl" else None
    t0 = time.perf_counter()
    if path == "plain":
        run, decoder = _plain(args.checkpoint, ref, transcript, n)
    else:
        run, decoder = _ours(path, args.checkpoint, ref, transcript, n)
    out["load_s"] = time.perf_counter() - t0
    out["rss_after_load_gb"] = _rss_gb("VmRSS:")
    run(2)  # warm-up: first-call allocations and kernel selection
    walls, ttfas = [], []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        frames, ttfa = run(n)
        walls.append(time.perf_counter() - t0)
        ttfas.append(ttfa)
        if frames != n:
            raise RuntimeError(f"{path} produced {frames} frames, expected {n}")
    wall = statistics.median(walls)
    out.update(wall_s=wall, walls_s=walls, ttfa_s=statistics.median(ttfas), rtf=wall / (n / FRAMES_PER_S),
               frames_per_s=n / wall, peak_rss_gb=_rss_gb("VmHWM:"))
    out["codec_s_per_audio_s"] = _codec_cost(decoder, n, np, torch)
    out["load_after"] = _load()
    return out


def _ours(path: str, folder: Path, ref: Any, transcript: str | None, n: int) -> tuple[Any, Any]:
    from personalization_engine.tts import stream
    from personalization_engine.tts.model import load_model

    _, quant, *rest = path.split(":")
    stream.OVERLAP_DECODE = "serial" not in rest
    firsts = [int(r[len("first"):]) for r in rest if r.startswith("first")]
    chunking: dict[str, Any] = {"first_chunk_frames": firsts[-1]} if firsts else {}
    if "fixed" in rest:
        chunking["adaptive_chunks"] = False
    model = load_model(str(folder), device="cpu", quant=quant)
    if "nohelper" in rest:
        from personalization_engine.tts import _native

        _native.decode_helper(False)
    voice = model.create_voice(ref, transcript=transcript, analyze=False)

    def run(frames: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        first, total = None, 0
        for chunk in model.generate(TEXT, voice, seed=0, max_new_frames=frames, _min_new_frames=frames, stream=True,
                                    **chunking):
            first = time.perf_counter() - t0 if first is None else first
            total += chunk.frames
        return total, float(first or 0.0)

    return run, model._qwen.model.speech_tokenizer.model.decoder


def _plain(folder: Path, ref: Any, transcript: str | None, n: int) -> tuple[Any, Any]:
    import torch

    from personalization_engine.tts.runtime import fixed_min_frames, import_qwen_tts

    qwen = import_qwen_tts().Qwen3TTSModel.from_pretrained(str(folder), dtype=torch.float32)
    qwen.model.eval()
    kwargs: dict[str, Any] = {"ref_text": transcript} if transcript else {"x_vector_only_mode": True}

    def run(frames: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]), fixed_min_frames(qwen.model.talker, frames):
            torch.manual_seed(0)
            wavs, _ = qwen.generate_voice_clone(TEXT, language="Auto", ref_audio=ref, max_new_tokens=frames + 1,
                                                **kwargs)
        return int(round(len(wavs[0]) / SAMPLES_PER_FRAME)), time.perf_counter() - t0  # no audio before the end

    return run, qwen.model.speech_tokenizer.model.decoder


def _codec_cost(decoder: Any, n: int, np: Any, torch: Any) -> float:
    """Seconds of one-thread ChunkDecoder compute per second of audio (n random frames, 4 then 16)."""
    from personalization_engine.tts.stream import ChunkDecoder

    codes = torch.randint(0, 2048, (n, 16), generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = float("inf")
        for _ in range(2):
            dec, start, t0 = ChunkDecoder(decoder, SAMPLES_PER_FRAME, 72), 0, time.perf_counter()
            for size in (4, *([16] * n)):
                if start >= n:
                    break
                dec.decode(codes[start:start + size])
                start += size
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    return best / (n / FRAMES_PER_S)


def _row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['size']:6s} {r['mode']:8s} {r['path']:16s} FAILED {r['error']}"
    xp = f"{r['x_plain']:7.2f}" if r.get("x_plain") else f"{'-':>7s}"
    return (f"{r['size']:6s} {r['mode']:8s} {r['path']:16s} {r['frames']:6d} {r['wall_s']:7.2f} {r['rtf']:6.2f} "
            f"{r['ttfa_s']:6.2f} {r['frames_per_s']:8.2f} {r['peak_rss_gb']:7.2f} {xp} "
            f"{r['codec_s_per_audio_s']:9.3f}  {r['load_before']} -> {r['load_after']}")


def _header(argv: list[str] | None) -> list[str]:
    from importlib.metadata import version

    cmd = " ".join([".venv/bin/python", "bench/bench_synthesis.py"] + (argv if argv is not None else sys.argv[1:]))
    return [
        "# bench_synthesis: full-size random-weight Qwen3-TTS on CPU, our streaming path per quant mode vs plain "
        "qwen-tts fp32",
        f"# command: {cmd}",
        f"# date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"# cpu: {cpu_model()} ({os.cpu_count()} logical cores); python {platform.python_version()}",
        f"# torch {version('torch')}, transformers {version('transformers')}, qwen-tts {version('qwen-tts')}",
        f"# text: {TEXT!r}; reference: {REF.name}; seed 0; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}",
        f"# load before (uptime 1/5/15 min): {_load()}",
        "# one fresh process per path; wall_s, TTFA_s: medians of the timed runs; RTF = wall_s / audio duration; "
        "TTFA_s = time to first audio (plain: its whole call); peak_GB: the process' VmHWM, loading included; "
        "x_plain = plain wall / this wall; codec_s/s = ChunkDecoder compute (1 thread) per second of audio",
    ]


def in_process_setup(script: str, argv: list[str] | None, size: str, quant: str,
                     checkpoint: Path | None) -> tuple[list[str], Any, tuple[Any, int]]:
    """For the one-process benches (``bench_stream_ab.py``, ``stream_timeline.py``): their header
    lines (command, time, load), the saved full-size model (``checkpoint``, default
    /work/cache/full-SIZE) loaded with ``quant``, and the reference clip at 24 kHz."""
    from personalization_engine.audio_io import load_audio
    from personalization_engine.rates import TTS_SAMPLE_RATE
    from personalization_engine.tts.model import load_model

    folder = checkpoint or Path(f"/work/cache/full-{size}")
    lines = [f"# {' '.join([script, *(argv if argv is not None else sys.argv[1:])])}",
             f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; load before {_load()}"]
    model = load_model(str(folder), device="cpu", quant=quant)
    samples, sr = load_audio(REF, sample_rate=TTS_SAMPLE_RATE)
    return lines, model, (samples, sr)


def _load() -> str:
    """The 1/5/15-minute load averages (``uptime``), and the cores they compare to."""
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3]) + f" on {os.cpu_count()} cores"
    return "unknown"


def _rss_gb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, GB (Linux); the portable peak elsewhere."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024 / 1e9
    from personalization_engine.tts.runtime import process_peak_rss_gb

    return process_peak_rss_gb()


def _emit(lines: list[str], line: str) -> None:
    lines.append(line)
    print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
