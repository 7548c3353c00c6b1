"""The on-disk cache of packed talker weights: one safetensors file plus a JSON manifest.

``<dir>/<hash[:16]>-<mode>.safetensors`` holds each layer's buffers under ``<layer>.<buffer>``
(safetensors: no code runs on load, unlike pickle). ``<same>.json``, written last, is the
commit mark and the check: format version, mode, the checkpoint hash, the torch version and
CPU capability (the int4 layout is the packer's, which may change with either), each layer's
kind and shape, and the SHA-256 and size of the safetensors file. :func:`load` returns
``(None, why)`` on any mismatch, and the caller rebuilds.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ..fileio import move_noreplace, sha256_file, write_atomic

_LOGGER = logging.getLogger(__name__)

#: Bump when the stored layout changes; older caches are then rebuilt.
FORMAT = "pe-quant-1"


def cache_path(cache_dir: Path, checkpoint_hash: str | None, mode: str) -> Path:
    return Path(cache_dir) / f"{str(checkpoint_hash)[:16]}-{mode}.safetensors"


def _environment() -> dict[str, str]:
    import torch

    from . import _native
    from ._qlinear import INT4_COMPUTE_DTYPE, INT4_GROUP_SIZE, INT8_COMPUTE_DTYPE

    return {"format": FORMAT, "torch": torch.__version__, "cpu": str(torch.backends.cpu.get_cpu_capability()),
            "int4_group_size": str(INT4_GROUP_SIZE), "int4_dtype": str(INT4_COMPUTE_DTYPE),
            "int8_dtype": str(INT8_COMPUTE_DTYPE), "kernels": _native.LAYOUT if _native.available() else "torch"}


def save(path: Path, modules: dict[str, Any], *, mode: str, checkpoint_hash: str) -> None:
    """Write the packed ``modules`` (name -> packed module) and then the manifest."""
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    layers: dict[str, dict[str, Any]] = {}
    for name, module in modules.items():
        layers[name] = {"kind": module.kind, "out": module.out_features, "in": module.in_features}
        for key, t in module.packed().items():
            tensors[f"{name}.{key}"] = t.contiguous()
    env = _environment()
    manifest_path = path.with_suffix(".json")
    manifest_path.unlink(missing_ok=True)  # the old mark goes first: no manifest ever names a half file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:  # written straight to disk (no second copy in memory), then given its name
        save_file(tensors, str(tmp), metadata={**env, "mode": mode, "checkpoint_hash": checkpoint_hash})
        del tensors
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        manifest = {**env, "mode": mode, "checkpoint_hash": checkpoint_hash, "layers": layers,
                    "file_sha256": sha256_file(tmp), "file_bytes": tmp.stat().st_size}
        path.unlink(missing_ok=True)
        move_noreplace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    write_atomic(manifest_path, json.dumps(manifest, indent=1, sort_keys=True).encode())
    _LOGGER.info("wrote %s (%d layers)", path, len(layers))


def load(path: Path, *, mode: str, checkpoint_hash: str,
         shapes: dict[str, tuple[int, int]]) -> tuple[dict[str, tuple[str, dict[str, Any]]] | None, str]:
    """``({layer: (kind, tensors)}, "")`` when the cache matches, else ``(None, why)``.

    ``shapes`` are the model's (out, in) per linear layer; why is "missing" when there is no
    cache at all.
    """
    manifest_path = path.with_suffix(".json")
    if not manifest_path.is_file() or not path.is_file():
        return None, "missing"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"manifest unreadable: {exc}"
    if not isinstance(manifest, dict):
        return None, "manifest is not a JSON object"
    expected = {**_environment(), "mode": mode, "checkpoint_hash": checkpoint_hash}
    for key, value in expected.items():
        if manifest.get(key) != value:
            return None, f"{key} is {manifest.get(key)!r}, expected {value!r}"
    layers = manifest.get("layers")
    if not isinstance(layers, dict) or set(layers) != set(shapes):
        return None, "the cached layers differ from the model's"
    for name, (out_f, in_f) in shapes.items():
        entry = layers[name]
        if not isinstance(entry, dict) or (entry.get("out"), entry.get("in")) != (out_f, in_f):
            return None, f"layer {name} shape differs from the model's {out_f} x {in_f}"
    try:
        if path.stat().st_size != manifest.get("file_bytes") or sha256_file(path) != manifest.get("file_sha256"):
            return None, "the weights file does not match its recorded SHA-256 (damaged or changed)"
        return _read(path, layers), ""
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        return None, f"unreadable: {type(exc).__name__}: {exc}"


def _read(path: Path, layers: dict[str, dict[str, Any]]) -> dict[str, tuple[str, dict[str, Any]]]:
    from safetensors import safe_open

    from ._qlinear import CLASSES

    grouped: dict[str, dict[str, Any]] = {name: {} for name in layers}
    with safe_open(str(path), framework="pt") as fh:
        for key in fh.keys():  # noqa: SIM118 - safe_open is not iterable
            name, _, buffer = key.rpartition(".")
            if name not in grouped:
                raise KeyError(f"unexpected tensor {key}")
            grouped[name][buffer] = fh.get_tensor(key)
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, entry in layers.items():
        kind = str(entry.get("kind"))
        if kind not in CLASSES:
            raise KeyError(f"layer {name} has unknown kind {kind!r}")
        out[name] = (kind, grouped[name])
    return out
