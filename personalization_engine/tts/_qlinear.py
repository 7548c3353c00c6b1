"""Drop-in replacements for ``nn.Linear`` with compact weights, on PyTorch's own CPU kernels.

Each module keeps ``forward(x)`` of the Linear it replaces (any leading shape, output in the
input's dtype), so the HF forward and our decode loop call it unchanged. The weights live in
buffers, not parameters, so ``model.dtype`` (the first float parameter) still reports the
dtype of the float parts around them.

- :class:`Int8Linear`: per-output-channel symmetric int8 (``torch._weight_int8pack_mm``).
- :class:`Int4Linear`: group-wise asymmetric 4 bit, groups of :data:`INT4_GROUP_SIZE` input
  features (``torch._weight_int4pack_mm_for_cpu`` on the layout of
  ``torch._convert_weight_to_int4pack_for_cpu``); it needs ``out % 16 == 0`` and
  ``in % INT4_GROUP_SIZE == 0`` (:func:`int4_fits`).
- :class:`BF16Linear`: the weight in bfloat16, activations cast to bf16 and back.
- :class:`NativeInt4Linear` / :class:`NativeInt8Linear` / :class:`NativeBF16Linear`: the same
  modes on our own kernels (:mod:`._native`: 4 or 8 bit symmetric weights with an fp16 scale per
  block of 32 inputs, int8 activations, integer dot products; bf16 weights with fp32 activations);
  2-3x faster than the ones above at batch 1 on an AVX2 CPU without native bf16.
  :func:`quantize_linear` prefers them for CPU layers whenever the library built.

This module imports torch at the top; :mod:`.quant` imports it only when quantizing.
"""

from __future__ import annotations

import torch
from torch import nn

from . import _native

#: Input features per int4 scale/zero pair: 32 is the finest grouping the CPU kernel takes
#: and the usual choice of weight-only int4 LLM recipes (a 2 x 16-bit pair per 32 weights).
INT4_GROUP_SIZE = 32
#: ``inner_k_tiles`` argument of the CPU packer (it ignores it; 1 is valid for any ``in``).
_INNER_K_TILES = 1
#: Largest int4 / int8 code (4-bit codes 0..15; int8 symmetric -127..127 keeps 0 exact).
_INT4_MAX = 15
#: The 4-bit code of zero in the native symmetric int4 (:class:`NativeInt4Linear`).
_INT4_ZERO = 8
_INT8_MAX = 127
#: Activation dtype the int kernels compute in (inputs are cast to it, outputs cast back).
#: Measured on an AVX2 Zen 3 without native bf16, one code-predictor step's 36 linears at
#: batch 1, 2 threads (bench/results/bench_quant.json): int8 8.1 ms with bf16 activations vs
#: 56 ms with fp32, int4 7.7 vs 88 ms: the fp32 paths of these kernels are not vectorized.
INT8_COMPUTE_DTYPE = torch.bfloat16
INT4_COMPUTE_DTYPE = torch.bfloat16


def int4_fits(out_features: int, in_features: int) -> bool:
    """Whether the CPU int4 kernel takes this shape (else the layer is quantized to int8)."""
    return out_features % 16 == 0 and in_features % INT4_GROUP_SIZE == 0


