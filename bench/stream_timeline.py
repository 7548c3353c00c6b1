"""Where a streamed line's time goes: when each frame is made, when the codec decoder is busy.

One model, loaded once; each round streams the bench sentence (``bench_synthesis.py``'s text,
reference clip, seed and frame cap) and records, without changing what runs, the time each frame
leaves the decode loop (``tts.engine.Decoder.frames``) and the start, end and size of each codec
call (``tts.stream.ChunkDecoder.decode``), both wrapped for timing only. Reported per round: wall
time and RTF, the first and last frame, the median gap between frames (generation's pace while the
decoder runs beside it), the decoder's busy time (wall, and the CPU time of the thread that ran it:
less than wall when that thread waited for a core) and chunk sizes, and the tail (from the last
frame to the end of the line).

    .venv/bin/python bench/stream_timeline.py --quant int4 --out bench/results/stream_timeline.txt
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_synthesis import TEXT, _load, in_process_setup  # noqa: E402  (also puts the checkout on sys.path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="0.6b", choices=["0.6b", "1.7b"])
    p.add_argument("--quant", default="int4", choices=["int4", "int8", "bf16"])
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--checkpoint", type=Path, help="default /work/cache/full-SIZE")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)

    from personalization_engine.rates import FRAMES_PER_S
    from personalization_engine.tts import engine, stream

    lines, model, reference = in_process_setup("bench/stream_timeline.py", argv, args.size, args.quant,
                                               args.checkpoint)
    voice = model.create_voice(reference, analyze=False)

    frame_times: list[float] = []
    calls: list[tuple[float, float, int, float]] = []
    frames_of, decode_of = engine.Decoder.frames, stream.ChunkDecoder.decode

    def frames(self: Any, *a: Any, **k: Any) -> Any:
        for frame in frames_of(self, *a, **k):
            frame_times.append(time.perf_counter())
            yield frame

    def decode(self: Any, codes: Any) -> Any:
        t, cpu = time.perf_counter(), time.thread_time()
        out = decode_of(self, codes)
        calls.append((t, time.perf_counter(), int(codes.shape[0]), time.thread_time() - cpu))
        return out

    engine.Decoder.frames, stream.ChunkDecoder.decode = frames, decode  # type: ignore[method-assign]
    audio_s = args.frames / FRAMES_PER_S
    try:
        for rep in range(args.reps + 1):  # the first round warms up
            frame_times.clear()
            calls.clear()
            t0 = time.perf_counter()
            for _ in model.generate(TEXT, voice, stream=True, seed=0, max_new_frames=args.frames,
                                    _min_new_frames=args.frames):
                pass
            wall = time.perf_counter() - t0
            if rep == 0:
                continue
            gaps = [b - a for a, b in zip(frame_times, frame_times[1:], strict=False)]
            busy = sum(end - start for start, end, _, _ in calls)
            busy_cpu = sum(cpu for *_, cpu in calls)
            first, last, pace = frame_times[0] - t0, frame_times[-1] - t0, 1000 * statistics.median(gaps)
            lines.append(
                f"{args.size} {args.quant} round {rep}: wall {wall:.2f} s, RTF {wall / audio_s:.2f}; first frame "
                f"{first:.2f} s, last {last:.2f} s, {pace:.0f} ms between frames (median); decoder busy {busy:.2f} s "
                f"({100 * busy / wall:.0f} % of the line; its thread's CPU {busy_cpu:.2f} s) in {len(calls)} calls of "
                f"{[n for _, _, n, _ in calls]} frames; "
                f"tail {wall - last:.2f} s")
    finally:
        engine.Decoder.frames, stream.ChunkDecoder.decode = frames_of, decode_of  # type: ignore[method-assign]
    lines.append(f"# load after {_load()}")
    print("\n".join(lines))
    with args.out.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
