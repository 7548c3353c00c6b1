"""Device and dtype of the Qwen3-TTS adapter, and the weight loader with its CUDA-OOM fallback.

``resolve_device`` checks the user's ``device``/``dtype`` before any weights are touched;
``load_with_fallback`` retries a CUDA out-of-memory load on CPU in float32 with a warning.
torch and qwen_tts are imported on first use, like everywhere in ``tts``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError, ProfileError
from .runtime import free_memory, import_qwen_tts, torch_module

_LOGGER = logging.getLogger(__name__)

_DTYPES = {"auto": "auto", "bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16",
           "fp16": "float16", "half": "float16", "float32": "float32", "fp32": "float32"}


def resolve_device(device: str, dtype: str) -> tuple[str, str, list[str]]:
    """Check and resolve ``device``/``dtype`` (no weights touched); returns (device, dtype, warnings)."""
    d = str(device).strip().lower()
    t = _DTYPES.get(str(dtype).strip().lower())
    if d not in ("auto", "cpu", "cuda", "mps") and not (d.startswith("cuda:") and d[5:].isdigit()):
        raise ProfileError(f"device {device!r} is not supported; use auto, cuda, cuda:N, mps or cpu")
    if t is None:
        raise ProfileError(f"dtype {dtype!r} is not supported; use auto, bfloat16, float16 or float32")
    torch = torch_module()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if d == "auto":
        d = "cuda" if torch.cuda.is_available() else ("mps" if mps else "cpu")
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ProfileError(
                f"device {device!r} requested but CUDA is not available (torch {torch.__version__}, "
                f"CUDA build {torch.version.cuda or 'none'}); use device='cpu' or install a CUDA build of torch."
            )
        d = "cuda:0" if d == "cuda" else d
        if int(d[5:]) >= torch.cuda.device_count():
            raise ProfileError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    if d == "mps" and not mps:
        raise ProfileError("device 'mps' requested but Apple MPS is not available; use device='cpu'")
    warnings: list[str] = []
    if t == "auto":
        t = "float32" if not d.startswith("cuda") else "bfloat16"
    if t == "float16" and d == "cpu":
        raise ProfileError("dtype float16 is not supported on CPU (slow or missing kernels); use float32 or bfloat16")
    if t == "bfloat16" and d.startswith("cuda") and not torch.cuda.is_bf16_supported():
        warnings.append(f"{torch.cuda.get_device_name(d)} has no bfloat16 support; using float16 instead")
        _LOGGER.warning(warnings[-1])
        t = "float16"
    return d, t, warnings


def describe_device(device: str) -> str:
    """The compute device in words, e.g. ``cuda:0 · NVIDIA H100 80GB HBM3, 79.1 GB`` or ``cpu · 8 threads``."""
    torch = torch_module()
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(device)
        return f"{device} · {props.name}, {props.total_memory / 1e9:.1f} GB"
    if device == "mps":
        return "mps · Apple GPU (Metal)"
    return f"{device} · CPU, {torch.get_num_threads()} threads"


def load_qwen(folder: Path, device: str, dtype: str) -> Any:
    torch = torch_module()
    Qwen3TTSModel = import_qwen_tts().Qwen3TTSModel
    # "auto": each part in its stored dtype (tts.quant.load_dtype: the low-peak order).
    kwargs: dict[str, Any] = {"dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
    if device != "cpu":
        kwargs["device_map"] = device
    try:
        qwen = Qwen3TTSModel.from_pretrained(str(folder), **kwargs)
    except Exception as exc:
        if is_oom(exc):
            raise
        raise ModelLoadError(
            f"could not load the model in {folder}: {type(exc).__name__}: {exc}. The files may be "
            "incomplete or damaged; delete the folder and download it again."
        ) from exc
    qwen.model.eval()
    return qwen


def load_with_fallback(
    load: Callable[[str, str], Any], device: str, dtype: str, progress: Callable[[str], None] | None
) -> tuple[Any, str, str, list[str]]:
    """``load(device, dtype)``; a CUDA out-of-memory retries on CPU in float32 with a warning."""
    try:
        return load(device, dtype), device, dtype, []
    except Exception as exc:
        if not (device.startswith("cuda") and is_oom(exc)):
            raise
        msg = (
            f"not enough GPU memory for the model in {dtype} on {device}; running on CPU in float32 "
            "instead (much slower). Close other GPU programs or use the smaller '0.6b' model."
        )
    _LOGGER.warning(msg)
    report(progress, msg)
    free_memory()
    return load("cpu", "float32"), "cpu", "float32", [msg]


def is_oom(exc: BaseException) -> bool:
    torch = torch_module()
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def report(progress: Callable[[str], None] | None, message: str) -> None:
    _LOGGER.info(message)
    if progress is not None:
        progress(message)
