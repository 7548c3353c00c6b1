"""Streamed synthesis, A/B in one process: stream chunk merging and the decode helper thread.

``bench_synthesis.py`` runs each path in a fresh process, and on this shared 2-core machine the
speed of a process drifts by 10-15 % from one start to the next, which hides effects of that size.
This bench loads one model once and runs the combinations of ``tts.stream.MIN_MERGED_FRAMES``
(``--merged``, default 1 and 4; 1: each chunk takes whatever frames are ready) and the decode
helper thread (``tts._native.decode_helper``, ``--helper``, default on and off), and with
``--winograd on off`` the codec decoder's k=7 convs as Winograd or direct (the loaded model's
decoder for the choice this CPU gets by default, a second copy of the checkpoint's decoder
rewritten the other way, ``optimize_decoder(winograd=...)``, swapped in for the other),
with ``--allocator kept glibc`` freed memory kept for reuse (``tts.runtime.keep_freed_memory``)
or glibc's defaults (the page faults of each run are reported too), interleaved, ``--reps`` rounds, and
reports the median RTF and time to first audio of each; then, with ``--one-shot``, the same call
not streamed (generation, then one codec decode) with the helper on and off, interleaved. Same
text, reference clip, seed and frame cap as ``bench_synthesis.py``.

Usage::

    .venv/bin/python bench/bench_stream_ab.py --size 0.6b --quant int4 --mode xvector \\
        --out bench/results/stream_ab.txt --append
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_synthesis import REF_TEXT, TEXT, _load, in_process_setup  # noqa: E402  (also puts the checkout on sys.path)

#: Positions of an ICL prompt's voice prefix that the hub tokenizer would give this reference
#: transcript: the 9 header positions + about 18 text tokens (an estimate, one token per word and
#: punctuation mark; the hub tokenizer cannot be downloaded here). Our small BPE spends 66
#: tokens on it, so with this checkpoint 74 of the 80 prefill positions are the voice's.
HUB_VOICE_PREFIX = 27
#: ICL variants (the x-vector voice is "xvector").
ICL_MODES = {
    "icl": "as the app runs: the voice prefix's keys and values kept between lines (this tokenizer: 74 of 80)",
    "icl-hub": f"the kept prefix cut to the first {HUB_VOICE_PREFIX} positions (the hub tokenizer's share)",
    "icl-whole": "no prefix kept: every line prefills all 80 positions",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="0.6b", choices=["0.6b", "1.7b"])
    p.add_argument("--quant", default="int4", choices=["int4", "int8", "bf16"])
    p.add_argument("--mode", nargs="+", default=["xvector"], choices=["xvector", *ICL_MODES],
                   help="voice modes (several: compared interleaved, e.g. ICL against x-vector); " + ", ".join(
                       f"{k}: {v}" for k, v in ICL_MODES.items()))
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--checkpoint", type=Path, help="default /work/cache/full-SIZE")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "stream_ab.txt")
    p.add_argument("--append", action="store_true")
    p.add_argument("--merged", type=int, nargs="+", default=[1, 4], help="MIN_MERGED_FRAMES values to compare")
    p.add_argument("--helper", nargs="+", default=["on", "off"], choices=["on", "off"])
    p.add_argument("--winograd", nargs="+", default=["on"], choices=["on", "off"],
                   help="codec k=7 convs as Winograd (on) or direct (off: a second decoder swapped in)")
    p.add_argument("--allocator", nargs="+", default=["kept"], choices=["kept", "glibc"],
                   help="freed memory kept for reuse (tts.runtime.keep_freed_memory, the default) or glibc's "
                        "default thresholds as fixed values (its own adjustment of them cannot come back)")
    p.add_argument("--one-shot", action="store_true", help="also time the call not streamed, helper on / off")
    args = p.parse_args(argv)

    from personalization_engine.rates import FRAMES_PER_S
    from personalization_engine.tts import _native, stream
    from personalization_engine.tts.runtime import keep_freed_memory

    lines, model, reference = in_process_setup("bench/bench_stream_ab.py", argv, args.size, args.quant,
                                               args.checkpoint)
    voices = {mode: model.create_voice(reference, transcript=REF_TEXT if mode in ICL_MODES else None, analyze=False)
              for mode in args.mode}

    def run(mode: str, stream_: bool = True) -> tuple[float, float]:
        _voice_prefix(model, mode)
        t0 = time.perf_counter()
        first = None
        for _ in model.generate(TEXT, voices[mode], seed=0, max_new_frames=args.frames,
                                _min_new_frames=args.frames, stream=stream_):
            first = time.perf_counter() - t0 if first is None else first
        return time.perf_counter() - t0, float(first or 0.0)

    holder = model._qwen.model.speech_tokenizer.model
    loaded = "on" if model.codec_report.winograd_convs else "off"
    decoders = {loaded: holder.decoder}
    for other in set(args.winograd) - {loaded}:
        decoders[other] = _other_decoder(model.model_dir, winograd=other == "on")
    for mode in args.mode:
        for wino in args.winograd:
            holder.decoder = decoders[wino]
            run(mode)  # warm-up (an ICL voice also primes the codec with its reference frames)
    combinations = [(mode, merged, helper == "on", wino, alloc) for alloc in args.allocator
                    for wino in args.winograd for helper in args.helper for merged in args.merged for mode in args.mode]
    results: dict[tuple[str, int, bool, str, str], list[tuple[float, float, int]]] = {c: [] for c in combinations}
    for _ in range(args.reps):
        for mode, merged, helper, wino, alloc in combinations:
            stream.MIN_MERGED_FRAMES = merged
            _native.decode_helper(helper)
            holder.decoder = decoders[wino]
            if len(args.allocator) > 1:  # (each switch releases the free heap: the next run faults it in)
                keep_freed_memory(alloc == "kept")
            faults = _minor_faults()
            wall, first = run(mode)
            results[(mode, merged, helper, wino, alloc)].append((wall, first, _minor_faults() - faults))
    holder.decoder = decoders[loaded]
    keep_freed_memory(True)
    audio_s = args.frames / FRAMES_PER_S
    for (mode, merged, helper, wino, alloc), runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        first = statistics.median(r[1] for r in runs)
        codec = f" winograd={wino:3s}" if len(args.winograd) > 1 else ""
        memory = f" allocator={alloc:5s}" if len(args.allocator) > 1 else ""
        lines.append(f"{args.size} {args.quant} {mode} min_merged={merged} helper={'on ' if helper else 'off'}{codec}"
                     f"{memory}: RTF {wall / audio_s:.2f}, first audio {first:.2f} s; walls "
                     f"{[round(r[0], 2) for r in runs]}; page faults {statistics.median(r[2] for r in runs):.0f}")
    if args.one_shot:
        for mode in args.mode:
            walls: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(args.reps):
                for helper in (True, False):
                    _native.decode_helper(helper)
                    walls[helper].append(run(mode, stream_=False)[0])
            for helper, ws in walls.items():
                label = f"{args.size} {args.quant} {mode} one-shot (not streamed) helper={'on ' if helper else 'off'}"
                lines.append(f"{label}: RTF {statistics.median(ws) / audio_s:.2f}; walls {[round(w, 2) for w in ws]}")
    lines.append(f"# load after {_load()}")
    print("\n".join(lines))
    with args.out.open("a" if args.append else "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n\n")
    return 0


def _minor_faults() -> int:
    """Minor page faults of this process so far (0 where unknown)."""
    try:
        import resource
    except ImportError:
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def _voice_prefix(model: Any, mode: str) -> None:
    """Set the decode loop's voice-prefix store for ``mode`` (see :data:`ICL_MODES`)."""
    import dataclasses

    from personalization_engine.tts.engine import Decoder
    from personalization_engine.tts.model import VOICE_PREFIXES

    if model._decoder is None:  # built by the first call
        return
    decoder = model._decoder
    decoder.voice_prefixes = 0 if mode == "icl-whole" else VOICE_PREFIXES
    if mode == "icl-hub":
        decoder.frames = lambda prompt, *a, **k: Decoder.frames(
            decoder, dataclasses.replace(prompt, voice_prefix=min(prompt.voice_prefix, HUB_VOICE_PREFIX)), *a, **k)
    else:
        decoder.__dict__.pop("frames", None)


def _other_decoder(checkpoint: Path, *, winograd: bool) -> Any:
    """A second copy of the checkpoint's codec decoder, its k=7 convs rewritten as Winograd or direct."""
    import torch
    from qwen_tts import Qwen3TTSTokenizer

    from personalization_engine.tts.codec import optimize_decoder

    tokenizer = Qwen3TTSTokenizer.from_pretrained(str(checkpoint / "speech_tokenizer"), device_map="cpu")
    decoder = tokenizer.model.decoder.to(torch.float32).eval()
    optimize_decoder(decoder, winograd=winograd)
    return decoder


if __name__ == "__main__":
    sys.exit(main())
