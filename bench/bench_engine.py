"""Decode-loop speed: our loop (``tts.engine``) vs plain qwen-tts ``generate``, same process, same weights.

Only the talker + code predictor are timed (no codec decoder, no similarity): from the same
generate inputs (x-vector voice from a real reference clip, one English sentence), each path
makes exactly ``--frames`` frames (end of speech held off), with the checkpoint's sampling
defaults and a seed. Reported: ms per frame for both paths and their ratio, and for our loop
the prefill, the talker step (forward + sampling) and the code predictor's 15 codes per frame
separately (medians over the frames). Reps alternate the two paths; ``uptime`` load is printed
before and after (the machine is shared: compare numbers of one run only).

Usage (needs a saved checkpoint, ``bench/build_full_size.py 0.6b --save DIR``)::

    .venv/bin/python bench/bench_engine.py /work/cache/full-0.6b --frames 50 --reps 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

REF = REPO.parent / "shared" / "data" / "voices" / "LJ001-0004.flac"
TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away into the woods."


def _uptime() -> str:
    try:
        return "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "load unknown"


def _plain(qwen: Any, inputs: dict[str, Any], frames: int, seed: int) -> float:
    import torch

    from personalization_engine.tts.runtime import fixed_min_frames, seeded

    kwargs = qwen._merge_generate_kwargs(max_new_tokens=frames + 1)
    t0 = time.perf_counter()
    with torch.inference_mode(), fixed_min_frames(qwen.model.talker, frames), seeded(seed, 0, "cpu"):
        codes, _ = qwen.model.generate(**inputs, **kwargs)
    elapsed = time.perf_counter() - t0
    assert codes[0].shape[0] == frames, codes[0].shape
    return elapsed


def _ours(qwen: Any, decoder: Any, inputs: dict[str, Any], frames: int, seed: int) -> tuple[float, Any]:
    from personalization_engine.tts.engine import DecodeStats
    from personalization_engine.tts.prompt import prompt_from_generate_kwargs
    from personalization_engine.tts.sampling import SamplingConfig

    stats = DecodeStats()
    t0 = time.perf_counter()
    prompt = prompt_from_generate_kwargs(qwen.model, inputs)
    config = SamplingConfig.from_generate_kwargs(qwen._merge_generate_kwargs())
    n = sum(1 for _ in decoder.frames(prompt, config, max_frames=frames, min_new_tokens=frames + 1, seed=seed,
                                      stats=stats))
    elapsed = time.perf_counter() - t0
    assert n == frames, n
    return elapsed, stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)

    import torch

    from personalization_engine.audio_io import load_audio
    from personalization_engine.tts.engine import Decoder
    from personalization_engine.tts.runtime import import_qwen_tts

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{_uptime()} | torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    qwen = import_qwen_tts().Qwen3TTSModel.from_pretrained(str(args.model_dir), dtype=torch.float32)
    qwen.model.eval()
    qwen.model.talker.generation_config.pad_token_id = qwen.model.config.talker_config.codec_eos_token_id
    clip = load_audio(REF, sample_rate=24_000)
    items = qwen.create_voice_clone_prompt(ref_audio=(clip.samples, clip.sample_rate), x_vector_only_mode=True)
    inputs = {"input_ids": qwen._tokenize_texts([qwen._build_assistant_text(TEXT)]),
              "voice_clone_prompt": qwen._prompt_items_to_voice_clone_prompt(items), "languages": ["english"],
              "non_streaming_mode": False, "ref_ids": [None]}
    decoder = Decoder(qwen.model)
    _ours(qwen, decoder, inputs, 2, 0)  # warm-up (allocator, kernels)
    plain_s: list[float] = []
    ours_s: list[float] = []
    stats: list[Any] = []
    for rep in range(args.reps):
        plain_s.append(_plain(qwen, inputs, args.frames, rep))
        t, st = _ours(qwen, decoder, inputs, args.frames, rep)
        ours_s.append(t)
        stats.append(st)
        print(f"rep {rep}: plain {1e3 * plain_s[-1] / args.frames:.1f} ms/frame, "
              f"ours {1e3 * t / args.frames:.1f} ms/frame | {_uptime()}")
    f = args.frames
    best = min(range(args.reps), key=lambda i: ours_s[i])
    st = stats[best]
    talker_ms = 1e3 * st.talker_s / max(1, st.talker_steps)
    predictor_ms = 1e3 * st.predictor_s / max(1, st.frames)
    print(f"frames {f}, prompt {st.prompt_len} positions, fp32, x-vector")
    print(f"plain qwen-tts: {1e3 * min(plain_s) / f:.1f} ms/frame (best of {args.reps})")
    print(f"ours:           {1e3 * min(ours_s) / f:.1f} ms/frame (best of {args.reps}); "
          f"plain/ours = {min(plain_s) / min(ours_s):.2f}x")
    print(f"  prefill {1e3 * st.prefill_s:.0f} ms; talker step {talker_ms:.1f} ms (mean); "
          f"code predictor {predictor_ms:.1f} ms per frame (15 codes, mean); "
          f"median step {1e3 * statistics.median(st.step_times_s):.1f} ms")
    print(f"{_uptime()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
