"""Pure sampling functions of the decode loop: the logits processors qwen-tts' ``generate`` uses.

qwen-tts 0.1.1 drives the talker and the code predictor through transformers'
``GenerationMixin.generate``, which builds this chain (transformers 4.57, batch 1, logits cast to
float32 first)::

    talker:          RepetitionPenalty -> MinLength/MinNewTokens (no end-of-speech yet)
                     -> SuppressTokens (the codec control range) -> [Temperature -> TopK -> TopP]
    code predictor:  [Temperature -> TopK -> TopP]

The bracketed warpers run only when sampling (``do_sample``); TopK only when ``top_k > 0``,
TopP only when ``top_p < 1``, Temperature only when it is not 1. Then ``softmax`` +
``torch.multinomial`` draws the token, or ``argmax`` when greedy. Each function below reproduces
one processor with static shapes and no host synchronisation (a boolean mask instead of a list
of token ids), so a CUDA graph can capture a step that uses them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

#: transformers' filter value for removed tokens.
FILTER_VALUE = float("-inf")


@dataclass(frozen=True)
class SamplerSettings:
    """One token distribution's settings (the talker's or the code predictor's)."""

    do_sample: bool = True
    """Draw from the distribution; False = greedy (argmax after the penalties and masks)."""
    temperature: float = 0.9
    """Divides the logits before top-k/top-p (only when sampling; > 0)."""
    top_k: int = 50
    """Keep the k most likely tokens (0 = all)."""
    top_p: float = 1.0
    """Keep the smallest set of tokens whose probability reaches top_p (1.0 = all)."""


@dataclass(frozen=True)
class SamplingConfig:
    """The sampling behaviour of a ``generate`` call: talker + code predictor (subtalker)."""

    talker: SamplerSettings = SamplerSettings()
    subtalker: SamplerSettings = SamplerSettings()
    repetition_penalty: float = 1.05
    """transformers' repetition penalty over the talker's earlier tokens (1.0 = off)."""

    @classmethod
    def from_generate_kwargs(cls, kwargs: Mapping[str, Any]) -> SamplingConfig:
        """From the keyword arguments qwen-tts' ``generate`` takes (``_merge_generate_kwargs``)."""
        return cls(
            talker=SamplerSettings(bool(kwargs.get("do_sample", True)), float(kwargs.get("temperature", 0.9)),
                                   int(kwargs.get("top_k", 50) or 0), float(kwargs.get("top_p", 1.0))),
            subtalker=SamplerSettings(bool(kwargs.get("subtalker_dosample", True)),
                                      float(kwargs.get("subtalker_temperature", 0.9)),
                                      int(kwargs.get("subtalker_top_k", 50) or 0),
                                      float(kwargs.get("subtalker_top_p", 1.0))),
            repetition_penalty=float(kwargs.get("repetition_penalty", 1.05)),
        )


def repetition_penalty(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """``RepetitionPenaltyLogitsProcessor``: scores of seen tokens / penalty (x penalty if negative).

    ``seen`` is a boolean mask shaped like ``scores`` (True = the token occurred before), the
    static-shape form of transformers' gather/scatter over the earlier token ids.
    """
    if penalty == 1.0:
        return scores
    penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(seen, penalised, scores)


def mask_tokens(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``SuppressTokens`` / ``MinNewTokensLength``: masked tokens get -inf (never drawn)."""
    return scores.masked_fill(mask, FILTER_VALUE)


def temperature(scores: torch.Tensor, value: float) -> torch.Tensor:
    """``TemperatureLogitsWarper`` (transformers skips it at exactly 1.0)."""
    return scores if value == 1.0 else scores / value


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """``TopKLogitsWarper``: everything below the k-th largest score gets -inf (ties kept)."""
    if k <= 0:
        return scores
    k = min(k, scores.shape[-1])
    kth = torch.topk(scores, k)[0][..., -1, None]
    return scores.masked_fill(scores < kth, FILTER_VALUE)


def top_p(scores: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """``TopPLogitsWarper``: keep the most likely tokens whose cumulative probability exceeds 1 - p."""
    if p >= 1.0:
        return scores
    sorted_logits, sorted_idx = torch.sort(scores, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - p)
    remove_sorted[..., -min_tokens_to_keep:] = False
    remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
    return scores.masked_fill(remove, FILTER_VALUE)


def warp(scores: torch.Tensor, settings: SamplerSettings) -> torch.Tensor:
    """The sampling warpers in transformers' order (temperature, top-k, top-p); none when greedy."""
    if not settings.do_sample:
        return scores
    return top_p(top_k(temperature(scores, settings.temperature), settings.top_k), settings.top_p)


def draw(scores: torch.Tensor, settings: SamplerSettings, generator: torch.Generator | None) -> torch.Tensor:
    """The next token (batch, 1): ``multinomial(softmax)`` when sampling, else ``argmax``."""
    if settings.do_sample:
        # torch.multinomial(probs, 1) is exactly this (ATen's one-sample path: p / Exp(1) noise,
        # argmax), minus its validity checks, which cost a host synchronisation and ~60 us a draw.
        probs = scores.softmax(dim=-1)
        noise = torch.empty_like(probs).exponential_(1, generator=generator)
        return (probs / noise).argmax(dim=-1, keepdim=True)
    return scores.argmax(dim=-1, keepdim=True)


def sample_token(scores: torch.Tensor, settings: SamplerSettings, generator: torch.Generator | None) -> torch.Tensor:
    """Warp then draw: the code predictor's whole chain."""
    return draw(warp(scores, settings), settings, generator)
