"""What each quant mode costs and saves: layer error, greedy codes, linear timing, peak RSS.

Four parts, each in its own process (so peak RSS is per part), results in
``bench/results/bench_quant.json`` and a readable ``bench_quant.txt``:

* ``error``  full-size random 0.6B (``/work/cache/full-0.6b``, from
  ``bench/build_full_size.py 0.6b --save``): the inputs every talker / code-predictor linear
  layer sees during a real x-vector generation (prefill + 4 frames) are recorded, and each
  mode's output is compared with fp32: relative error ``||y_q - y|| / ||y||`` per layer,
  median and max per layer type. Random weights are Gaussian-like; trained weights have
  outliers, which int4 handles worse, so treat these as lower bounds.
* ``timing`` the same model: one talker step's linears (28 layers x 7 + codec head) and one
  code-predictor step's (5 x 7 + one lm head) at batch 1, 1 thread (the loop's), per mode and
  kernel family side by side; plus PyTorch's int kernels with fp32 activations (they get bf16).
* ``codes``  the tiny checkpoint: greedy codes of 200 frames per mode vs fp32 (fraction of
  frames identical, and frames until the first difference).
* ``rss``    loading orders on the full-size model: load, quantize, upcast the float rest,
  make a voice, stream 8 frames; peak RSS (VmHWM) after each stage.

Usage::

    .venv/bin/python bench/bench_quant.py all            # everything, writes the results
    .venv/bin/python bench/bench_quant.py rss --mode int4 --order auto   # one part, JSON to stdout
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

FULL = Path(os.environ.get("PE_FULL_06B", "/work/cache/full-0.6b"))
REF = REPO.parent / "shared" / "data" / "voices" / "LJ001-0004.flac"
TEXT = "Please call Stella and ask her to bring these things with her from the store."
MODES = ("bf16", "int8", "int4")
#: Result columns: each mode on the kernels ``load_model`` uses here (ours, tts/_native.py, for
#: int8/int4 when they build), and int8/int4 on PyTorch's kernels (``-torch``) side by side.
COLUMNS = ("bf16", "int8", "int4", "int8-torch", "int4-torch")


def _column(column: str) -> tuple[str, Any]:
    """Result column ``column`` (see :data:`COLUMNS`) as (quant mode, the kernels' context):
    "-torch" columns quantize with our kernels switched off."""
    import contextlib

    from personalization_engine.tts import _native

    mode, _, kernels = column.partition("-")
    return mode, _native.disabled() if kernels == "torch" else contextlib.nullcontext()


def _quantize(lin: Any, column: str) -> Any:
    """``lin`` packed as result column ``column``."""
    from personalization_engine.tts._qlinear import quantize_linear

    mode, kernels = _column(column)
    with kernels:
        return quantize_linear(lin, mode)
RESULTS = REPO / "bench" / "results"


def _rss() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmHWM", "VmRSS")):
            out[line.split(":")[0]] = round(int(line.split()[1]) / 1e6, 3)  # kB -> GB
    return out


def _load(folder: Path, dtype: str) -> Any:
    import torch

    from personalization_engine.qwen_adapter import TTSModel, import_qwen_tts

    loader = import_qwen_tts().Qwen3TTSModel
    qwen = loader.from_pretrained(str(folder), dtype=dtype if dtype == "auto" else getattr(torch, dtype))
    qwen.model.eval()
    return TTSModel(qwen, model_id=folder.name, model_dir=folder, device="cpu", dtype="float32")


def _voice(model: Any) -> Any:
    from personalization_engine.audio_io import load_audio

    clip = load_audio(REF, sample_rate=16_000)
    return model.create_voice((clip.samples, 16_000), analyze=False)


def part_rss(mode: str, order: str) -> dict[str, Any]:
    """order "fp32": today's fp32 load; "auto": stored dtypes (bf16 talker), quantize, upcast."""
    from personalization_engine.tts import quant

    stages: dict[str, Any] = {}
    t0 = time.perf_counter()
    model = _load(FULL, "float32" if order == "fp32" else "auto")
    stages["loaded"] = _rss()
    with tempfile.TemporaryDirectory() as cache:
        report = quant.quantize_model(model._qwen, mode, cache_dir=cache, checkpoint_hash="bench", weights_dir=FULL)
        stages["quantized"] = _rss()
        quant.upcast_float_parts(model._qwen, "float32")
        stages["upcast"] = _rss()
    load_s = time.perf_counter() - t0
    voice = _voice(model)
    list(model.generate(TEXT, voice, stream=True, seed=0, max_new_frames=8, _min_new_frames=8))
    stages["generated"] = _rss()
    return {"part": "rss", "mode": mode, "order": order, "load_s": round(load_s, 1), "stages": stages,
            "quant": report.to_dict()}


def _record_inputs(model: Any) -> dict[str, Any]:
    """name -> input tensor of each talker linear (prefill and 4 generated frames, 2 calls kept)."""
    import torch

    from personalization_engine.tts.quant import target_linears

    seen: dict[str, list[Any]] = {}
    hooks = []
    for name, lin in target_linears(model._qwen.model.talker):
        def hook(_m: Any, args: Any, name: str = name) -> None:
            if len(seen.setdefault(name, [])) < 2:
                seen[name].append(args[0].detach().reshape(-1, args[0].shape[-1]).clone())
        hooks.append(lin.register_forward_pre_hook(hook))
    list(model.generate(TEXT, _voice(model), seed=0, max_new_frames=4, _min_new_frames=4))
    for h in hooks:
        h.remove()
    return {k: torch.cat(v) for k, v in seen.items()}


def _kind(name: str) -> str:
    part = "predictor" if name.startswith("code_predictor.") else "talker"
    leaf = name.split(".")[-2] if name.split(".")[-1].isdigit() else name.split(".")[-1]
    return f"{part}.{leaf}"


def part_error() -> dict[str, Any]:
    import torch

    from personalization_engine.tts.quant import target_linears

    torch.set_num_threads(2)
    model = _load(FULL, "float32")
    inputs = _record_inputs(model)
    errs: dict[str, dict[str, list[float]]] = {m: {} for m in COLUMNS}
    with torch.inference_mode():
        for name, lin in target_linears(model._qwen.model.talker):
            if name not in inputs:
                continue
            x = inputs[name]
            y = lin(x)
            for mode in COLUMNS:
                yq = _quantize(lin, mode)(x)
                rel = float((yq - y).norm() / y.norm().clamp(min=1e-12))
                errs[mode].setdefault(_kind(name), []).append(rel)
    table = {m: {k: {"median": round(sorted(v)[len(v) // 2], 5), "max": round(max(v), 5), "layers": len(v)}
                 for k, v in sorted(d.items())} for m, d in errs.items()}
    rows = {k: int(v.shape[0]) for k, v in inputs.items()}
    return {"part": "error", "model": str(FULL), "input_rows": [min(rows.values()), max(rows.values())],
            "relative_error": table}


def part_timing(reps: int) -> dict[str, Any]:
    import torch
    from _benchlib import timed

    from personalization_engine.tts.quant import target_linears

    torch.set_num_threads(1)  # the decode loop's thread count on CPU (tts/model.py LOOP_THREADS_CPU)
    model = _load(FULL, "float32")
    talker = model._qwen.model.talker
    lins = dict(target_linears(talker))
    steps = {"talker": [m for n, m in lins.items() if n.startswith("model.layers.")] + [lins["codec_head"]],
             "predictor": [m for n, m in lins.items() if n.startswith("code_predictor.model.layers.")]
             + [lins["code_predictor.lm_head.0"]]}
    out: dict[str, Any] = {"part": "timing", "threads": torch.get_num_threads(), "reps": reps,
                           "linears": {k: len(v) for k, v in steps.items()}, "ms": {}}
    with torch.inference_mode():
        for step, layers in steps.items():
            xs = [torch.randn(1, m.in_features) for m in layers]
            row: dict[str, Any] = {}
            for mode in ("fp32", *COLUMNS):
                mods = layers if mode == "fp32" else [_quantize(m, mode) for m in layers]
                med, best, _ = timed(lambda mods=mods, xs=xs: [m(x) for m, x in zip(mods, xs, strict=True)], reps)
                row[mode] = {"median": round(med, 2), "min": round(best, 2)}
                if mode in ("int8-torch", "int4-torch"):
                    row[f"{mode}-fp32-act"] = _time_fp32_act(mods, xs, mode, reps)
                del mods
            out["ms"][step] = row
    return out


def _time_fp32_act(mods: list[Any], xs: list[Any], mode: str, reps: int) -> dict[str, float]:
    """PyTorch's kernels with fp32 activations and scales (the modules use bf16 ones)."""
    import torch
    from _benchlib import timed

    bf = torch.float32
    if mode == "int8-torch":
        prepared = [(m.qweight, m.scales.to(bf)) for m in mods]

        def run() -> Any:
            return [torch._weight_int8pack_mm(x.to(bf), q, s).float() for (q, s), x in zip(prepared, xs, strict=True)]
    else:
        prepared = [(m.qweight, m.scales_zeros.to(bf)) for m in mods]

        def run() -> Any:
            return [torch._weight_int4pack_mm_for_cpu(x.to(bf), q, 32, s).float()
                    for (q, s), x in zip(prepared, xs, strict=True)]
    med, best, _ = timed(run, reps)
    return {"median": round(med, 2), "min": round(best, 2)}


def part_codes(frames: int) -> dict[str, Any]:
    import torch

    from personalization_engine.tts import quant
    from personalization_engine.tts.runtime import fixed_min_frames
    from personalization_engine.tts.tiny import main as make_tiny

    torch.set_num_threads(2)
    out: dict[str, Any] = {"part": "codes", "frames": frames, "modes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        make_tiny(["make-tiny", str(Path(tmp) / "tiny")])
        codes: dict[str, Any] = {}
        for column in ("none", *COLUMNS):
            model = _load(Path(tmp) / "tiny", "float32")
            mode, kernels = _column(column)
            with kernels:
                quant.quantize_model(model._qwen, mode)
            q, voice = model._qwen, _voice(model)
            inputs = model._clone_inputs(TEXT, "auto", prompt=model._prompt_for(voice))
            kwargs = q._merge_generate_kwargs(do_sample=False, subtalker_dosample=False, max_new_tokens=frames + 1)
            t0 = time.perf_counter()
            with torch.inference_mode(), fixed_min_frames(q.model.talker, frames):
                codes[column] = q.model.generate(**inputs, **kwargs)[0][0][:frames]
            print(f"codes {column}: {len(codes[column])} frames in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            model.close()
    ref = codes.pop("none")
    for mode, c in codes.items():
        n = min(len(c), len(ref))
        same = (c[:n] == ref[:n]).all(dim=1)
        first = int((~same).nonzero()[0, 0]) if not bool(same.all()) else n
        out["modes"][mode] = {"frames_compared": n, "identical_fraction": round(float(same.float().mean()), 3),
                              "first_difference_at": first,
                              "codebook0_identical_fraction": round(float((c[:n, 0] == ref[:n, 0]).float().mean()), 3)}
    return out


def _subprocess(args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"part": args[0], "args": args, "error": done.stderr[-2000:]}
    return dict(json.loads(lines[-1]), args=args)


def _uptime() -> str:
    return Path("/proc/loadavg").read_text().split(" ")[0:3].__str__()


def run_all(reps: int, only: list[str] | None = None) -> int:
    """Every part (or the ``only`` ones), each in a subprocess; results of other parts are kept."""
    from _benchlib import cpu_model

    path = RESULTS / "bench_quant.json"
    results: dict[str, Any] = json.loads(path.read_text()) if only and path.is_file() else {"parts": []}
    results.update(cpu=cpu_model(), load_before=_uptime())
    jobs = [["error"], ["timing", "--reps", str(reps)], ["codes"]]
    orders = (("int4", "auto"), ("none", "fp32"), ("int8", "auto"), ("int4", "fp32"), ("bf16", "auto"))
    jobs += [["rss", "--mode", m, "--order", o] for m, o in orders]
    if only:
        jobs = [j for j in jobs if j[0] in only or " ".join(j) in only]
        names = {" ".join(j) for j in jobs}
        results["parts"] = [p for p in results["parts"] if " ".join(p.get("args", [])) not in names]
    for job in jobs:
        print("running", " ".join(job), "load", _uptime(), flush=True)
        res = _subprocess(job)
        res["load"] = _uptime()
        results["parts"].append(res)
        print(json.dumps(res)[:400], flush=True)
        results["load_after"] = _uptime()
        RESULTS.mkdir(exist_ok=True)  # saved after every part: a long run interrupted keeps what it has
        (RESULTS / "bench_quant.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


def render(d: dict[str, Any]) -> str:
    """The results as readable tables (bench_quant.txt)."""
    out = [f"bench/bench_quant.py on {d.get('cpu')}; load (1/5/15 min) before {d.get('load_before')}, "
           f"after {d.get('load_after')}", ""]
    for p in d["parts"]:
        if isinstance(p.get("error"), str):
            out.append(f"{' '.join(p.get('args', []))}: FAILED")
        elif p["part"] == "error":
            out += [f"Layer output error vs fp32, full-size random 0.6B, inputs recorded in an x-vector "
                    f"generation, load {p.get('load')}",
                    "relative error ||y_q - y|| / ||y||, median (max) over the layers of each type"]
            modes = list(p["relative_error"])
            out.append(f"{'layer type':24s}" + "".join(f"{m:>20s}" for m in modes))
            for k in sorted(p["relative_error"][modes[0]]):
                cells = [p["relative_error"][m][k] for m in modes]
                out.append(f"{k:24s}" + "".join(f"{c['median']:>11.4f} ({c['max']:.4f})" for c in cells))
            out.append("")
        elif p["part"] == "timing":
            out.append(f"One step's linears at batch 1, {p['threads']} threads, ms median (min) of {p['reps']}, "
                       f"load {p.get('load')}; linears {p['linears']}")
            for step, row in p["ms"].items():
                cells = [f"{m} {v['median']:.1f} ({v['min']:.1f})" for m, v in row.items()]
                out.append(f"  {step:10s} " + "  ".join(cells))
            out += ["  (int8/int4: our kernels, int8 activations; -torch: PyTorch's kernels with bf16 activations,"
                    " as the modules use them; -fp32-act: the same with fp32 activations)", ""]
        elif p["part"] == "codes":
            out.append(f"Greedy codes vs fp32 on the tiny checkpoint, {p['frames']} frames, load {p.get('load')}")
            for m, v in p["modes"].items():
                out.append(f"  {m:10s} identical frames {v['identical_fraction']:.3f}, first difference at frame "
                           f"{v['first_difference_at']}, codebook-0 identical {v['codebook0_identical_fraction']:.3f}")
            out.append("")
        elif p["part"] == "rss":
            st = p["stages"]
            peaks = ", ".join(f"{k} {v['VmHWM']:.2f}" for k, v in st.items())
            out.append(f"Peak RSS GB, {p['mode']} (load order {p['order']}): {peaks}; load+quantize {p['load_s']} s, "
                       f"cache {p['quant']['cache']}, load {p.get('load')}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=("all", "rss", "error", "timing", "codes", "summary"))
    parser.add_argument("--mode", default="int4", choices=("none", *MODES))
    parser.add_argument("--order", default="auto", choices=("auto", "fp32"))
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--only", nargs="*", help="with all: just these parts, e.g. error codes")
    args = parser.parse_args(argv)
    if args.part == "all":
        return run_all(args.reps, args.only)
    if args.part == "summary":
        text = render(json.loads((RESULTS / "bench_quant.json").read_text()))
        (RESULTS / "bench_quant.txt").write_text(text, encoding="utf-8")
        print(text, end="")
        return 0
    res = {"rss": lambda: part_rss(args.mode, args.order), "error": part_error,
           "timing": lambda: part_timing(args.reps), "codes": lambda: part_codes(args.frames)}[args.part]()
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
