"""Our own C kernels, built at first use, called via ctypes: int4 / int8 / bf16 products (``_gemv.c``), one
decode step of a stack (``_step.c``), its helper thread (``_pool.c``) and the codec's SnakeBeta (``_snake.c``).

Why: PyTorch's weight-only CPU kernels (``_weight_int4pack_mm_for_cpu``, ``_weight_int8pack_mm``)
dequantize to bf16 and are compute-bound at batch 1 on a CPU without native bf16: one code
predictor step (35 linears, 77 M weights) takes 13 ms at int4 on one Zen 3 thread, about
3 GB/s of packed weights. ``_gemv.c`` quantizes the activation row to int8 per block of 32 and
sums the products in integers with AVX2 (``vpmaddubsw``), as llama.cpp's Q4_1 x Q8 dot does;
the same step takes about 4.5 ms, near the memory bandwidth of one core. One decode step of a
whole stack is one call (``_step.c``), and its large products are shared with a helper thread at
idle priority (``_pool.c``; see :func:`decode_helper`): two cores stream about twice the weights.

Built with the system C compiler (``cc -O3 -shared _gemv.c _step.c _pool.c _snake.c``; AVX2 + FMA + F16C
when the CPU has all three, plain C otherwise; VNNI on top where the CPU has it, for the integer
sums: the same results in fewer instructions) into the user cache, keyed by the sources' hash and
the flags, and
written atomically (a half-built library is never loaded). Where no compiler is found or
``PE_NATIVE_KERNELS=0`` is set, :func:`library` returns None and the caller keeps PyTorch's
kernels. ctypes releases the GIL during a call, so the codec decoder's thread keeps running.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..fileio import sha256_bytes, user_cache_dir

_LOGGER = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("_gemv.c")
#: Every file of the library (compiled together; all of them key the built file).
SOURCES = (SOURCE, SOURCE.with_name("_step.c"), SOURCE.with_name("_pool.c"), SOURCE.with_name("_snake.c"))
HEADER = SOURCE.with_name("_gemv.h")
#: Set to "0" to keep the decode step's products on the decode thread alone (no helper thread).
HELPER_SWITCH = "PE_DECODE_HELPER"
#: Set to "0" to keep PyTorch's kernels (comparisons, or a machine where the build misbehaves).
ENV_SWITCH = "PE_NATIVE_KERNELS"
#: Block of input features per scale (and per activation scale); K must be a multiple.
BLOCK = 32
#: The packed weight layout ``_gemv.c`` reads; part of the quant cache's key (a cache packed
#: for another layout is rebuilt, never misread).
LAYOUT = "q4sym-pairs+q8-blocks32-fp16-scales+bf16-v2"
_ABI = 9
_SIMD_FLAGS = ("-mavx2", "-mfma", "-mf16c")
_AVX_VNNI_FLAGS = ("-mavxvnni",)
_AVX512_VNNI_FLAGS = ("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni")

_state: dict[str, Any] = {}


def _cpu_flags() -> set[str]:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def _flags() -> list[str]:
    """The compiler flags for this CPU: AVX2 + FMA + F16C when it has them, and VNNI on top for
    the integer products (``pe_dot4`` in ``_gemv.h``): AVX-512 (F, BW, VL, VNNI), whose q4
    products take two blocks per instruction, or else AVX-VNNI."""
    cpu = _cpu_flags()
    simd = {"avx2", "fma", "f16c"} <= cpu
    vnni: tuple[str, ...] = ()
    if simd and {"avx512_vnni", "avx512vl", "avx512f", "avx512bw"} <= cpu:
        vnni = _AVX512_VNNI_FLAGS
    elif simd and "avx_vnni" in cpu:
        vnni = _AVX_VNNI_FLAGS
    return ["-O3", "-fPIC", "-shared", "-fno-math-errno", *(_SIMD_FLAGS if simd else ()), *vnni]


def _flag_choices() -> list[list[str]]:
    """The flags to try, best first: this CPU's (:func:`_flags`), then without the VNNI / AVX-512
    ones, which a compiler older than the CPU may not know (gcc < 11 has no ``-mavxvnni``)."""
    best = _flags()
    vnni = (*_AVX_VNNI_FLAGS, *_AVX512_VNNI_FLAGS)
    plain = [f for f in best if f not in vnni]
    return [best] if plain == best else [best, plain]


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _build(compiler: str, flags: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *flags, "-o", tmp, *map(str, SOURCES), "-lm", "-lpthread"], check=True,
                       capture_output=True, text=True, timeout=120)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def library() -> Any | None:
    """The loaded kernel library, or None (disabled, not Linux/macOS, no compiler, build failed).

    Built once per source version and machine kind; the outcome is remembered for the process.
    """
    if "lib" in _state:
        return _state["lib"]
    _state["lib"] = None
    _state["why"] = ""
    if os.environ.get(ENV_SWITCH, "1").strip() == "0":
        _state["why"] = f"disabled by {ENV_SWITCH}=0"
        return None
    if not sys.platform.startswith(("linux", "darwin")):
        _state["why"] = f"not built on {sys.platform}"
        return None
    text = b"".join(path.read_bytes() for path in (*SOURCES, HEADER))
    lib = None
    for flags in _flag_choices():
        key = sha256_bytes(text + " ".join(flags).encode() + sys.platform.encode())[:16]
        target = user_cache_dir("kernels") / f"pe_gemv-{key}.so"
        try:
            if not target.is_file():
                compiler = _compiler()
                if compiler is None:
                    _state["why"] = "no C compiler (cc, gcc or clang) on PATH"
                    _LOGGER.warning("native int kernels unavailable: %s; using PyTorch's", _state["why"])
                    return None
                _build(compiler, flags, target)
            lib = ctypes.CDLL(str(target))
            if lib.pe_abi_version() != _ABI:
                raise OSError(f"{target} has ABI {lib.pe_abi_version()}, expected {_ABI}")
            break
        except (OSError, subprocess.SubprocessError) as exc:
            lib = None
            detail = getattr(exc, "stderr", "") or str(exc)
            _state["why"] = f"build or load failed: {detail.strip()[:300]}"
            _LOGGER.warning("native int kernels: the build with %s failed (%s)",
                            " ".join(f for f in flags if f.startswith("-m")) or "no SIMD flags", _state["why"])
    if lib is None:
        _LOGGER.warning("native int kernels unavailable (%s); using PyTorch's", _state["why"])
        return None
    _state["why"] = ""
    vp, i = ctypes.c_void_p, ctypes.c_int
    lib.pe_gemm_q4.argtypes = [vp, vp, vp, vp, i, i, i, i, i]
    lib.pe_gemm_q8.argtypes = [vp, vp, vp, vp, i, i, i, i, i]
    lib.pe_gemm_bf16.argtypes = [vp, vp, vp, i, i, i, i, i]
    lib.pe_gemm_q4.restype = lib.pe_gemm_q8.restype = lib.pe_gemm_bf16.restype = i
    lib.pe_stack_rows.argtypes = [ctypes.POINTER(_Stack), vp, i, i, ctypes.POINTER(vp), ctypes.POINTER(vp), i]
    lib.pe_stack_rows.restype = i
    lib.pe_gemv_one.argtypes = [i, vp, vp, i, i, vp, vp]
    lib.pe_gemv_one.restype = i
    lib.pe_pool_enable.argtypes = [i]
    lib.pe_pool_test_delay.argtypes = [ctypes.c_long]
    lib.pe_pool_helper_chunks.restype = lib.pe_pool_stolen_chunks.restype = ctypes.c_long
    lib.pe_snake_time_major.argtypes = [vp, vp, vp, vp, ctypes.c_long, i]
    lib.pe_snake_time_major.restype = None
    _state["lib"] = lib
    _default_helper()
    _state["simd"] = int(lib.pe_simd())
    return lib


def describe() -> str:
    """One line for reports: "native (AVX2)" or "native (plain C)" (+ the decode helper thread when
    on), or why PyTorch's kernels are used."""
    if _state.get("off"):
        return "torch (native kernels switched off)"
    if library() is None:
        return f"torch ({_state.get('why', '')})"
    kind = {0: "native (plain C)", 1: "native (AVX2)", 2: "native (AVX2 + VNNI)"}.get(
        int(_state.get("simd") or 0), "native (AVX2 + AVX-512 VNNI)")
    return kind + (" + decode helper thread" if _state.get("helper") else "")


