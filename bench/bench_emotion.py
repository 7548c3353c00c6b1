"""Speed and size of the emotion detector on one core: features + predict, model size, load time.

Times, on a real 5 s speech clip (a ``voices/`` clip, trimmed by ``load_audio`` and cut or
zero-padded to 5.0 s, the same clip as ``bench_analysis.py``):

- ``compute_features`` (the emotion feature vector, the voice encoder's embedding included) alone;
- ``EmotionDetector.predict_proba`` on one feature row (every member: the two scaler + SVM +
  calibration pipelines and the boosted trees, walked as flat arrays; averaged);
- ``EmotionDetector.predict`` on the clip's samples: what the app adds on top of the Voice DNA
  analysis (``load_audio`` validation of the array, features, probabilities, the record);
- ``EmotionDetector.load`` of the shipped model (SHA-256 check + allow-list unpickling + a probe
  prediction): warm in-process, and the first load in a fresh process, once with scikit-learn
  already imported (the load itself) and once including the first scikit-learn import.

Also reports the model file size. Budgets (issues 3 and 11): predict <= 30 ms median, model <= 5 MB,
load < 200 ms. Prints the results and writes them to ``bench/results/bench_emotion.txt``.

Run from the repository root::

    .venv/bin/python bench/bench_emotion.py [--clip PATH] [--reps 100] [--load-reps 5]
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
import subprocess  # noqa: E402

import numpy as np  # noqa: E402

from personalization_engine.emotion.detector import DEFAULT_MODEL_PATH, EmotionDetector  # noqa: E402
from personalization_engine.emotion.features import compute_features  # noqa: E402

#: Budgets of issues 3 and 11.
PREDICT_BUDGET_MS = 30.0
SIZE_BUDGET_MB = 5.0
LOAD_BUDGET_MS = 200.0

#: Fresh-process load: {pre} runs before the clock starts (nothing, or the scikit-learn imports).
_COLD_LOAD = (
    "import time, sys; sys.path.insert(0, {repo!r}); "
    "from personalization_engine.emotion_detector import EmotionDetector; {pre}; "
    "t = time.perf_counter(); EmotionDetector.load({model!r}); "
    "print(1000 * (time.perf_counter() - t))"
)
_SKLEARN_IMPORTS = ("import sklearn.calibration, sklearn.compose, sklearn.ensemble, sklearn.pipeline, "
                    "sklearn.preprocessing, sklearn.svm")








def _uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"load average {os.getloadavg()}"


def _cold_loads(model: Path, reps: int, pre: str = "pass") -> list[float]:
    """Load time (ms) of the model in fresh interpreters (the first load; ``pre`` runs untimed)."""
    code = _COLD_LOAD.format(repo=str(REPO), model=str(model), pre=pre)
    out = []
    for _ in range(reps):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        out.append(float(proc.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--load-reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "bench_emotion.txt")
    args = parser.parse_args()
    threads = limit_threads()
    uptime_before = _uptime()

    x = five_second_clip(args.clip)

    det = EmotionDetector.load(args.model)
    rows: list[tuple[str, float, float]] = []
    ms, best, feats = timed(lambda: compute_features(x), args.reps)
    rows.append(("compute_features (emotion features)", ms, best))
    ms, best, _ = timed(lambda: det.predict_proba(feats[None, :]), args.reps)
    rows.append(("predict_proba (1 row: every member + the vote)", ms, best))
    ms, best, est = timed(lambda: det.predict(x, SR), args.reps)
    rows.append(("EmotionDetector.predict(samples) [what the app adds]", ms, best))
    predict_ms = ms
    ms, best, _ = timed(lambda: EmotionDetector.load(args.model), args.load_reps)
    rows.append((f"EmotionDetector.load, warm process ({args.load_reps} reps)", ms, best))
    cold = _cold_loads(args.model, args.load_reps, pre=_SKLEARN_IMPORTS)
    rows.append((f"EmotionDetector.load, fresh process, sklearn imported ({args.load_reps})",
                 float(np.median(cold)), min(cold)))
    load_ms = float(np.median(cold))
    first = _cold_loads(args.model, args.load_reps)
    rows.append((f"  same, including the first scikit-learn import ({args.load_reps})",
                 float(np.median(first)), min(first)))
    first_ms = float(np.median(first))
    size_mb = args.model.stat().st_size / 1e6

    import sklearn

    lines = [
        "$ " + " ".join([Path(sys.executable).name, *sys.argv]),
        f"cpu: {cpu_model()} ({os.cpu_count()} logical cores visible; threads pinned to 1: {threads})",
        f"python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}",
        f"uptime before: {uptime_before}",
        f"uptime after:  {_uptime()}  (the machine is shared with other jobs)",
        f"clip: {args.clip.name}, trimmed by load_audio, cut/padded to {CLIP_S:.1f} s at {SR} Hz; "
        f"prediction: {est.label} p={est.probability:.2f}",
        f"model: {args.model.name}, {args.model.stat().st_size} bytes, "
        f"SHA-256 {det.manifest.get('sha256', '?')[:16]}...",
        f"reps: {args.reps} after one warm-up call (loads: {args.load_reps}); fresh-process loads exclude "
        "the interpreter start and the import of personalization_engine",
        "",
        f"{'step':58s} {'median ms':>10s} {'min ms':>8s}",
    ]
    lines += [f"{name:58s} {ms:10.2f} {best:8.2f}" for name, ms, best in rows]

    def verdict(ok: bool) -> str:
        return "within" if ok else "OVER"

    lines += [
        "",
        f"predict (features + SVM) {predict_ms:.1f} ms median: {verdict(predict_ms <= PREDICT_BUDGET_MS)} "
        f"the {PREDICT_BUDGET_MS:.0f} ms budget (on top of the Voice DNA analysis)",
        f"model size {size_mb:.2f} MB: {verdict(size_mb < SIZE_BUDGET_MB)} the {SIZE_BUDGET_MB:.0f} MB budget",
        f"load {load_ms:.1f} ms median (fresh process: SHA-256 check, allow-list unpickling, probe "
        f"prediction): {verdict(load_ms < LOAD_BUDGET_MS)} the {LOAD_BUDGET_MS:.0f} ms budget",
        f"the first load in a process that has not imported scikit-learn yet takes {first_ms:.0f} ms: "
        f"{verdict(first_ms < LOAD_BUDGET_MS)} the budget, almost all of it the import of scikit-learn "
        "itself (paid once per process; the REPL hides it by loading the detector in a background thread at start)",
    ]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
