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

This module imports torch at the top; :mod:`.quant` imports it only when quantizing.
"""

from __future__ import annotations

import torch
from torch import nn

#: Input features per int4 scale/zero pair: 32 is the finest grouping the CPU kernel takes
#: and the usual choice of weight-only int4 LLM recipes (a 2 x 16-bit pair per 32 weights).
INT4_GROUP_SIZE = 32
#: ``inner_k_tiles`` argument of the CPU packer (it ignores it; 1 is valid for any ``in``).
_INNER_K_TILES = 1
#: Largest int4 / int8 code (4-bit codes 0..15; int8 symmetric -127..127 keeps 0 exact).
_INT4_MAX = 15
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

    kind = ""
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

    kind = "int8"
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

    kind = "int4"
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


class BF16Linear(_PackedLinear):
    """The weight in bfloat16; the input is cast to bf16 and the output back to the input dtype."""

    kind = "bf16"
    weight: torch.Tensor

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__(weight.shape[1], weight.shape[0], bias)
        self.register_buffer("weight", weight.detach().to(torch.bfloat16).contiguous())

    @classmethod
    def from_float(cls, weight: torch.Tensor, bias: torch.Tensor | None = None) -> BF16Linear:
        return cls(weight, bias)

    @classmethod
    def from_packed(cls, tensors: dict[str, torch.Tensor]) -> BF16Linear:
        return cls(tensors["weight"], tensors.get("bias"))

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x.to(torch.bfloat16), self.weight)


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
CLASSES: dict[str, type[_PackedLinear]] = {"int8": Int8Linear, "int4": Int4Linear, "bf16": BF16Linear}


def quantize_linear(linear: nn.Linear, mode: str, weight: torch.Tensor | None = None) -> _PackedLinear:
    """A packed replacement for ``linear`` (int4 falls back to int8 where the shape does not fit).

    ``weight``: the same weight read from elsewhere (the checkpoint file), so the module's own
    (memory-mapped) copy is never touched.
    """
    if mode == "int4" and not int4_fits(linear.out_features, linear.in_features):
        mode = "int8"
    return CLASSES[mode].from_float(linear.weight if weight is None else weight, linear.bias)


def kernel_problems(mode: str) -> list[str]:
    """What this torch build lacks for ``mode`` (empty when everything needed is there)."""
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