def decode_helper(on: bool | None = None) -> bool:
    """Whether the decode step shares its products with a helper thread (``_pool.c``); ``on`` sets it.

    On by default on Linux with two or more CPUs, unless :data:`HELPER_SWITCH` is "0" (set when
    the library loads). The helper runs at idle priority (SCHED_IDLE, which only Linux has; so
    elsewhere it stays off unless turned on here): it takes only what the other core has spare
    (the streaming codec decoder first), and results are identical either way.
    """
    lib = library()
    if lib is None:
        return False
    if on is not None:
        _state["helper"] = bool(lib.pe_pool_enable(int(on)))
    return bool(_state.get("helper", False))


def _default_helper() -> None:
    if "helper" not in _state:
        wanted = (sys.platform.startswith("linux") and (os.cpu_count() or 1) >= 2
                  and os.environ.get(HELPER_SWITCH, "1").strip() != "0")
        decode_helper(wanted)


def helper_counts() -> tuple[int, int]:
    """(chunks the helper computed, chunks the caller took back from it) since the process began."""
    lib = _lib()
    return int(lib.pe_pool_helper_chunks()), int(lib.pe_pool_stolen_chunks())


def available() -> bool:
    """Whether new packed layers use these kernels (built, and not switched off by :func:`disabled`)."""
    return not _state.get("off") and library() is not None


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """PyTorch's kernels for layers quantized in the block (tests, side-by-side benches)."""
    before = _state.get("off", False)
    _state["off"] = True
    try:
        yield
    finally:
        _state["off"] = before


