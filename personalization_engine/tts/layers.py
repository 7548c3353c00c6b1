"""A lean functional forward over the talker's and the code predictor's decoder layers.

transformers' forward costs a lot per call at batch 1 (masks, cache objects, output records,
hooks); this is the same arithmetic, written once for both stacks of qwen-tts 0.1.1
(``Qwen3TTSTalkerDecoderLayer`` and ``Qwen3TTSDecoderLayer``: RMSNorm -> attention with
per-head q/k RMSNorm and rotary embedding -> residual -> RMSNorm -> SwiGLU MLP -> residual), over
a preallocated static KV cache.

Rules that keep it fast and swappable:

* Linear layers are called as modules (``attn.q_proj(x)``), never through their ``.weight``:
  ``tts/quant.py`` replaces them with packed int8/int4 modules in place.
* No shape or Python branch depends on data: a decode step writes its key/value at a position
  held in a tensor (``index_copy_``) and attends over the whole cache with a boolean mask, so the
  step has static shapes (CUDA-graph friendly). Prefill attends causally over its own length.
* The talker's interleaved M-RoPE gets the same position on all three axes for text and codec
  tokens (qwen-tts derives them from a mask of ones), which makes it plain RoPE; so both stacks
  use one precomputed cos/sin table, computed exactly as the rotary modules compute theirs.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F


@dataclass
class KVCache:
    """Per layer key and value tensors (1, kv_heads, capacity, head_dim), zero-filled."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    pointers: Any = None
    """The native step's pointer arrays into these tensors (made at its first use)."""

    @classmethod
    def allocate(cls, layers: int, kv_heads: int, capacity: int, head_dim: int, *, dtype: torch.dtype,
                 device: torch.device) -> KVCache:
        # Zeros, not empty: masked slots still enter softmax(..) @ V as 0 x value, and 0 x NaN = NaN.
        shape = (1, kv_heads, capacity, head_dim)
        return cls([torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)],
                   [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)])

    @property
    def capacity(self) -> int:
        return int(self.keys[0].shape[2])


@dataclass(frozen=True)
class Stack:
    """One decoder stack's modules and shapes, read once from the qwen-tts model."""

    layers: list[Any]
    norm_weight: torch.Tensor
    norm_eps: float
    heads: int
    kv_heads: int
    head_dim: int
    scaling: float
    cos: torch.Tensor
    """(capacity, head_dim) rotary cosines in the activation dtype."""
    sin: torch.Tensor
    """(capacity, head_dim) rotary sines with the first half negated (see :func:`_rope`)."""
    fused: list[tuple[Any, Any]]
    """Per layer: the fused q/k/v and gate/up projections, or None each (see :func:`_fused`)."""
    native: Any = None
    """:class:`._native.StackStep` when the whole stack runs natively for one token, else None."""

    @classmethod
    def from_model(cls, model: Any, config: Any, capacity: int, dtype: torch.dtype) -> Stack:
        """``model``: ``Qwen3TTSTalkerModel`` or ``Qwen3TTSTalkerCodePredictorModel``."""
        attn = model.layers[0].self_attn
        cos, sin = rope_table(model.rotary_emb, capacity, dtype)
        stack = cls(list(model.layers), model.norm.weight, float(model.norm.variance_epsilon),
                    int(config.num_attention_heads), int(config.num_key_value_heads), int(attn.head_dim),
                    float(attn.scaling), cos, sin, [_fused(layer) for layer in model.layers])
        from ._native import StackStep

        return replace(stack, native=StackStep.build(stack))

    def allocate(self, capacity: int) -> KVCache:
        return KVCache.allocate(len(self.layers), self.kv_heads, capacity, self.head_dim,
                                dtype=self.cos.dtype, device=self.cos.device)


