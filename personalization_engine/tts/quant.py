"""Compact weights for the talker and the code predictor: bf16, int8 or int4, cached on disk.

Generation on a CPU is memory-bound: every codec frame reads the talker's linear weights once
and the code predictor's fifteen times, so bytes per frame set the speed. This module replaces
those ``nn.Linear`` layers (attention and MLP projections, the text projection, the codec and
lm heads) in place with modules of the same ``forward(x)`` (:mod:`._qlinear`)::

    mode = resolve_quant("auto", "cpu")                   # "int8" on CPU, "none" on CUDA
    report = quantize_model(qwen, mode, cache_dir=default_cache_dir(folder),
                            checkpoint_hash=checkpoint_hash(folder), progress=print)

Embeddings, norms, the codec decoder (int8 vocoders are reported to break Snake activations)
and the speaker encoder stay float. On CPU the packed layers run on our own kernels
(:mod:`._native`, ``_gemv.c``: int8 activations per block of 32, integer dot products) when a C
compiler is there, else on PyTorch's (``QuantReport.kernels`` says which). Quantizing goes
layer by layer and frees each float weight as soon as its packed copy exists;
:func:`load_dtype` and :func:`upcast_float_parts` give the lowest-peak loading order (load a
bf16 checkpoint as stored, quantize, then upcast the rest).

Packed weights are cached as safetensors (never pickle) beside the model, or in the user cache
when the model folder is read-only (:mod:`._qcache`); a stale or damaged cache is rebuilt.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError, ProfileError
from ..fileio import sha256_bytes, user_cache_dir

_LOGGER = logging.getLogger(__name__)

#: The modes ``load_model(quant=...)`` takes, "auto" resolved by :func:`resolve_quant`.
QUANT_MODES: tuple[str, ...] = ("none", "bf16", "int8", "int4")
QUANT_CHOICES: tuple[str, ...] = ("auto", *QUANT_MODES)
#: Where a cache goes when the model folder is read-only (:func:`..fileio.user_cache_dir`).
USER_CACHE_NAME = "quant"
#: Name of the cache folder inside a writable model folder.
MODEL_CACHE_SUBDIR = "quant-cache"

_LAYER_RE = re.compile(r"^(code_predictor\.)?model\.layers\.(\d+)\.")


@dataclass(frozen=True)
class QuantReport:
    """What :func:`quantize_model` did."""

    #: The mode applied ("none" when nothing was replaced).
    mode: str
    #: Linear layers replaced; ``fallback_layers`` of them are int8 because the int4 kernel
    #: does not take their shape (out % 16 or in % 32 not zero; only tiny test models).
    layers: int
    fallback_layers: int
    #: Bytes of the replaced layers' weights before (as loaded) and after packing.
    float_bytes: int
    packed_bytes: int
    #: Wall time of the whole step (quantizing or reading the cache), seconds.
    seconds: float
    #: "off" (no cache dir or no checkpoint hash), "hit", "built" (no cache before) or
    #: "rebuilt" (the cache was stale or damaged; ``cache_problem`` says why).
    cache: str
    cache_path: Path | None = None
    cache_problem: str = ""
    kernels: str = ""
    """Which kernels run the packed layers: "native (AVX2)" / "native (plain C)" (ours,
    ``tts/_native.py``), "torch" (PyTorch's), "" when nothing was packed."""

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "layers": self.layers, "fallback_layers": self.fallback_layers,
                "float_bytes": self.float_bytes, "packed_bytes": self.packed_bytes,
                "seconds": round(self.seconds, 3), "cache": self.cache,
                "cache_path": None if self.cache_path is None else str(self.cache_path),
                "cache_problem": self.cache_problem, "kernels": self.kernels}


def check_quant(quant: str) -> str:
    """Normalize ``quant`` (case, spaces) or raise :class:`ProfileError` listing the choices."""
    q = str(quant).strip().lower()
    if q not in QUANT_CHOICES:
        raise ProfileError(f"quant {quant!r} is not supported; use one of {', '.join(QUANT_CHOICES)} "
                           "(auto: int8 on CPU, unchanged on a GPU)")
    return q


def resolve_quant(quant: str, device: str) -> str:
    """The mode to apply for ``quant`` on ``device`` (no weights touched).

    ``auto`` is int8 weight-only on CPU and "none" elsewhere (CUDA runs bf16 weights already;
    MPS has none of these kernels). An explicit int mode on a non-CPU device is refused.
    """
    q = check_quant(quant)
    on_cpu = str(device).strip().lower() == "cpu"
    if q == "auto":
        return "int8" if on_cpu else "none"
    if q in ("int8", "int4") and not on_cpu:
        raise ProfileError(f"quant {q!r} uses CPU kernels and cannot run on {device!r}; "
                           "use quant='auto' or 'none' there, or device='cpu'")
    return q