def _lib() -> Any:
    lib = _state.get("lib") or library()
    if lib is None:
        raise RuntimeError(f"the native int kernels are unavailable here ({_state.get('why')}); "
                           "quantize with them disabled (PE_NATIVE_KERNELS=0) to use PyTorch's")
    return lib


def gemv_one(bits: int, weight: Any, scales: Any, x: Any, out: Any) -> None:
    """``out[1, N] = x[1, K] @ W^T`` for one activation row, the rows shared with the decode
    helper thread (``pe_gemv_one``): the heads after each decode step. ``bits`` 4, 8 or 16 (bf16
    bits; ``scales`` None); fp32, contiguous."""
    rc = _lib().pe_gemv_one(bits, weight.data_ptr(), None if scales is None else scales.data_ptr(),
                            int(out.shape[1]), int(x.shape[1]), x.data_ptr(), out.data_ptr())
    if rc != 0:
        raise RuntimeError(f"pe_gemv_one failed for a {bits}-bit {tuple(out.shape)} x {tuple(x.shape)} product "
                           "(shape, or out of memory)")


def gemm_q4(weight: Any, scales: Any, x: Any, out: Any) -> None:
    """``out[M, N] = x[M, K] @ W^T`` for a q4 weight (see ``_gemv.c``); fp32, contiguous."""
    lib, (m, k), n = _lib(), x.shape, out.shape[1]
    ptrs = (weight.data_ptr(), scales.data_ptr(), x.data_ptr(), out.data_ptr(), m, n, k)
    _split(lambda lo, hi: lib.pe_gemm_q4(*ptrs, lo, hi), "pe_gemm_q4", m, n, k)


def gemm_q8(weight: Any, scales: Any, x: Any, out: Any) -> None:
    """``out[M, N] = x[M, K] @ W^T`` for a q8 weight (see ``_gemv.c``); fp32, contiguous."""
    lib, (m, k), n = _lib(), x.shape, out.shape[1]
    ptrs = (weight.data_ptr(), scales.data_ptr(), x.data_ptr(), out.data_ptr(), m, n, k)
    _split(lambda lo, hi: lib.pe_gemm_q8(*ptrs, lo, hi), "pe_gemm_q8", m, n, k)


def gemm_bf16(weight: Any, x: Any, out: Any) -> None:
    """``out[M, N] = x[M, K] @ W^T`` for bf16 weight bits (uint16 view); fp32, contiguous."""
    lib, (m, k), n = _lib(), x.shape, out.shape[1]
    ptrs = (weight.data_ptr(), x.data_ptr(), out.data_ptr(), m, n, k)
    _split(lambda lo, hi: lib.pe_gemm_bf16(*ptrs, lo, hi), "pe_gemm_bf16", m, n, k)


#: Threads that share a prefill product (several activation rows: the prompt); one-row products
#: (decode steps) stay on the caller's thread, where the streaming codec has the other core.
PREFILL_THREADS = max(1, min(4, os.cpu_count() or 1))
#: Multiply-accumulates below which a product is not split (a thread hand-off costs ~50 us).
_SPLIT_MACS = 8_000_000
_pool: list[Any] = []


