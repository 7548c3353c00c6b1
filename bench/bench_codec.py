"""Codec decoder speed: seconds of compute per second of audio, unchanged vs optimized, side by side.

Builds the full-size 12 Hz codec decoder (the one both 0.6B and 1.7B use) from the hub config
in ``../shared/qwen3_tts_configs`` with random, variance-preserving weights (as
``bench/build_full_size.py`` does: no denormals), copies it, applies
:func:`personalization_engine.tts.codec.optimize_decoder` to the copy, and times both on the same
random codes in the same process, alternating, best of ``--reps``. Reports wall time with the
process's threads (the machine's cores) and the CPU time of one thread (less sensitive to other
processes on a shared machine), the one-shot max abs difference, and the same for a streamed
decode (``ChunkDecoder``, 4 then 16 frames). ``optimized`` has its k=7 convs as Winograd
(``winograd=True``); a third decoder, ``direct``, is optimized with ``winograd=False`` (its k=7
convs stay direct convolutions): the A/B of the Winograd convs. ``default_k7`` in the JSON says
which of the two ``load_model`` uses on this CPU (``tts.codec.winograd_pays``).

    .venv/bin/python bench/bench_codec.py --seconds 4 --json bench/results/codec.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CONFIG = REPO.parent / "shared" / "qwen3_tts_configs" / "Qwen3-TTS-12Hz-0.6B-Base" / "speech_tokenizer" / "config.json"


def build_decoder(seed: int = 0) -> Any:
    """The full-size codec decoder with random variance-preserving weights (float32, CPU)."""
    import torch
    from qwen_tts.core.tokenizer_12hz.configuration_qwen3_tts_tokenizer_v2 import (
        Qwen3TTSTokenizerV2DecoderConfig,
    )
    from qwen_tts.core.tokenizer_12hz.modeling_qwen3_tts_tokenizer_v2 import (
        Qwen3TTSTokenizerV2Decoder,
    )

    from personalization_engine.tts import tiny as _qwen_tiny

    cfg = json.loads(CONFIG.read_text())["decoder_config"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dec = Qwen3TTSTokenizerV2Decoder(Qwen3TTSTokenizerV2DecoderConfig(**cfg)).eval()
        shell = types.SimpleNamespace(decoder=dec, config=types.SimpleNamespace(decoder_config=dec.config))
        _qwen_tiny.randomize_codebooks(dec)
        _qwen_tiny.rescale_codec_decoder(shell)
    return dec


def _time(fn: Any, reps: int) -> tuple[float, float, Any]:
    """Best wall time and best thread CPU time of ``reps`` calls (after one warm-up), last result."""
    out = fn()
    wall, cpu = float("inf"), float("inf")
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.thread_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.thread_time() - c0)
    return wall, cpu, out


def _stream(chunker: Any, codes: Any) -> Any:
    """Decode ``codes`` (frames, 16) as the adapter streams: 4 frames, then 16 at a time."""
    import numpy as np

    parts, start, n = [], 0, 4
    while start < codes.shape[0]:
        parts.append(chunker.decode(codes[start:start + n]))
        start, n = start + n, 16
    return np.concatenate(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="audio length to decode (s)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--allocator", choices=["kept", "glibc"], default="kept",
                        help="freed memory kept for reuse, as load_model does on CPU (default), or glibc's defaults "
                             "(run in a fresh process: its own threshold adjustment)")
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    from personalization_engine.rates import FRAMES_PER_S, SAMPLES_PER_FRAME
    from personalization_engine.tts.codec import optimize_decoder, winograd_pays
    from personalization_engine.tts.runtime import keep_freed_memory
    from personalization_engine.tts.stream import ChunkDecoder

    if args.allocator == "kept":  # "glibc": untouched, glibc's own (adaptive) thresholds
        keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    base = build_decoder()
    decoders = {"original": base, "direct": copy.deepcopy(base), "optimized": copy.deepcopy(base)}
    optimize_decoder(decoders["direct"], winograd=False)
    report = optimize_decoder(decoders["optimized"], winograd=True)
    frames = round(args.seconds * FRAMES_PER_S)
    codes = torch.randint(0, 2048, (1, 16, frames), generator=torch.Generator().manual_seed(1))
    res: dict[str, Any] = {"audio_s": frames / FRAMES_PER_S, "threads": torch.get_num_threads(),
                           "allocator": args.allocator,
                           "report": report.to_dict(), "load_before": os.getloadavg(),
                           "default_k7": "winograd" if winograd_pays() else "direct",
                           "cpu_capability": str(torch.backends.cpu.get_cpu_capability())}
    thread_counts = [torch.get_num_threads()] + ([1] if torch.get_num_threads() > 1 else [])
    wavs: dict[str, Any] = {}
    streamed: dict[str, Any] = {}

    def record(key: str, wall: float, cpu: float) -> None:
        row = res.setdefault(key, {"wall_s_per_audio_s": [], "thread_cpu_s_per_audio_s": []})
        row["wall_s_per_audio_s"].append(round(wall / res["audio_s"], 4))
        row["thread_cpu_s_per_audio_s"].append(round(cpu / res["audio_s"], 4))
        print(f"{key:22s} wall {wall / res['audio_s']:.3f} s/s, thread cpu {cpu / res['audio_s']:.3f} s/s", flush=True)

    with torch.inference_mode():
        for threads in thread_counts:  # wall time with all threads; CPU time of one thread
            torch.set_num_threads(threads)
            for _ in range(2):  # two alternating passes over the decoders
                for name, dec in decoders.items():
                    wall, cpu, wavs[name] = _time(lambda d=dec: d(codes), args.reps)
                    record(f"{name}_{threads}t", wall, cpu)
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for _ in range(args.reps):
                for name, dec in decoders.items():
                    w0, c0 = time.perf_counter(), time.thread_time()
                    streamed[name] = _stream(ChunkDecoder(dec, SAMPLES_PER_FRAME, 100), codes[0].t())
                    record(f"stream_{name}_{threads}t", time.perf_counter() - w0, time.thread_time() - c0)
        torch.set_num_threads(thread_counts[0])
        for name in ("direct", "optimized"):
            res[f"stream_max_abs_diff_{name}_vs_original_one_shot"] = float(
                np.abs(streamed[name] - wavs["original"][0, 0].numpy()).max())
            res[f"max_abs_diff_{name}"] = float((wavs["original"] - wavs[name]).abs().max())
    res["peak_abs_original"] = float(wavs["original"].abs().max())
    res["load_after"] = os.getloadavg()
    print(f"max abs diff: direct {res['max_abs_diff_direct']:.2e}, optimized {res['max_abs_diff_optimized']:.2e} "
          f"(peak {res['peak_abs_original']:.2f}); load {res['load_before']} -> {res['load_after']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