def check_kernels(mode: str) -> None:
    """Raise :class:`ModelLoadError` when this torch build lacks a kernel ``mode`` needs."""
    if mode in ("none", "bf16"):
        return
    from ._qlinear import kernel_problems

    problems = kernel_problems(mode)
    if problems:
        import torch

        raise ModelLoadError(
            f"quant {mode!r} needs {', '.join(problems)}, which torch {torch.__version__} here lacks; "
            "use quant='bf16' or 'none', or install torch 2.6 or newer (CPU build with these kernels)")


def quantize_model(qwen_model: Any, mode: str, *, cache_dir: str | os.PathLike[str] | None = None,
                   checkpoint_hash: str | None = None, progress: Callable[[str], None] | None = None,
                   weights_dir: str | os.PathLike[str] | None = None) -> QuantReport:
    """Replace the talker's and code predictor's linear layers in place with ``mode`` weights.

    Parameters
    ----------
    qwen_model : Qwen3TTSModel or Qwen3TTSForConditionalGeneration
        The qwen-tts wrapper or its ``.model``; its talker must be on the CPU for int modes.
    mode : {"none", "bf16", "int8", "int4"}
        Resolve "auto" first with :func:`resolve_quant`.
    cache_dir, checkpoint_hash : optional
        Both given: packed weights are read from / written to ``cache_dir`` under a name made of
        the hash and the mode (see :func:`default_cache_dir`, :func:`checkpoint_hash`).
    progress : callable, optional
        Gets one line per stage ("quantizing talker 14/28 (int4)").
    weights_dir : path, optional
        The checkpoint folder: weights are then read from its safetensors files (one short
        mapping per layer) instead of the model's memory-mapped tensors, whose pages would
        otherwise stay resident after the float layer is gone (about 1 GB on the 0.6B model).

    Raises
    ------
    ProfileError
        Unknown mode. ModelLoadError: a kernel is missing, or the model has no talker.
    """
    mode = check_quant(mode)
    if mode == "auto":
        raise ProfileError("quantize_model needs a resolved mode; call resolve_quant('auto', device) first")
    t0 = time.perf_counter()
    if mode == "none":
        return QuantReport("none", 0, 0, 0, 0, 0.0, "off")
    check_kernels(mode)
    from . import _qcache

    talker = _talker_of(qwen_model)
    targets = target_linears(talker)
    shapes = {name: (m.out_features, m.in_features) for name, m in targets}
    path = _qcache.cache_path(Path(cache_dir), checkpoint_hash, mode) if cache_dir and checkpoint_hash else None
    cache, problem = "off", ""
    float_bytes = sum(_nbytes(m) for _, m in targets)
    packed = None
    if path is not None:
        packed, problem = _qcache.load(path, mode=mode, checkpoint_hash=str(checkpoint_hash), shapes=shapes)
        cache = "hit" if packed is not None else ("rebuilt" if problem != "missing" else "built")
        if problem and problem != "missing":
            _LOGGER.warning("quantized-weight cache %s unusable (%s); rebuilding it", path, problem)
            _report(progress, f"quant cache unusable ({problem}); rebuilding")
    source = _WeightSource(Path(weights_dir)) if weights_dir is not None and packed is None else None
    modules = _replace_all(talker, targets, mode, packed, progress, source)
    packed_bytes = sum(_nbytes(m) for m in modules.values())
    fallback = sum(1 for m in modules.values() if m.mode != mode)
    kernels = _kernels(modules.values())
    del targets, packed
    if path is not None and cache != "hit":
        try:
            _qcache.save(path, modules, mode=mode, checkpoint_hash=str(checkpoint_hash))
            _report(progress, f"saved {mode} weights to {path}")
        except OSError as exc:  # a full disk or a read-only cache must not stop the model
            _LOGGER.warning("could not write the quantized-weight cache %s: %s", path, exc)
            problem = problem or f"not saved: {exc}"
    release_freed_memory()
    return QuantReport(mode, len(modules), fallback, float_bytes, packed_bytes,
                       time.perf_counter() - t0, "off" if path is None else cache, path,
                       "" if problem == "missing" else problem, kernels)


def _kernels(modules: Any) -> str:
    from . import _native
    from ._qlinear import _NativeLinear

    kinds = {isinstance(m, _NativeLinear) for m in modules}
    if kinds == {True}:
        return _native.describe()
    return "torch" if kinds == {False} else f"{_native.describe()} + torch"