def _split(call: Callable[[int, int], int], name: str, m: int, n: int, k: int) -> None:
    """Run ``call(n0, n1)`` over the output rows, split across :data:`PREFILL_THREADS` for prefill.

    ctypes releases the GIL, so the parts run in parallel; each writes its own output columns.
    """
    parts = PREFILL_THREADS if m > 1 and m * n * k >= _SPLIT_MACS and n >= 64 else 1
    if any(_in_parts(call, n, parts)):
        raise RuntimeError(f"{name} failed for {m} x {k} activations and {n} outputs (K % {BLOCK} or memory)")


def _in_parts(call: Callable[[int, int], Any], n: int, parts: int) -> list[Any]:
    """``call(lo, hi)`` over ``parts`` consecutive ranges of ``range(n)``, the first on this thread,
    the others on the pool's (ctypes releases the GIL); their results in order."""
    bounds = [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]
    futures = []
    if parts > 1:
        if not _pool:
            from concurrent.futures import ThreadPoolExecutor

            _pool.append(ThreadPoolExecutor(max_workers=PREFILL_THREADS - 1, thread_name_prefix="pe-gemm"))
        futures = [_pool[0].submit(call, lo, hi) for lo, hi in bounds[1:]]
    return [call(*bounds[0])] + [f.result() for f in futures]


#: Elements from which :func:`snake` splits its rows across the caller's torch threads.
_SPLIT_ELEMENTS = 1 << 18


def snake(x: Any, alpha: Any, inv_beta: Any) -> Any:
    """``x + inv_beta * sin(alpha * x)^2`` per channel (the codec's SnakeBeta, ``_snake.c``), or
    None where this kernel cannot run it (the caller then uses PyTorch's ops).

    ``x``: fp32 CPU (B, C, 1, T) in channels-last memory (time-major rows of C; anything else:
    None, as without the library); ``alpha``, ``inv_beta``: C contiguous fp32 values. Split across
    the caller's torch threads (one in a streamed decode, where the decode loop has the other core)."""
    import torch

    if (x.dtype != torch.float32 or alpha.dtype != torch.float32 or x.device.type != "cpu" or x.dim() != 4
            or x.shape[2] != 1 or not x.is_contiguous(memory_format=torch.channels_last) or not available()):
        return None
    out = torch.empty_like(x)  # keeps x's memory format
    lib, c, item = _lib(), int(x.shape[1]), x.element_size()
    xp, yp, ap, bp = x.data_ptr(), out.data_ptr(), alpha.data_ptr(), inv_beta.data_ptr()

    def call(lo: int, hi: int) -> None:
        lib.pe_snake_time_major(xp + lo * c * item, yp + lo * c * item, ap, bp, hi - lo, c)

    parts = max(1, min(torch.get_num_threads(), PREFILL_THREADS)) if x.numel() >= _SPLIT_ELEMENTS else 1
    _in_parts(call, int(x.shape[0]) * int(x.shape[3]), parts)
    return out


# --- one decode step of a whole stack (pe_stack_rows) --------------------------------------------


#: The activation classes the C step's SiLU stands for (torch's and transformers').
_SILU = ("SiLU", "SiLUActivation")


class _Lin(ctypes.Structure):
    _fields_ = [("bits", ctypes.c_int), ("n", ctypes.c_int), ("k", ctypes.c_int), ("w", ctypes.c_void_p),
                ("d", ctypes.c_void_p)]


class _Layer(ctypes.Structure):
    _fields_ = [("in_norm", ctypes.c_void_p), ("post_norm", ctypes.c_void_p), ("q_norm", ctypes.c_void_p),
                ("k_norm", ctypes.c_void_p), ("qkv", _Lin), ("o", _Lin), ("gate_up", _Lin), ("down", _Lin)]


class _Stack(ctypes.Structure):
    _fields_ = [("layers", ctypes.c_int), ("hidden", ctypes.c_int), ("heads", ctypes.c_int),
                ("kv_heads", ctypes.c_int), ("head_dim", ctypes.c_int), ("inter", ctypes.c_int),
                ("rope_len", ctypes.c_int), ("eps", ctypes.c_float), ("scaling", ctypes.c_float),
                ("cos", ctypes.c_void_p), ("sin", ctypes.c_void_p), ("final_norm", ctypes.c_void_p),
                ("layer", ctypes.POINTER(_Layer))]


