"""Our own decode loop for the Qwen3-TTS talker and code predictor (no ``GenerationMixin``).

One codec frame = 16 codes. The talker (28 layers) predicts code 0 of the next frame from
everything so far; the code predictor (5 layers) then predicts codes 1..15 of that frame, one
after the other, from the talker's last hidden state and code 0. This module reproduces what
qwen-tts 0.1.1 ``Qwen3TTSForConditionalGeneration.generate`` does through transformers'
``generate`` (talker) and one more ``generate`` per frame (code predictor), with:

* static KV caches allocated once per call: the talker's sized prompt + frame budget, the code
  predictor's 16 slots (2 prefill positions + 14 steps), reused for every frame;
* the functional forward of :mod:`.layers` (linear layers still called as modules);
* the sampling chain of :mod:`.sampling` with static shapes (masks instead of token lists);
* one host synchronisation per frame: the end-of-speech check on code 0 of the next frame,
  done before the frame is yielded, so every frame comes out knowing whether it is the last
  (``DecodeStats.ended``): streaming needs no look-ahead.

Frames come out of :func:`decode_frames` as they are produced (a generator), which is what
streaming consumes directly. The order of the loop, and so of the random draws (one for each
talker token, then fifteen for its frame's codes), is qwen-tts' order; with a seed the draws use
a private ``torch.Generator``, seeded as qwen-tts' global RNG would be, and the caller's RNG is
untouched.

Token accounting (as qwen-tts): the talker's first token comes from the prefill; each later
talker step feeds the previous frame and yields the next token. A token equal to end-of-speech
stops the loop without a frame; end-of-speech is impossible for the first ``min_new_tokens``
tokens (qwen-tts: 2). qwen-tts' ``max_new_tokens = budget + 1`` gives at most ``budget`` frames;
here the loop stops right after frame ``budget`` (the talker step after it would only produce a
token whose frame is never made).
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ..fileio import sha256_bytes
from . import layers, sampling
from .prompt import TalkerPrompt
from .sampling import SamplingConfig

#: qwen-tts' ``generate`` passes ``min_new_tokens=2`` to the talker: at least one frame.
DEFAULT_MIN_NEW_TOKENS = 2
#: Codec ids above this many from the top of the talker vocabulary are control tokens (think,
#: language, pad, bos ...): qwen-tts suppresses the top 1024 ids except end-of-speech.
CONTROL_TOKENS = 1024


@dataclass
class DecodeStats:
    """Wall time per phase of one :func:`decode_frames` call (CPU timings; on CUDA the launch
    time unless the caller synchronises). Filled in while the generator runs."""

    prompt_len: int = 0
    prefix_reused: int = 0
    """Prefill positions whose keys and values came from the voice-prefix store (not computed)."""
    frames: int = 0
    prefill_s: float = 0.0
    talker_s: float = 0.0
    """Talker steps after the prefill (forward + sampling), summed."""
    predictor_s: float = 0.0
    """Code predictor: all 15-code runs, summed."""
    talker_steps: int = 0
    ended: str = ""
    """"eos" (end of speech) or "budget" (frame budget reached), set *before* the last frame is
    yielded (a consumer that reads it after each frame knows the frame was the last one); ""
    while more frames follow or when the consumer closed the generator early."""
    step_times_s: list[float] = field(default_factory=list)


@dataclass
class _State:
    """The mutable tensors of one decode call (caches, token history, position)."""

    cache: layers.KVCache
    sub_cache: layers.KVCache
    slots: torch.Tensor
    seen: torch.Tensor
    trailing: torch.Tensor
    min_tokens: torch.Tensor
    position: torch.Tensor
    prompt_len: int
    past: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    token: torch.Tensor = field(default_factory=lambda: torch.empty(0))


class Decoder:
    """The decode loop bound to one loaded ``Qwen3TTSForConditionalGeneration``.

    Holds references to the modules (read once) and rotary tables; KV caches are allocated per
    call, so two generators may run interleaved. Build it once per model (it is cheap).
    """

    def __init__(self, model: Any, *, max_positions: int = 1024, threads: int | None = None,
                 voice_prefixes: int = 0) -> None:
        talker = model.talker
        #: Torch threads while the loop computes (restored between frames); None: leave as is.
        #: On a small CPU one thread wins: its ~60 small ops per layer step do not split well.
        self.threads = threads
        #: How many voice prefixes (``TalkerPrompt.voice_prefix``) to keep the talker's keys and
        #: values of (least recently used dropped); 0: every prefill runs whole. With a store,
        #: every prompt with a voice prefix is prefilled in two parts, the prefix alone (or its
        #: kept keys and values), then the rest over it: the same arithmetic whether the prefix
        #: was kept or not, so a seed gives the same codes on the first line and the next ones.
        self.voice_prefixes = int(voice_prefixes)
        self._prefixes: collections.OrderedDict[tuple[Any, ...], tuple[list[torch.Tensor], list[torch.Tensor]]] = (
            collections.OrderedDict())
        tcfg = model.config.talker_config
        self.model = model
        self.talker = talker
        self.predictor = talker.code_predictor
        self.groups = int(tcfg.num_code_groups)
        self.eos_id = int(tcfg.codec_eos_token_id)
        self.vocab = int(tcfg.vocab_size)
        # The activation dtype: the norms' (quantized models keep bf16 embedding tables that
        # return this dtype, tts/quant.py BF16Embedding, so the tables' own dtype would be wrong).
        self.dtype = talker.model.norm.weight.dtype
        self.device = talker.get_input_embeddings().weight.device
        self.max_positions = int(max_positions)  # rotary table length; grows on demand
        self.limit = int(tcfg.max_position_embeddings)
        self.talker_stack = layers.Stack.from_model(talker.model, tcfg, self.max_positions, self.dtype)
        self.predictor_stack = layers.Stack.from_model(self.predictor.model, self.predictor.config,
                                                       self.groups, self.dtype)
        vocab = torch.arange(self.vocab, device=self.device)
        suppress = (vocab >= self.vocab - CONTROL_TOKENS) & (vocab != self.eos_id)
        self.suppress = suppress.unsqueeze(0)
        self.eos_mask = (vocab == self.eos_id).unsqueeze(0)
        # The code predictor's steps always use the same positions: precompute their inputs.
        stack = self.predictor_stack
        slots = torch.arange(self.groups, device=self.device)
        self._sub_prefill = torch.arange(2, device=self.device)
        self._sub_steps = [
            (pos, layers.visible(pos, slots), (stack.cos.index_select(0, pos), stack.sin.index_select(0, pos)))
            for pos in (torch.tensor([p], device=self.device) for p in range(2, self.groups))
        ]

    def frames(self, prompt: TalkerPrompt, config: SamplingConfig, *, max_frames: int,
               min_new_tokens: int = DEFAULT_MIN_NEW_TOKENS, seed: int | None = None,
               stats: DecodeStats | None = None) -> Iterator[torch.Tensor]:
        """Yield up to ``max_frames`` frames, each a LongTensor (groups,), until end of speech.

        A frame is yielded once the talker has also drawn the token after it, so whether it was
        the last one is known: ``stats.ended`` is set before the last frame is yielded.

        ``min_new_tokens``: end of speech is impossible for that many talker tokens (qwen-tts:
        2; ``n + 1`` forces at least ``n + 1`` frames within the budget). ``seed``: reproducible
        draws from a private generator (None: torch's global RNG, as qwen-tts without a seed).
        """
        if max_frames < 1:
            return
        needed = prompt.length + max_frames
        if needed > self.limit:
            raise ValueError(f"prompt ({prompt.length}) + frame budget ({max_frames}) = {needed} positions; "
                             f"the talker has {self.limit}")
        if needed > self.max_positions:
            self.max_positions = min(self.limit, max(needed, 2 * self.max_positions))
            self.talker_stack = layers.Stack.from_model(self.talker.model, self.model.config.talker_config,
                                                        self.max_positions, self.dtype)
        stats = stats if stats is not None else DecodeStats()
        stats.prompt_len = prompt.length
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(int(seed) % 2**63)
        yield from self._loop(prompt, config, max_frames, min_new_tokens, gen, stats)

    # -- the loop ----------------------------------------------------------------------------------

    def _loop(self, prompt: TalkerPrompt, config: SamplingConfig, max_frames: int, min_new_tokens: int,
              gen: torch.Generator | None, stats: DecodeStats) -> Iterator[torch.Tensor]:
        # Inference mode is entered per block, never across a ``yield``: the consumer's code
        # between two frames runs in its own grad mode.
        t0 = time.perf_counter()
        with torch.inference_mode(), _threads(self.threads):
            state = self._prefill(prompt, config, max_frames, min_new_tokens, gen, stats)
        stats.prefill_s = time.perf_counter() - t0
        for step in range(max_frames):
            if step == 0 and int(state.token) == self.eos_id:  # end of speech before any frame
                stats.ended = "eos"
                return
            t1 = time.perf_counter()
            with torch.inference_mode(), _threads(self.threads):
                codes, frame_embed = self._predict(state.past, state.token, config, state.sub_cache, gen)
            t2 = time.perf_counter()
            stats.predictor_s += t2 - t1
            stats.frames += 1
            if step == max_frames - 1:
                stats.ended = "budget"
                yield codes
                return
            with torch.inference_mode(), _threads(self.threads):
                self._talker_step(state, frame_embed, step, config, gen)
            t3 = time.perf_counter()
            stats.talker_s += t3 - t2
            stats.talker_steps += 1
            stats.step_times_s.append(t3 - t1)
            if int(state.token) == self.eos_id:  # the one host synchronisation per frame
                stats.ended = "eos"
            yield codes
            if stats.ended:
                return

    def _prefill(self, prompt: TalkerPrompt, config: SamplingConfig, max_frames: int, min_new_tokens: int,
                 gen: torch.Generator | None, stats: DecodeStats) -> _State:
        """Allocate the caches, run the talker over the prompt, draw the first token."""
        dev, n = self.device, prompt.length
        capacity = n + max_frames
        state = _State(
            cache=self.talker_stack.allocate(capacity), sub_cache=self.predictor_stack.allocate(self.groups),
            slots=torch.arange(capacity, device=dev), seen=torch.zeros((1, self.vocab), dtype=torch.bool, device=dev),
            trailing=self._trailing_table(prompt, max_frames), min_tokens=torch.tensor(int(min_new_tokens), device=dev),
            position=torch.tensor([n], device=dev), prompt_len=n,
        )
        embeds = prompt.embeds.to(self.dtype)
        # (the last position always runs: its hidden state draws the first token)
        shared = min(prompt.voice_prefix, n - 1) if self.voice_prefixes > 0 else 0
        shared = shared if shared >= 2 else 0
        if shared:
            stats.prefix_reused = self._restore_prefix(embeds[:, :shared], state.cache)
            positions = torch.arange(shared, n, device=dev)
            hidden = layers.forward(self.talker_stack, embeds[:, shared:], state.cache, positions,
                                    layers.visible(positions, state.slots))
        else:
            hidden = layers.forward(self.talker_stack, embeds, state.cache, torch.arange(n, device=dev))
        state.past = hidden[:, -1:]
        state.token = self._talker_token(state.past, config, state.seen, torch.tensor(0, device=dev),
                                         state.min_tokens, gen)
        return state

    def _restore_prefix(self, embeds: torch.Tensor, cache: layers.KVCache) -> int:
        """Write the talker's keys and values of the prefix ``embeds`` (1, p, hidden) into slots
        0..p-1 of ``cache``: kept ones, or computed now (the prefix alone) and kept. Returns p
        when they were kept, else 0. Keyed by the embeddings' bytes: equal prefixes, equal keys."""
        p = int(embeds.shape[1])
        host = embeds.detach().float().cpu().contiguous()
        key = (sha256_bytes(host.numpy().tobytes()), p, str(embeds.dtype))
        kept = self._prefixes.get(key)
        hit = kept is not None
        if kept is not None:
            self._prefixes.move_to_end(key)
        else:
            scratch = self.talker_stack.allocate(p)
            layers.forward(self.talker_stack, embeds, scratch, torch.arange(p, device=self.device))
            kept = (scratch.keys, scratch.values)
            self._prefixes[key] = kept
            while len(self._prefixes) > self.voice_prefixes:
                self._prefixes.popitem(last=False)
        for dst, src in zip((*cache.keys, *cache.values), (*kept[0], *kept[1]), strict=True):
            dst[:, :, :p].copy_(src)
        return p if hit else 0

    def _talker_step(self, state: _State, frame_embed: torch.Tensor, step: int, config: SamplingConfig,
                     gen: torch.Generator | None) -> None:
        """Feed the frame just made (+ its text) to the talker; draw the next token."""
        state.seen.scatter_(1, state.token, True)
        x = frame_embed + state.trailing[step].view(1, 1, -1)
        state.past = layers.forward(self.talker_stack, x, state.cache, state.position,
                                    layers.visible(state.position, state.slots))
        state.position = state.position + 1
        state.token = self._talker_token(state.past, config, state.seen, state.position - state.prompt_len,
                                         state.min_tokens, gen)

    def _trailing_table(self, prompt: TalkerPrompt, max_frames: int) -> torch.Tensor:
        """(max_frames, hidden): the text embedding added at talker step i (tts_pad after the text)."""
        rows = prompt.trailing[0, :max_frames].to(self.dtype)
        missing = max_frames - int(rows.shape[0])
        if missing > 0:
            rows = torch.cat([rows, prompt.pad[0].to(self.dtype).expand(missing, -1)], dim=0)
        return rows

    def _talker_token(self, hidden: torch.Tensor, config: SamplingConfig, seen: torch.Tensor,
                      index: torch.Tensor, min_tokens: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Talker logits -> token (1, 1): repetition penalty, no EOS before ``min_tokens``, control
        tokens suppressed, then the warpers and the draw (transformers' order)."""
        scores = self.talker.codec_head(hidden[:, -1]).float()
        scores = sampling.repetition_penalty(scores, seen, config.repetition_penalty)
        scores = sampling.mask_tokens(scores, self.suppress | (self.eos_mask & (index < min_tokens)))
        return sampling.sample_token(scores, config.talker, gen)

    def _predict(self, past: torch.Tensor, token: torch.Tensor, config: SamplingConfig, cache: layers.KVCache,
                 gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes 1..15 of the frame whose code 0 is ``token``: the frame (groups,) and the sum of
        its 16 code embeddings (the talker's next input, before the text)."""
        stack = self.predictor_stack
        project = self.predictor.small_to_mtp_projection
        first = self.talker.get_input_embeddings()(token)
        x = project(torch.cat((past, first), dim=1))
        hidden = layers.forward(stack, x, cache, self._sub_prefill)
        heads, tables = self.predictor.lm_head, self.predictor.get_input_embeddings()  # live: quant swaps heads
        codes = [token]
        embeds = [first]
        for i in range(self.groups - 1):
            scores = heads[i](hidden[:, -1]).float()
            code = sampling.sample_token(scores, config.subtalker, gen)
            codes.append(code)
            embed = tables[i](code)
            embeds.append(embed)
            if i == self.groups - 2:
                break
            position, mask, rope = self._sub_steps[i]
            hidden = layers.forward(stack, project(embed), cache, position, mask, rope)
        frame = torch.cat(codes, dim=1)[0]
        return frame, torch.cat(embeds, dim=1).sum(1, keepdim=True)


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """``torch.set_num_threads(n)`` for the block, the caller's count restored after (~0.1 us)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def decode_frames(model: Any, prompt: TalkerPrompt, config: SamplingConfig, *, max_frames: int,
                  min_new_tokens: int = DEFAULT_MIN_NEW_TOKENS, seed: int | None = None,
                  stats: DecodeStats | None = None) -> Iterator[torch.Tensor]:
    """:meth:`Decoder.frames` with a decoder built for this call (tests, one-off use)."""
    return Decoder(model).frames(prompt, config, max_frames=max_frames, min_new_tokens=min_new_tokens,
                                 seed=seed, stats=stats)
