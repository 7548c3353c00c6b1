"""Codec decoder speed: seconds of compute per second of audio, unchanged vs optimized, side by side.

Builds the full-size 12 Hz codec decoder (the one both 0.6B and 1.7B use) from the hub config
in ``../shared/qwen3_tts_configs`` with random, variance-preserving weights (as
``bench/build_full_size.py`` does: no denormals), copies it, applies
:func:`personalization_engine.tts.codec.optimize_decoder` to the copy, and times both on the same
random codes in the same process, alternating, best of ``--reps``. Reports wall time with the
process's threads (the machine's cores) and the CPU time of one thread (less sensitive to other
processes on a shared machine), the one-shot max abs difference, and the same for a streamed
decode (``ChunkDecoder``, 4 then 16 frames).

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
    args = parser.parse_args(argv)
    import numpy as np
    import torch

    from personalization_engine.rates import FRAMES_PER_S, SAMPLES_PER_FRAME
    from personalization_engine.tts.codec import optimize_decoder
    from personalization_engine.tts.stream import ChunkDecoder

    if args.threads:
        torch.set_num_threads(args.threads)
    base = build_decoder()
    fast = copy.deepcopy(base)
    report = optimize_decoder(fast)
    frames = round(args.seconds * FRAMES_PER_S)
    codes = torch.randint(0, 2048, (1, 16, frames), generator=torch.Generator().manual_seed(1))
    res: dict[str, Any] = {"audio_s": frames / FRAMES_PER_S, "threads": torch.get_num_threads(),
                           "report": report.to_dict(), "load_before": os.getloadavg()}
    thread_counts = [torch.get_num_threads()] + ([1] if torch.get_num_threads() > 1 else [])
    wavs: dict[str, Any] = {}
    with torch.inference_mode():
        for threads in thread_counts:  # wall time with all threads; CPU time of one thread
            torch.set_num_threads(threads)
            for name, dec in (("original", base), ("optimized", fast), ("original", base), ("optimized", fast)):
                wall, cpu, wav = _time(lambda d=dec: d(codes), args.reps)
                row = res.setdefault(f"{name}_{threads}t", {"wall_s_per_audio_s": [], "thread_cpu_s_per_audio_s": []})
                row["wall_s_per_audio_s"].append(round(wall / res["audio_s"], 4))
                row["thread_cpu_s_per_audio_s"].append(round(cpu / res["audio_s"], 4))
                wavs[name] = wav
                print(f"{name:10s} {threads} thread(s): wall {wall / res['audio_s']:.3f} s/s, "
                      f"thread cpu {cpu / res['audio_s']:.3f} s/s", flush=True)
        streamed = {}
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for name, dec in (("original", base), ("optimized", fast)):
                w0, c0 = time.perf_counter(), time.thread_time()
                streamed[name] = _stream(ChunkDecoder(dec, SAMPLES_PER_FRAME, 100), codes[0].t())
                row = res.setdefault(f"stream_{name}_{threads}t", {})
                row["wall_s_per_audio_s"] = round((time.perf_counter() - w0) / res["audio_s"], 4)
                row["thread_cpu_s_per_audio_s"] = round((time.thread_time() - c0) / res["audio_s"], 4)
                print(f"streamed {name:10s} {threads} thread(s): wall {row['wall_s_per_audio_s']:.3f} s/s, "
                      f"thread cpu {row['thread_cpu_s_per_audio_s']:.3f} s/s", flush=True)
        torch.set_num_threads(thread_counts[0])
        res["stream_max_abs_diff_vs_original_one_shot"] = float(
            np.abs(streamed["optimized"] - wavs["original"][0, 0].numpy()).max())
    res["max_abs_diff"] = float((wavs["original"] - wavs["optimized"]).abs().max())
    res["load_after"] = os.getloadavg()
    print(f"max abs diff {res['max_abs_diff']:.2e}; load {res['load_before']} -> {res['load_after']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