def apply_quant(qwen_model: Any, folder: str | os.PathLike[str], mode: str, *, device: str, dtype: str,
                progress: Callable[[str], None] | None = None) -> QuantReport:
    """What ``load_model`` does after loading with :func:`load_dtype`: quantize, cache, upcast.

    On CPU the packed weights are cached in :func:`default_cache_dir` under
    :func:`checkpoint_hash`, and the float rest is brought to ``dtype``. Elsewhere (bf16 on
    CUDA) the layers are cast in place, without a cache.
    """
    if mode == "none":
        return quantize_model(qwen_model, "none")
    if device != "cpu":
        return quantize_model(qwen_model, mode, progress=progress)
    report = quantize_model(qwen_model, mode, cache_dir=default_cache_dir(folder),
                            checkpoint_hash=checkpoint_hash(folder), progress=progress, weights_dir=folder)
    upcast_float_parts(qwen_model, dtype)
    return report


def target_linears(talker: Any) -> list[tuple[str, Any]]:
    """``(name, module)`` of every ``nn.Linear`` under the talker (code predictor included)."""
    from torch import nn

    return [(name, m) for name, m in talker.named_modules() if isinstance(m, nn.Linear)]


def _replace_all(talker: Any, targets: list[tuple[str, Any]], mode: str, packed: dict[str, Any] | None,
                 progress: Callable[[str], None] | None, source: _WeightSource | None = None) -> dict[str, Any]:
    """Swap each target for its packed module, freeing the float weight right after."""
    from ._qlinear import CLASSES, quantize_linear

    stages = _stage_sizes([n for n, _ in targets])
    done: dict[str, int] = {}
    modules: dict[str, Any] = {}
    verb = "loading" if packed is not None else "quantizing"
    for i in range(len(targets)):
        name, linear = targets[i]
        targets[i] = (name, None)  # the list must not keep the float weight alive
        if packed is not None:
            kind, tensors = packed.pop(name)
            new = CLASSES[kind].from_packed(tensors)
        else:
            new = quantize_linear(linear, mode, None if source is None else source.read(name))
        if linear.weight.device != new.qweight_device():
            new = new.to(linear.weight.device)
        parent_name, _, attr = name.rpartition(".")
        parent = talker.get_submodule(parent_name) if parent_name else talker
        setattr(parent, attr, new)
        del linear
        modules[name] = new
        stage, index = _stage_of(name)
        done[stage] = done.get(stage, 0) + 1
        if done[stage] == stages[stage][1]:  # the last linear of a layer or a stage
            _report(progress, f"{verb} {stage} {index + 1 if index >= 0 else done[stage]}/"
                              f"{stages[stage][0] if index >= 0 else stages[stage][1]} ({mode})")
            if index >= 0:
                done[stage] = 0
            _malloc_trim()  # the per-layer temporaries must not pile up in the heap
    return modules


class _WeightSource:
    """The talker's linear weights read from the checkpoint's safetensors, one mapping per read."""

    def __init__(self, folder: Path) -> None:
        self._where: dict[str, Path] = {}
        for path in sorted(folder.glob("*.safetensors")):
            with contextlib.suppress(OSError, ValueError):
                for key in _safetensors_header(path):
                    if key.startswith("talker.") and key.endswith(".weight"):
                        self._where[key] = path

    def read(self, name: str) -> Any:
        """The stored weight of linear ``name`` (None when the file does not have it)."""
        key = f"talker.{name}.weight"
        path = self._where.get(key)
        if path is None:
            return None
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:  # unmapped again on exit
            return fh.get_tensor(key)


def _stage_of(name: str) -> tuple[str, int]:
    """("talker", layer) / ("code predictor", layer) / ("heads and projections", -1)."""
    m = _LAYER_RE.match(name)
    if m is None:
        return "heads and projections", -1
    return ("code predictor" if m.group(1) else "talker"), int(m.group(2))


def _stage_sizes(names: list[str]) -> dict[str, tuple[int, int]]:
    """Per stage: (layers, linears per layer) for layer stages, (1, linears) for the rest."""
    per: dict[str, dict[int, int]] = {}
    for n in names:
        stage, idx = _stage_of(n)
        per.setdefault(stage, {}).setdefault(idx, 0)
        per[stage][idx] += 1
    return {s: (len(v), max(v.values())) for s, v in per.items()}


# --- loading order ------------------------------------------------------------------------------


def load_dtype(folder: str | os.PathLike[str], mode: str, device: str, requested: str = "float32") -> str:
    """The dtype to load ``folder`` in before quantizing: "auto" or ``requested``.

    "auto" (each part in its stored dtype) on CPU with a compact mode when the talker is
    stored in bfloat16, as on the hub: transformers then maps the bf16 weights straight from
    the safetensors file (pages become resident only when read), the values are exactly the
    stored ones, the talker is quantized from them layer by layer, and
    :func:`upcast_float_parts` brings the float rest to fp32 afterwards. This is the lowest
    peak: never a full fp32 copy of the talker. Otherwise ``requested``, as without quantization.
    """
    if device != "cpu" or mode == "none":
        return requested
    return "auto" if checkpoint_dtype(folder) == "BF16" else requested