class _PackedLinear(nn.Module):
    """Shared shape bookkeeping and bias handling; subclasses implement ``_mm(x2d)``."""

    #: Layer format in the cache (one per class); ``mode``: the quant mode it implements.
    kind = ""
    mode = ""
    bias: torch.Tensor | None

    def __init__(self, in_features: int, out_features: int, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.register_buffer("bias", None if bias is None else bias.detach().to(torch.float32).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = self._mm(x.reshape(-1, self.in_features))
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*lead, self.out_features).to(x.dtype)

    def _mm(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def qweight_device(self) -> torch.device:
        """Where the packed weight lives (CPU unless moved)."""
        return next(iter(self.buffers())).device

    def packed(self) -> dict[str, torch.Tensor]:
        """The tensors that rebuild this module with :meth:`from_packed` (for the cache)."""
        out = {k: v for k, v in self._buffers.items() if v is not None}
        return out

    @classmethod
    def from_packed(cls, tensors: dict[str, torch.Tensor]) -> _PackedLinear:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> _PackedLinear:  # pragma: no cover
        raise NotImplementedError


class Int8Linear(_PackedLinear):
    """Weight-only int8: ``y = (x @ q.T) * scale`` with one fp scale per output channel."""

    kind = mode = "int8"
    qweight: torch.Tensor
    scales: torch.Tensor

    def __init__(self, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__(qweight.shape[1], qweight.shape[0], bias)
        self.register_buffer("qweight", qweight.contiguous())
        self.register_buffer("scales", scales.to(INT8_COMPUTE_DTYPE).contiguous())

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Int8Linear:
        w = weight.detach().to(torch.float32)
        scales = (w.abs().amax(dim=1) / _INT8_MAX).clamp(min=1e-12)
        q = torch.round(w / scales[:, None]).clamp_(-_INT8_MAX, _INT8_MAX).to(torch.int8)
        return cls(q, scales, bias)

    @classmethod
    def from_packed(cls, tensors: dict[str, torch.Tensor]) -> Int8Linear:
        return cls(tensors["qweight"], tensors["scales"], tensors.get("bias"))

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        return torch._weight_int8pack_mm(x.to(INT8_COMPUTE_DTYPE).contiguous(), self.qweight, self.scales)


class Int4Linear(_PackedLinear):
    """Weight-only int4, asymmetric per group: ``w = q * scale + min`` for codes q in 0..15."""

    kind = mode = "int4"
    qweight: torch.Tensor
    scales_zeros: torch.Tensor

    def __init__(self, qweight: torch.Tensor, scales_zeros: torch.Tensor, in_features: int,
                 bias: torch.Tensor | None) -> None:
        super().__init__(in_features, qweight.shape[0], bias)
        self.register_buffer("qweight", qweight.contiguous())
        self.register_buffer("scales_zeros", scales_zeros.to(INT4_COMPUTE_DTYPE).contiguous())

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> Int4Linear:
        n, k = weight.shape
        if not int4_fits(n, k):
            raise ValueError(f"int4 needs out % 16 == 0 and in % {INT4_GROUP_SIZE} == 0, got {n} x {k}")
        w = weight.detach().to(torch.float32).reshape(n, k // INT4_GROUP_SIZE, INT4_GROUP_SIZE)
        lo = w.amin(dim=-1, keepdim=True)
        scale = ((w.amax(dim=-1, keepdim=True) - lo) / _INT4_MAX).clamp(min=1e-12)
        q = ((w - lo) / scale).round_().clamp_(0, _INT4_MAX).to(torch.int32).reshape(n, k)
        # The kernel computes (q - 8) * scale + zero, so zero is the group minimum plus 8 steps.
        zero = lo + 8 * scale
        scales_zeros = torch.cat([scale, zero], dim=-1).transpose(0, 1).contiguous()  # [k/g, n, 2]
        packed = torch._convert_weight_to_int4pack_for_cpu(q, _INNER_K_TILES)
        return cls(packed, scales_zeros, k, bias)

    @classmethod
    def from_packed(cls, tensors: dict[str, torch.Tensor]) -> Int4Linear:
        k = int(tensors["qweight"].shape[1]) * 2
        return cls(tensors["qweight"], tensors["scales_zeros"], k, tensors.get("bias"))

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        return torch._weight_int4pack_mm_for_cpu(x.to(INT4_COMPUTE_DTYPE).contiguous(), self.qweight,
                                                 INT4_GROUP_SIZE, self.scales_zeros)


class _BF16Weight(_PackedLinear):
    """The weight stored in bfloat16 (what :class:`BF16Linear` and :class:`NativeBF16Linear` share)."""

    weight: torch.Tensor

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__(weight.shape[1], weight.shape[0], bias)
        self.register_buffer("weight", weight.detach().to(torch.bfloat16).contiguous())

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> _BF16Weight:
        return cls(weight, bias)

    @classmethod
    def from_packed(cls, tensors: dict[str, torch.Tensor]) -> _BF16Weight:
        return cls(tensors["weight"], tensors.get("bias"))


class BF16Linear(_BF16Weight):
    """The weight in bfloat16; the input is cast to bf16 and the output back to the input dtype."""

    kind = mode = "bf16"

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x.to(torch.bfloat16), self.weight)


class _NativeLinear(_PackedLinear):
    """Shared forward of the :mod:`._native` kernels: fp32 activations in, fp32 out. One row (a
    head after a decode step) goes through ``gemv_one``, its output rows shared with the decode
    helper thread; several (a prefill) through the subclass's ``_gemm``."""

    #: The weight format ``_native.gemv_one`` reads: 4, 8 or 16 (bf16).
    bits = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if x2.dtype != torch.float32 or not x2.is_contiguous():
            x2 = x2.to(torch.float32).contiguous()
        y = torch.empty((x2.shape[0], self.out_features), dtype=torch.float32)
        if x2.shape[0] == 1:
            _native.gemv_one(self.bits, *self._operands(), x2, y)
        else:
            self._gemm(x2, y)
        if self.bias is not None:
            y += self.bias
        y = y.reshape(*lead, self.out_features)
        return y if x.dtype == torch.float32 else y.to(x.dtype)

    def _gemm(self, x: torch.Tensor, out: torch.Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _operands(self) -> tuple[torch.Tensor, torch.Tensor | None]:  # pragma: no cover - abstract
        """The packed weight and its scales (None for bf16), as the kernels take them."""
        raise NotImplementedError


def _fp16_blocks(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(stored fp16, the same as fp32 with zeros replaced by 1 for dividing)."""
    stored = values.to(torch.float16)
    f = stored.to(torch.float32)
    return stored, torch.where(f == 0, torch.ones_like(f), f)


def fuse_outputs(modules: list[nn.Module]) -> _NativeLinear | None:
    """One native module computing ``modules``' outputs side by side (q, k, v; gate, up), or None.

    All must be the same native class with the same input size and no bias. Each member's
    buffers become row ranges (views) of the fused module's, so memory is unchanged and every
    member still computes exactly what it did (the kernel computes output rows independently
    from the same quantized activations). One call instead of three quantizes the activations
    once and saves the per-call overhead.
    """
    first = modules[0]
    if not isinstance(first, _NativeLinear) or len(modules) < 2:
        return None
    cls = type(first)
    if any(type(m) is not cls or m.bias is not None or m.in_features != first.in_features for m in modules):
        return None
    keys = list(first.packed())
    fused = cls.from_packed({key: torch.cat([m._buffers[key] for m in modules]) for key in keys})
    start = 0
    for m in modules:
        stop = start + m.out_features
        for key in keys:
            m._buffers[key] = fused._buffers[key][start:stop]
        start = stop
    return fused


def _pack_pairs(q: torch.Tensor) -> torch.Tensor:
    """(n, blocks, 32) codes 0..15 -> (n, in / 2) bytes in ``_gemv.c``'s layout: blocks in pairs,
    byte j of a pair = code j of its first block | code j of its second << 4; an odd last block
    as byte j = code j | code j + 16 << 4."""
    n, blocks, size = q.shape
    pairs = q[:, : blocks // 2 * 2].reshape(n, blocks // 2, 2, size)
    parts = [(pairs[:, :, 0] | (pairs[:, :, 1] << 4)).reshape(n, -1)]
    if blocks % 2:
        odd = q[:, -1]
        parts.append(odd[:, : size // 2] | (odd[:, size // 2:] << 4))
    return torch.cat(parts, dim=1).contiguous()


class NativeInt4Linear(_NativeLinear):
    """Weight-only int4 on :mod:`._native`, symmetric: ``w = (q - 8) * scale`` per block of 32,
    q in 0..15 (GGML's Q4_0 rule: the block's largest-magnitude weight is code 0 exactly, the
    scale is that weight / -8). 4.5 bits per weight; an fp16 minimum per block as well (the
    asymmetric form) made it 5, and each decode step reads every weight once: 10 % more bytes."""

    kind, mode, bits = "q4sn", "int4", 4
    qweight: torch.Tensor
    scales: torch.Tensor

    def __init__(self, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__(qweight.shape[1] * 2, qweight.shape[0], bias)
        self.register_buffer("qweight", qweight.contiguous())
        self.register_buffer("scales", scales.contiguous())

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> NativeInt4Linear:
        n, k = weight.shape
        w = weight.detach().to(torch.float32).reshape(n, k // INT4_GROUP_SIZE, INT4_GROUP_SIZE)
        extreme = w.gather(-1, w.abs().argmax(dim=-1, keepdim=True))
        scale, div = _fp16_blocks(extreme / -_INT4_ZERO)
        # Codes from the stored (fp16) scale, so dequantizing gives the nearest level.
        q = (w / div).round_().add_(_INT4_ZERO).clamp_(0, _INT4_MAX).to(torch.uint8)
        return cls(_pack_pairs(q), scale.reshape(n, -1), bias)

    @classmethod
    def from_packed(cls, tensors: dict[str, torch.Tensor]) -> NativeInt4Linear:
        return cls(tensors["qweight"], tensors["scales"], tensors.get("bias"))

    def _gemm(self, x: torch.Tensor, out: torch.Tensor) -> None:
        _native.gemm_q4(self.qweight, self.scales, x, out)

    def _operands(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.qweight, self.scales

    def dequantize(self) -> torch.Tensor:
        """The float32 (out, in) weight these codes stand for."""
        n, blocks = self.out_features, self.in_features // INT4_GROUP_SIZE
        pairs = blocks // 2 * INT4_GROUP_SIZE
        both = self.qweight[:, :pairs].reshape(n, blocks // 2, 1, INT4_GROUP_SIZE)
        q = torch.cat([both & 0x0F, both >> 4], dim=2).reshape(n, -1, INT4_GROUP_SIZE)
        if blocks % 2:
            odd = self.qweight[:, pairs:].reshape(n, 1, INT4_GROUP_SIZE // 2)
            q = torch.cat([q, torch.cat([odd & 0x0F, odd >> 4], dim=-1)], dim=1)
        w = (q.to(torch.float32) - _INT4_ZERO) * self.scales.to(torch.float32)[..., None]
        return w.reshape(n, self.in_features)


class NativeInt8Linear(_NativeLinear):
    """Weight-only int8 on :mod:`._native`: ``w = q * scale`` per block of 32, q in -127..127."""

    kind, mode, bits = "q8n", "int8", 8
    qweight: torch.Tensor
    scales: torch.Tensor

    def __init__(self, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__(qweight.shape[1], qweight.shape[0], bias)
        self.register_buffer("qweight", qweight.contiguous())
        self.register_buffer("scales", scales.contiguous())

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> NativeInt8Linear:
        n, k = weight.shape
        w = weight.detach().to(torch.float32).reshape(n, k // INT4_GROUP_SIZE, INT4_GROUP_SIZE)
        scale, div = _fp16_blocks(w.abs().amax(dim=-1, keepdim=True) / _INT8_MAX)
        q = (w / div).round_().clamp_(-_INT8_MAX, _INT8_MAX).to(torch.int8)
        return cls(q.reshape(n, k), scale.reshape(n, -1), bias)

    @classmethod
    def from_packed(cls, tensors: dict[str, torch.Tensor]) -> NativeInt8Linear:
        return cls(tensors["qweight"], tensors["scales"], tensors.get("bias"))

    def _gemm(self, x: torch.Tensor, out: torch.Tensor) -> None:
        _native.gemm_q8(self.qweight, self.scales, x, out)

    def _operands(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.qweight, self.scales

    def dequantize(self) -> torch.Tensor:
        """The float32 (out, in) weight these codes stand for."""
        n, blocks = self.out_features, self.in_features // INT4_GROUP_SIZE
        q = self.qweight.reshape(n, blocks, INT4_GROUP_SIZE).to(torch.float32)
        return (q * self.scales.to(torch.float32)[..., None]).reshape(n, self.in_features)


class NativeBF16Linear(_BF16Weight, _NativeLinear):
    """The weight in bfloat16 on :mod:`._native`; activations stay float32 (exact products of
    the stored weights, unlike :class:`BF16Linear`, which also rounds the activations)."""

    kind, mode, bits = "bf16n", "bf16", 16

    def _gemm(self, x: torch.Tensor, out: torch.Tensor) -> None:
        _native.gemm_bf16(self.weight, x, out)

    def _operands(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.weight, None

    def dequantize(self) -> torch.Tensor:
        return self.weight.to(torch.float32)


class BF16Embedding(nn.Module):
    """An embedding table kept in bfloat16 (as stored in the hub checkpoint) that returns ``dtype``.

    Lossless when the table was loaded from bf16 weights: the lookup only copies rows, and
    the upcast of a bf16 value is exact. Halves the memory of the 151k x 2048 text embedding.
    """

    weight: torch.Tensor

    def __init__(self, weight: torch.Tensor, dtype: torch.dtype) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = (int(n) for n in weight.shape)
        self.out_dtype = dtype
        self.register_buffer("weight", weight.detach().to(torch.bfloat16))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(ids, self.weight).to(self.out_dtype)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, stored=bfloat16, out={self.out_dtype}"


#: Module class per mode; the cache stores ``kind`` per layer, so a mixed model (int4 with a
#: few int8 layers whose shapes the int4 kernel rejects) rebuilds exactly.
CLASSES: dict[str, type[_PackedLinear]] = {
    cls.kind: cls for cls in (Int8Linear, Int4Linear, BF16Linear, NativeInt4Linear, NativeInt8Linear,
                              NativeBF16Linear)}
_NATIVE: dict[str, type[_PackedLinear]] = {"int4": NativeInt4Linear, "int8": NativeInt8Linear,
                                           "bf16": NativeBF16Linear}


def native_fits(in_features: int) -> bool:
    """Whether :mod:`._native` takes this shape (any ``out``; ``in`` a multiple of 32)."""
    return in_features % _native.BLOCK == 0


def quantize_linear(linear: nn.Linear, mode: str, weight: torch.Tensor | None = None) -> _PackedLinear:
    """A packed replacement for ``linear`` (int4 falls back to int8 where the shape does not fit).

    Our native kernels when they built (:func:`._native.available`) and the shape fits, else
    PyTorch's. ``weight``: the same weight read from elsewhere (the checkpoint file), so the
    module's own (memory-mapped) copy is never touched.
    """
    source = linear.weight if weight is None else weight
    on_cpu = linear.weight.device.type == "cpu"
    if mode in _NATIVE and on_cpu and native_fits(linear.in_features) and _native.available():
        return _NATIVE[mode].from_float(source, linear.bias)
    if mode == "int4" and not int4_fits(linear.out_features, linear.in_features):
        mode = "int8"
    return CLASSES[mode].from_float(source, linear.bias)


def kernel_problems(mode: str) -> list[str]:
    """What this torch build lacks for ``mode`` (empty when everything needed is there, or when
    our native kernels serve it)."""
    if mode in _NATIVE and _native.available():
        return []
    needed = {"int8": ["_weight_int8pack_mm"],
              "int4": ["_weight_int4pack_mm_for_cpu", "_convert_weight_to_int4pack_for_cpu", "_weight_int8pack_mm"],
              }.get(mode, [])
    missing = [f"torch.{name}" for name in needed if not hasattr(torch, name)]
    if missing:
        return missing
    try:  # present but unusable (e.g. a build without the CPU kernel): one tiny call each
        layer = nn.Linear(INT4_GROUP_SIZE, 16, bias=False)
        if mode in ("int8", "int4"):
            quantize_linear(layer, mode)(torch.zeros(1, INT4_GROUP_SIZE))
    except (RuntimeError, NotImplementedError) as exc:
        return [f"{mode} kernel call failed: {exc}"]
    return []
