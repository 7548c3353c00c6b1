"""Speed levers side by side in ONE process, alternating (a shared machine's load drifts).

One model (``load_model(DIR, device="cpu", quant=MODE)``), one x-vector voice, 50-frame
streamed lines (seed 0, end of speech held off), in rounds; each round runs every variant once:

* ``overlap``      ``tts.stream.OVERLAP_DECODE``: generation on a worker thread, chunks decoded
                   on the caller's thread, one torch thread each;
* ``serial-2t``    generation then decode of each chunk on one thread, 2 torch threads;
* ``serial-1t``    the same with 1 torch thread;
* ``frames-2t`` / ``frames-1t``  the decode loop alone (one-shot frames, no codec): lever (b).

Usage::

    .venv/bin/python bench/bench_levers.py --quant int4 --frames 50 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from personalization_engine.rates import FRAMES_PER_S, TTS_SAMPLE_RATE  # noqa: E402

REF = REPO.parent / "shared" / "data" / "voices" / "LJ001-0004.flac"
TEXT = "Please call Stella and ask her to bring these things with her from the store."


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=Path("/work/cache/full-0.6b"))
    p.add_argument("--quant", default="int4")
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=["overlap", "serial-2t", "serial-1t", "frames-2t", "frames-1t"])
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bench_levers.txt")
    args = p.parse_args(argv)

    import torch

    from personalization_engine.audio_io import load_audio
    from personalization_engine.tts import stream
    from personalization_engine.tts.model import load_model

    model = load_model(str(args.checkpoint), device="cpu", quant=args.quant)
    voice = model.create_voice(load_audio(REF, sample_rate=TTS_SAMPLE_RATE), analyze=False)
    n = args.frames

    def streamed(frames: int) -> float:
        t0, first = time.perf_counter(), None
        for _chunk in model.generate(TEXT, voice, seed=0, max_new_frames=frames, _min_new_frames=frames, stream=True):
            first = time.perf_counter() - t0 if first is None else first
        return float(first or 0.0)

    def frames_only(frames: int) -> float:
        plan = model._plan(TEXT, model_options(frames))
        inputs = model._clone_inputs(plan.segments[0].text, plan.language, prompt=model._prompt_for(voice))
        for _frame in model._segment_frames(inputs, plan, frames, 0):
            pass
        return 0.0

    def model_options(frames: int):  # type: ignore[no-untyped-def]
        from personalization_engine.tts.options import GenerateOptions

        return GenerateOptions(seed=0, max_new_frames=frames, min_new_frames=frames)

    def variant(name: str):  # type: ignore[no-untyped-def]
        kind, _, threads = name.partition("-")
        def run(frames: int) -> float:
            stream.OVERLAP_DECODE = kind == "overlap"
            count = int(threads[0]) if threads else 1
            torch.set_num_threads(count)
            model.loop_threads = count  # the decode loop's own count (tts.engine.Decoder.threads)
            if model._decoder is not None:
                model._decoder.threads = count
            try:
                return (frames_only if kind == "frames" else streamed)(frames)
            finally:
                torch.set_num_threads(2)
                stream.OVERLAP_DECODE = True
        return run

    runs = {name: variant(name) for name in args.variants}
    for run in runs.values():
        run(2)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            ttfa = run(n)
            times[name].append((time.perf_counter() - t0, ttfa))
            print(f"# {name}: {times[name][-1][0]:.2f} s ({_load()})", flush=True)
    lines = [f"# bench_levers: {args.checkpoint.name} quant {args.quant}, {n} frames, {args.rounds} rounds, "
             f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}", "# command: .venv/bin/python bench/bench_levers.py "
             + " ".join(argv if argv is not None else sys.argv[1:]), f"# load after: {_load()}",
             f"{'variant':10s} {'wall_s':>7s} {'RTF':>6s} {'TTFA_s':>6s}  all walls"]
    for name, ts in times.items():
        wall = statistics.median(w for w, _ in ts)
        ttfa = statistics.median(t for _, t in ts)
        lines.append(f"{name:10s} {wall:7.2f} {wall / (n / FRAMES_PER_S):6.2f} {ttfa:6.2f}"
                     f"  {' '.join(f'{w:.2f}' for w, _ in ts)}")
    print("\n".join(lines))
    with args.out.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n\n")
    return 0


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


if __name__ == "__main__":
    sys.exit(main())
