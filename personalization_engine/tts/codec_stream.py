"""The optimized 12 Hz codec decoder chunk by chunk, with carried state (CPU streaming).

:class:`FrontStream` runs the frame-rate half (quantizer, causal pre-conv, sliding-window
transformer) keeping the pre-conv's last inputs and the transformer's KV cache;
:class:`BackHalfStream` runs the sample-rate half of a decoder rewritten by
:func:`.codec.optimize_decoder`, keeping each conv's last inputs and each transposed conv's
tail. Decoding chunks one after the other then equals the one-shot decode (float rounding), and
a chunk costs its own frames only. Used by :class:`.stream.ChunkDecoder`.
"""

from __future__ import annotations

import copy
from typing import Any

from .codec import (
    ChannelsLastConv,
    FrameUpsample,
    FusedSnake,
    left_padded,
    time_major_to_channels,
    to_channels_last,
)


def carry(state: dict[int, Any], m: Any, x: Any, n: int) -> Any:
    """``x`` with the last ``n`` time steps of ``m``'s previous input (kept in ``state``) in
    front, zeros before the first call; remembers this call's last ``n`` steps for the next."""
    full = left_padded(x, n, state.get(id(m)))
    state[id(m)] = full[..., full.shape[-1] - n:]
    return full


def causal_conv(state: dict[int, Any], m: Any, x: Any) -> Any:
    """An unrewritten qwen-tts causal conv ``m`` (stride 1) on (B, C, T) ``x``, its left padding
    carried in ``state`` from the previous call instead of zeros (see :func:`carry`)."""
    if m.stride != 1:
        raise TypeError(f"cannot stream a causal conv of stride {m.stride}")
    return m.conv(carry(state, m, x, int(m.padding)) if m.padding else x)


class FrontStream:
    """The frame-rate half of the decoder (quantizer, causal pre-conv, sliding-window
    transformer) chunk by chunk with carried state: the pre-conv keeps its last inputs, the
    transformer its KV cache (``DynamicCache`` keeps the last ``sliding_window - 1`` frames per
    layer, all its window can see). ``stream(c[..., :a]) ++ stream(c[..., a:])`` then equals the
    one-shot front half (float rounding) and a chunk costs its own frames only, where re-running
    the transformer over 100 frames of context cost 2.5x the rest of a 16-frame chunk's decode.
    Works on any device (plain HF modules).
    """

    def __init__(self, decoder: Any) -> None:
        from transformers.cache_utils import DynamicCache

        self._decoder = decoder
        self._state: dict[int, Any] = {}
        self._cache = DynamicCache(config=decoder.pre_transformer.config)

    def snapshot(self) -> tuple[Any, dict[int, Any]]:
        """The carried state (KV cache, pre-conv inputs), to :meth:`restore` into another stream."""
        return copy.deepcopy(self._cache), dict(self._state)

    def restore(self, snapshot: tuple[Any, dict[int, Any]]) -> None:
        cache, state = snapshot
        self._cache, self._state = copy.deepcopy(cache), dict(state)

    def __call__(self, codes: Any) -> Any:
        """(B, groups, frames) codes -> (B, latent, frames) hidden states for the back half."""
        dec = self._decoder
        hidden = dec.quantizer.decode(codes)
        hidden = causal_conv(self._state, dec.pre_conv, hidden).transpose(1, 2)
        out = dec.pre_transformer(inputs_embeds=hidden, past_key_values=self._cache, use_cache=True)
        return out.last_hidden_state.permute(0, 2, 1)


class BackHalfStream:
    """The sample-rate half of an optimized decoder (upsample + decoder stacks), chunk by chunk
    with carried state instead of re-decoded context.

    Every layer of that half is causal: a conv needs only the last ``left_pad`` inputs it saw,
    a transposed conv only the second half of its last frame's output. Keeping those between
    calls makes ``stream(h[:, :, :a]) ++ stream(h[:, :, a:])`` equal ``back(h)`` (float
    rounding), so a streamed chunk costs its own frames only: no CONV_CONTEXT_FRAMES re-decode
    (+50 % on 16-frame chunks, +200 % on the 4-frame first one). Requires
    :func:`.codec.optimize_decoder` (checked by :func:`.codec.supports_streaming`).
    """

    def __init__(self, decoder: Any) -> None:
        self._decoder = decoder
        self._state: dict[int, Any] = {}

    def snapshot(self) -> dict[int, Any]:
        """The carried state (each layer's tensors are replaced, never changed in place)."""
        return dict(self._state)

    def restore(self, snapshot: dict[int, Any]) -> None:
        self._state = dict(snapshot)

    def __call__(self, hidden: Any) -> Any:
        """(B, latent, frames) from the transformer -> (B, 1, frames * samples_per_frame) in [-1, 1]."""
        dec = self._decoder
        for blocks in dec.upsample:
            for block in blocks:
                hidden = self._run(block, hidden)
        for block in dec.decoder:
            hidden = self._run(block, hidden)
        return hidden.clamp(min=-1, max=1)

    def _run(self, m: Any, x: Any) -> Any:
        kind = type(m).__name__
        if isinstance(m, ChannelsLastConv):
            return self._transposed(m, x) if m.transposed else self._conv(m, x)
        if kind == "Qwen3TTSTokenizerV2DecoderDecoderBlock":
            for sub in m.block:
                x = self._run(sub, x)
            return x
        if kind == "Qwen3TTSTokenizerV2DecoderDecoderResidualUnit":
            h = x
            for sub in (m.act1, m.conv1, m.act2, m.conv2):
                h = self._run(sub, h)
            return h + x
        if kind == "Qwen3TTSTokenizerV2ConvNeXtBlock":
            h = causal_conv(self._state, m.dwconv, x).permute(0, 2, 1)
            h = m.pwconv2(m.act(m.pwconv1(m.norm(h))))
            return x + (m.gamma * h).permute(0, 2, 1)
        if isinstance(m, (FusedSnake, FrameUpsample)):  # no state: FrameUpsample's frames do not overlap
            return m(x)
        raise TypeError(f"cannot stream {kind}; decode with context instead (optimize_decoder first)")

    def _conv(self, m: ChannelsLastConv, x: Any) -> Any:
        x = to_channels_last(x)
        if m.left_pad:
            x = carry(self._state, m, x, m.left_pad)  # channels-last already (no second copy)
        return m.conv_padded(x)

    def _transposed(self, m: ChannelsLastConv, x: Any) -> Any:
        y, z = m.transposed_gemm(to_channels_last(x))
        prev = self._state.get(id(m))
        if prev is not None:
            y[:, 0] += prev
        self._state[id(m)] = z[:, -1, 1].clone()
        return time_major_to_channels(y)
