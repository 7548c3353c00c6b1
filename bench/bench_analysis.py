"""Speed of the prosody analysis on one core, side by side with librosa.pyin (and Praat).

Times the whole Voice-DNA analysis of a real 5 s speech clip (a ``voices/`` clip, trimmed by
``load_audio`` and cut or zero-padded to 5.0 s): ``extract_features`` alone, and
``load_audio`` (validation + trimming of the in-memory array) plus ``extract_features``. For
comparison it times ``librosa.pyin`` at its defaults (same 75-500 Hz search range, which pyin
requires) and, when praat-parselmouth is installed, Praat's ``To Pitch (ac)``. Prints median
milliseconds, times real time and the median F0 each method finds, and writes the same text to
``bench/results/bench_analysis.txt``.

Run from the repository root::

    .venv/bin/python bench/bench_analysis.py [--clip PATH] [--reps 50] [--pyin-reps 3]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import (  # noqa: E402  (before NumPy: the pinning must precede its import)
    CLIP_S,
    DEFAULT_CLIP,
    REPO,
    SR,
    cpu_model,
    five_second_clip,
    limit_threads,
    pin_one_core,
    timed,
)

pin_one_core()

import argparse  # noqa: E402
import platform  # noqa: E402

import numpy as np  # noqa: E402

from personalization_engine.audio_io import load_audio  # noqa: E402
from personalization_engine.feature_extractor import F0_MAX_HZ, F0_MIN_HZ, extract_features  # noqa: E402

#: The budget for the whole analysis of a 5 s clip on one core (ms).
BUDGET_MS = 50.0








def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--pyin-reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bench_analysis.txt")
    args = parser.parse_args()
    threads = limit_threads()

    x = five_second_clip(args.clip)

    rows: list[tuple[str, float, float, float | None]] = []
    ms, best, feats = timed(lambda: extract_features(x, SR), args.reps)
    rows.append(("extract_features", ms, best, feats.pitch.median_hz))
    ms, best, _ = timed(lambda: extract_features(*load_audio(x, sample_rate=SR)), args.reps)
    rows.append(("load_audio(array) + extract_features", ms, best, None))

    import librosa

    def pyin() -> float:
        f0, _, _ = librosa.pyin(x, fmin=F0_MIN_HZ, fmax=F0_MAX_HZ, sr=SR)
        return float(np.nanmedian(f0))

    ms, best, median = timed(pyin, args.pyin_reps)
    name = f"librosa.pyin (defaults, {F0_MIN_HZ:.0f}-{F0_MAX_HZ:.0f} Hz, {args.pyin_reps} reps)"
    rows.append((name, ms, best, median))
    try:
        import parselmouth

        def praat() -> float:
            sound = parselmouth.Sound(x.astype(np.float64), SR)
            f = sound.to_pitch(pitch_floor=F0_MIN_HZ, pitch_ceiling=F0_MAX_HZ).selected_array["frequency"]
            return float(np.median(f[f > 0]))

        ms, best, median = timed(praat, args.reps)
        rows.append(("Praat To Pitch (ac) via parselmouth (pitch only)", ms, best, median))
    except ImportError:
        pass

    header = f"{'method':58s} {'median ms':>10s} {'min ms':>8s} {'x real-time':>12s} {'median F0 Hz':>13s}"
    lines = [
        "$ " + " ".join([Path(sys.executable).name, *sys.argv]),
        f"cpu: {cpu_model()} ({os.cpu_count()} logical cores visible; threads pinned to 1: {threads})",
        f"python {platform.python_version()}, numpy {np.__version__}, librosa {librosa.__version__}; "
        f"load average {os.getloadavg()[0]:.2f} at the end (the machine is shared)",
        f"clip: {args.clip.name}, trimmed by load_audio, cut/padded to {CLIP_S:.1f} s at {SR} Hz",
        f"reps: {args.reps} (pyin {args.pyin_reps}) after one warm-up call; "
        "x real-time = audio seconds / median processing seconds",
        "",
        header,
    ]
    for name, ms, best, median in rows:
        f0 = f"{median:13.1f}" if median is not None else f"{'-':>13s}"
        lines.append(f"{name:58s} {ms:10.2f} {best:8.2f} {1000.0 * CLIP_S / ms:12.0f} {f0}")
    total = rows[1][1]
    verdict = "within" if total <= BUDGET_MS else "OVER"
    lines += ["", f"whole analysis {total:.1f} ms median: {verdict} the {BUDGET_MS:.0f} ms budget; "
              f"pyin takes {rows[2][1] / rows[0][1]:.0f}x as long as extract_features"]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