def upcast_float_parts(qwen_model: Any, dtype: str = "float32", *, keep_bf16_embeddings: bool = True) -> int:
    """Cast every float tensor outside the packed layers to ``dtype``, one module at a time.

    Covers the talker's embeddings and norms, the speaker encoder and the speech tokenizer
    (codec decoder); returns the number of tensors cast. Packed modules are left alone (their
    bf16 weights and fp32 scales are what they compute with). With ``keep_bf16_embeddings``
    the talker's bf16 embedding tables stay bf16 and return ``dtype`` (lossless: see
    :class:`._qlinear.BF16Embedding`); that saves 0.6 GB on the 0.6B model.
    """
    import torch

    from ._qlinear import BF16Embedding, _PackedLinear

    target = getattr(torch, dtype)
    model = qwen_model.model if hasattr(qwen_model, "model") and hasattr(qwen_model.model, "talker") else qwen_model
    if keep_bf16_embeddings and target != torch.bfloat16:
        for name, module in list(model.talker.named_modules()):
            if isinstance(module, torch.nn.Embedding) and module.weight.dtype == torch.bfloat16:
                parent_name, _, attr = name.rpartition(".")
                parent = model.talker.get_submodule(parent_name) if parent_name else model.talker
                if isinstance(parent, torch.nn.ModuleList):
                    parent[int(attr)] = BF16Embedding(module.weight, target)
                else:
                    setattr(parent, attr, BF16Embedding(module.weight, target))
    roots = [model]
    tokenizer = getattr(model, "speech_tokenizer", None)
    if tokenizer is not None and getattr(tokenizer, "model", None) is not None:
        roots.append(tokenizer.model)
    cast = 0
    for root in roots:
        for module in root.modules():
            if isinstance(module, (_PackedLinear, BF16Embedding)):
                continue
            for store in (module._parameters, module._buffers):
                for key, t in store.items():
                    if t is not None and t.is_floating_point() and t.dtype != target:
                        new = t.data.to(target)
                        is_param = isinstance(t, torch.nn.Parameter)
                        store[key] = torch.nn.Parameter(new, t.requires_grad) if is_param else new
                        cast += 1
    release_freed_memory()
    return cast


def checkpoint_dtype(folder: str | os.PathLike[str]) -> str:
    """The stored dtype of the first weight of ``folder``'s safetensors ("BF16", "F32"...; "" if unknown)."""
    for path in sorted(Path(folder).glob("*.safetensors")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            for key, info in _safetensors_header(path).items():
                if key != "__metadata__":
                    return str(info["dtype"])
    return ""


def _safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes, offsets)."""
    with open(path, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(min(size, 100_000_000)))
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors header")
    return header


def checkpoint_hash(folder: str | os.PathLike[str]) -> str:
    """A key for the checkpoint in ``folder`` that is cheap to compute at every start.

    SHA-256 over ``config.json`` and, per top-level weight file, its name, size and
    modification time, or its content hash where the hub cache names the blob by it. A
    changed or re-downloaded checkpoint gets a new key, so its cache is rebuilt.
    """
    folder = Path(folder)
    parts: list[str] = []
    config = folder / "config.json"
    if config.is_file():
        parts.append(sha256_bytes(config.read_bytes()))
    for path in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        real = path.resolve()
        st = real.stat()
        blob = real.name if re.fullmatch(r"[0-9a-f]{64}", real.name) else f"{st.st_mtime_ns}"
        parts.append(f"{path.name}:{st.st_size}:{blob}")
    if len(parts) < 2:
        raise ModelLoadError(f"no weights (*.safetensors) and config.json in {folder} to key the quant cache on")
    return sha256_bytes("\n".join(parts).encode())


def default_cache_dir(model_dir: str | os.PathLike[str]) -> Path:
    """``model_dir/quant-cache`` when the model folder is writable, else the user cache."""
    model_dir = Path(model_dir)
    if os.access(model_dir, os.W_OK):
        return model_dir / MODEL_CACHE_SUBDIR
    return user_cache_dir(USER_CACHE_NAME)


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS."""
    import gc

    gc.collect()
    _malloc_trim()


def _malloc_trim() -> None:
    """glibc keeps freed heap pages otherwise (no-op off Linux)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _talker_of(qwen_model: Any) -> Any:
    for obj in (qwen_model, getattr(qwen_model, "model", None)):
        talker = getattr(obj, "talker", None)
        if talker is not None and hasattr(talker, "code_predictor"):
            return talker
    raise ModelLoadError(f"cannot quantize {type(qwen_model).__name__}: it has no Qwen3-TTS talker")


def _nbytes(module: Any) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


def _report(progress: Callable[[str], None] | None, message: str) -> None:
    _LOGGER.info(message)
    if progress is not None:
        progress(message)