def rope_table(rotary: Any, length: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (length, head_dim) for positions 0..length-1, as the rotary module computes them
    (float32 angles from its ``inv_freq`` buffer, ``attention_scaling``, cast to ``dtype``); the
    first half of sin negated, for :func:`_rope`."""
    inv_freq = rotary.inv_freq.float()
    positions = torch.arange(length, device=inv_freq.device, dtype=torch.float32)
    freqs = positions[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    scale = rotary.attention_scaling
    cos, sin = (emb.cos() * scale).to(dtype), (emb.sin() * scale).to(dtype)
    half = sin.shape[-1] // 2
    return cos, torch.cat((-sin[:, :half], sin[:, half:]), dim=-1)


#: Per decoder layer, its fused projections (built once; the layer's own modules then share them).
_FUSED: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()


def _fused(layer: Any) -> tuple[Any, Any]:
    """(q|k|v, gate|up) as single modules when the layer's linears are our native packed ones
    (:func:`._qlinear.fuse_outputs`), else (None, None): float and PyTorch-kernel layers are
    called one by one, exactly as qwen-tts calls them."""
    if layer not in _FUSED:
        from ._qlinear import fuse_outputs

        attn, mlp = layer.self_attn, layer.mlp
        _FUSED[layer] = (fuse_outputs([attn.q_proj, attn.k_proj, attn.v_proj]),
                         fuse_outputs([mlp.gate_proj, mlp.up_proj]))
    return _FUSED[layer]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``Qwen3TTSRMSNorm``: normalise in float32, scale in the input dtype.

    For float32 input, ``F.rms_norm`` is the same arithmetic in one call (bit-identical here:
    tests/test_tts_engine.py); other dtypes keep qwen-tts' order of casts.
    """
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    dtype = x.dtype
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(dtype)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x * cos + rotate_half(x) * sin`` with rotate_half(x) = (-x2, x1): the sign lives in the
    table (``-x2 * s == x2 * -s`` exactly), so the rotation is one ``roll`` (bit-identical)."""
    return (x * cos) + (x.roll(x.shape[-1] // 2, dims=-1) * sin)


def _attention(stack: Stack, layer: Any, x: torch.Tensor, cache: KVCache, idx: int, cos: torch.Tensor,
               sin: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Self-attention of ``x`` (1, n, hidden) at ``positions``; writes its keys/values to the cache.

    ``mask`` None: prefill (causal over the cache's first n slots, positions 0..n-1); otherwise a
    boolean (n, capacity) mask of the slots each query may see (decode over the whole cache).
    """
    attn = layer.self_attn
    n = x.shape[1]
    qkv = stack.fused[idx][0]
    if qkv is not None:
        sizes = (stack.heads * stack.head_dim, stack.kv_heads * stack.head_dim, stack.kv_heads * stack.head_dim)
        q, k, v = qkv(x).split(sizes, dim=-1)
    else:
        q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
    q = q.view(1, n, stack.heads, stack.head_dim)
    k = k.view(1, n, stack.kv_heads, stack.head_dim)
    v = v.view(1, n, stack.kv_heads, stack.head_dim).transpose(1, 2)
    q = rms_norm(q, attn.q_norm.weight, attn.q_norm.variance_epsilon).transpose(1, 2)
    k = rms_norm(k, attn.k_norm.weight, attn.k_norm.variance_epsilon).transpose(1, 2)
    q, k = _rope(q, cos, sin), _rope(k, cos, sin)
    keys, values = cache.keys[idx], cache.values[idx]
    keys.index_copy_(2, positions, k)
    values.index_copy_(2, positions, v)
    if mask is None:
        out = F.scaled_dot_product_attention(q, keys[:, :, :n], values[:, :, :n], is_causal=n > 1,
                                             scale=stack.scaling, enable_gqa=True)
    else:
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=stack.scaling,
                                             enable_gqa=True)
    return attn.o_proj(out.transpose(1, 2).reshape(1, n, stack.heads * stack.head_dim))


#: Prefills of up to this many positions run as one native call (the code predictor's
#: two-position start of every frame: ~13 ms of PyTorch ops per frame on the full-size 0.6B at
#: int4; natively each weight is read once for both positions).
NATIVE_PREFILL_MAX = 2


def forward(stack: Stack, x: torch.Tensor, cache: KVCache, positions: torch.Tensor,
            mask: torch.Tensor | None = None, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Run the stack on ``x`` (1, n, hidden) at ``positions`` (n,); the final-normed hidden states.

    Prefill: ``positions`` = 0..n-1 and ``mask`` None. Decode: any positions with the boolean
    mask (n, capacity) of visible slots (see :func:`visible`). ``rope``: the (cos, sin) rows of
    ``positions`` when the caller has them already (else gathered here).
    """
    n = int(x.shape[1])
    if stack.native is not None and x.dtype == torch.float32 and (
            (mask is not None and n == 1) or (mask is None and n <= NATIVE_PREFILL_MAX)):
        if cache.pointers is None:
            cache.pointers = stack.native.pointers(cache)
        # decode: one token at positions[0]; a short prefill: the tokens at 0..n-1 in one call
        return stack.native(x, int(positions[0]) if mask is not None else 0, cache.pointers)
    cos, sin = rope if rope is not None else (stack.cos.index_select(0, positions),
                                              stack.sin.index_select(0, positions))
    for idx, layer in enumerate(stack.layers):
        h = rms_norm(x, layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon)
        x = x + _attention(stack, layer, h, cache, idx, cos, sin, positions, mask)
        h = rms_norm(x, layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon)
        mlp = layer.mlp
        gate_up = stack.fused[idx][1]
        if gate_up is not None:
            gate, up = gate_up(h).chunk(2, dim=-1)
        else:
            gate, up = mlp.gate_proj(h), mlp.up_proj(h)
        x = x + mlp.down_proj(mlp.act_fn(gate) * up)
    return rms_norm(x, stack.norm_weight, stack.norm_eps)


def visible(positions: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """Boolean (n, capacity) mask of the cache slots the queries at ``positions`` (n,) attend to
    (each its own slot and the ones before it)."""
    return slots.unsqueeze(0) <= positions.unsqueeze(1)