def _lin(module: Any) -> _Lin | None:
    from ._qlinear import _NativeLinear

    if not isinstance(module, _NativeLinear):
        return None
    weight, scales = module._operands()
    return _Lin(module.bits, module.out_features, module.in_features, weight.data_ptr(),
                None if scales is None else scales.data_ptr())


class StackStep:
    """:func:`.layers.forward` for one token (or a short prefill), in one native call (``pe_stack_rows``).

    Built by :meth:`build` only when the whole stack fits what the C step implements: every
    projection native-packed (q|k|v and gate|up fused), SiLU, fp32 norms and rotary tables, one
    RMSNorm epsilon, no biases. Holds references to every tensor it points into.
    """

    def __init__(self, struct: _Stack, keep: list[Any]) -> None:
        self._struct = struct
        self._keep = keep

    def __del__(self) -> None:
        # A helper thread whose chunk the caller took back may still be reading these weights:
        # wait for it (microseconds; only ever longer while the machine is saturated) before
        # the references that keep them alive go.
        lib = _state.get("lib") if isinstance(_state, dict) else None  # None: interpreter exit
        if lib is not None:
            lib.pe_pool_quiesce()

    @classmethod
    def build(cls, stack: Any) -> StackStep | None:
        """From a :class:`.layers.Stack`, or None when anything does not fit (then PyTorch runs it)."""
        import torch

        if library() is None:
            return None
        eps = {float(stack.norm_eps)}
        tensors: list[Any] = [stack.cos, stack.sin, stack.norm_weight]
        layers = []
        inter = 0
        for layer, (qkv, gate_up) in zip(stack.layers, stack.fused, strict=True):
            attn, mlp = layer.self_attn, layer.mlp
            lins = [_lin(m) for m in (qkv, attn.o_proj, gate_up, mlp.down_proj)]
            if any(lin is None for lin in lins) or type(mlp.act_fn).__name__ not in _SILU:
                return None
            if any(getattr(m, "bias", None) is not None for m in (qkv, attn.o_proj, gate_up, mlp.down_proj)):
                return None
            norms = [layer.input_layernorm, layer.post_attention_layernorm, attn.q_norm, attn.k_norm]
            eps.update(float(n.variance_epsilon) for n in norms)
            tensors += [n.weight for n in norms]
            inter = int(mlp.down_proj.in_features)
            layers.append(_Layer(*(n.weight.data_ptr() for n in norms), *lins))
        if len(eps) != 1 or any(t.dtype != torch.float32 or not t.is_contiguous() or t.device.type != "cpu"
                                for t in tensors):
            return None
        array = (_Layer * len(layers))(*layers)
        struct = _Stack(len(layers), int(stack.norm_weight.shape[0]), stack.heads, stack.kv_heads, stack.head_dim,
                        inter, int(stack.cos.shape[0]), eps.pop(), stack.scaling, stack.cos.data_ptr(),
                        stack.sin.data_ptr(), stack.norm_weight.data_ptr(), array)
        return cls(struct, [tensors, array, stack])

    def pointers(self, cache: Any) -> tuple[Any, Any, int]:
        """The cache's key and value pointer arrays and capacity (build once per cache)."""
        import torch

        if any(t.dtype != torch.float32 or not t.is_contiguous() for t in (*cache.keys, *cache.values)):
            raise ValueError("the native step needs contiguous float32 KV caches")
        keys = (ctypes.c_void_p * len(cache.keys))(*(t.data_ptr() for t in cache.keys))
        values = (ctypes.c_void_p * len(cache.values))(*(t.data_ptr() for t in cache.values))
        return keys, values, int(cache.keys[0].shape[2])

    def __call__(self, x: Any, position: int, pointers: tuple[Any, Any, int]) -> Any:
        """Hidden states (1, n, hidden) after the stack for the tokens ``x`` (1, n, hidden) at
        ``position`` .. ``position + n - 1``, each attending to the cache up to itself (n > 1: a
        short causal prefill; each weight is read once for all n tokens)."""
        n = int(x.shape[1])
        out = x.reshape(-1).clone()  # the C step works in place on a contiguous copy
        keys, values, capacity = pointers
        rc = _lib().pe_stack_rows(ctypes.byref(self._struct), out.data_ptr(), int(position), n, keys, values,
                                  capacity)
        if rc != 0:
            raise RuntimeError(f"pe_stack_rows failed at positions {position}..{position + n - 1} (capacity "
                               f"{capacity}, rotary table {self._struct.rope_len}) or out of memory")
        return out.view(1, n, -1)
