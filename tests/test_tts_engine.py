"""Tests of our decode loop (``personalization_engine.tts.engine``) against qwen-tts itself.

The reference is qwen-tts 0.1.1's own ``Qwen3TTSForConditionalGeneration.generate`` on the same
weights, driven through its own wrapper (``Qwen3TTSModel``: voice prompt, tokenisation, sampling
defaults), so these tests do not depend on our adapter. Random weights never emit end of speech
on their own; both sides get the same minimum length so each run fills its frame budget.

* prompt: the prefill embeddings we build equal, bit for bit, the ones qwen-tts hands to the talker;
* greedy fp32: identical codes for 200 frames on the tiny checkpoint (x-vector, ICL, VoiceDesign)
  and for 30 frames on the full-size random 0.6B checkpoint (slow; /work/cache/full-0.6b or
  $QWEN3_TTS_FULL_0_6B, skipped when absent);
* seeded sampling: identical to qwen-tts seeded the same way, and reproducible;
* the pure sampling functions: known answers and transformers' processors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from personalization_engine.tts import engine, sampling  # noqa: E402
from personalization_engine.tts.prompt import prompt_from_generate_kwargs  # noqa: E402

REF = "LJ001-0004.flac"
REF_TEXT = "produced the block books, which were the immediate predecessors of the true printed book,"
TEXT = "The quick brown fox jumps over the lazy dog. Then it ran away, far into the woods."
INSTRUCT = "A calm, warm voice, speaking slowly."
FULL_0_6B = Path(os.environ.get("QWEN3_TTS_FULL_0_6B", "/work/cache/full-0.6b"))


# --- fixtures: qwen-tts' own wrapper and its generate inputs --------------------------------------


def _load_qwen(folder: Path) -> Any:
    from personalization_engine.tts.runtime import import_qwen_tts

    qwen = import_qwen_tts().Qwen3TTSModel.from_pretrained(str(folder), dtype=torch.float32)
    qwen.model.eval()
    qwen.model.talker.generation_config.pad_token_id = qwen.model.config.talker_config.codec_eos_token_id
    return qwen


@pytest.fixture(scope="module")
def tiny_qwen(tiny_checkpoint: Path) -> Any:
    return _load_qwen(tiny_checkpoint)


@pytest.fixture(scope="module")
def tiny_design_qwen(tiny_design_checkpoint: Path) -> Any:
    return _load_qwen(tiny_design_checkpoint)


@pytest.fixture(scope="module")
def reference(voices_dir: Path) -> tuple[np.ndarray, int]:
    from personalization_engine.audio_io import load_audio

    clip = load_audio(voices_dir / REF, sample_rate=24_000)
    return clip.samples, clip.sample_rate


def clone_inputs(qwen: Any, ref: tuple[np.ndarray, int], *, icl: bool, language: str = "english",
                 non_streaming: bool = False) -> dict[str, Any]:
    """The keyword arguments qwen-tts' ``generate_voice_clone`` passes to the model's ``generate``."""
    items = qwen.create_voice_clone_prompt(ref_audio=ref, ref_text=REF_TEXT if icl else None,
                                           x_vector_only_mode=not icl)
    inputs: dict[str, Any] = {
        "input_ids": qwen._tokenize_texts([qwen._build_assistant_text(TEXT)]),
        "voice_clone_prompt": qwen._prompt_items_to_voice_clone_prompt(items),
        "languages": [language], "non_streaming_mode": non_streaming,
        "ref_ids": [qwen._tokenize_texts([qwen._build_ref_text(REF_TEXT)])[0] if icl else None],
    }
    return inputs


def design_inputs(qwen: Any, *, language: str = "auto", non_streaming: bool = True) -> dict[str, Any]:
    """The keyword arguments of qwen-tts' ``generate_voice_design`` call of ``generate``."""
    return {
        "input_ids": qwen._tokenize_texts([qwen._build_assistant_text(TEXT)]),
        "instruct_ids": [qwen._tokenize_texts([qwen._build_instruct_text(INSTRUCT)])[0]],
        "languages": [language], "non_streaming_mode": non_streaming,
    }


def qwen_codes(qwen: Any, inputs: dict[str, Any], frames: int, *, seed: int | None = None, **sampling_kw: Any) -> Any:
    """qwen-tts ``generate``: ``frames`` frames (end of speech held off, as ``fixed_min_frames``)."""
    from personalization_engine.tts.runtime import fixed_min_frames, seeded

    kwargs = qwen._merge_generate_kwargs(max_new_tokens=frames + 1, **sampling_kw)
    with torch.inference_mode(), fixed_min_frames(qwen.model.talker, frames), seeded(seed, 0, "cpu"):
        codes, _ = qwen.model.generate(**inputs, **kwargs)
    return codes[0]


def our_codes(qwen: Any, inputs: dict[str, Any], frames: int, *, seed: int | None = None, **sampling_kw: Any) -> Any:
    kwargs = qwen._merge_generate_kwargs(max_new_tokens=frames + 1, **sampling_kw)
    prompt = prompt_from_generate_kwargs(qwen.model, inputs)
    config = sampling.SamplingConfig.from_generate_kwargs(kwargs)
    out = list(engine.decode_frames(qwen.model, prompt, config, max_frames=frames, min_new_tokens=frames + 1,
                                    seed=seed))
    return torch.stack(out)


GREEDY = {"do_sample": False, "subtalker_dosample": False}


# --- the prompt ------------------------------------------------------------------------------------


class _Captured(Exception):
    pass


def qwen_prompt(qwen: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """What qwen-tts' ``generate`` passes to the talker's ``generate`` (captured, then stopped)."""
    seen: dict[str, Any] = {}

    def capture(**kwargs: Any) -> Any:
        seen.update(kwargs)
        raise _Captured

    qwen.model.talker.generate = capture
    try:
        with pytest.raises(_Captured):
            qwen.model.generate(**inputs, **qwen._merge_generate_kwargs(max_new_tokens=3))
    finally:
        del qwen.model.talker.generate
    return seen


@pytest.mark.parametrize("icl", [False, True], ids=["xvector", "icl"])
@pytest.mark.parametrize("non_streaming", [False, True], ids=["streaming-text", "non-streaming-text"])
@pytest.mark.parametrize("language", ["english", "auto"])
def test_clone_prompt_equals_qwen_tts(tiny_qwen: Any, reference: Any, icl: bool, non_streaming: bool,
                                      language: str) -> None:
    inputs = clone_inputs(tiny_qwen, reference, icl=icl, language=language, non_streaming=non_streaming)
    want = qwen_prompt(tiny_qwen, inputs)
    got = prompt_from_generate_kwargs(tiny_qwen.model, inputs)
    assert torch.equal(got.embeds, want["inputs_embeds"])
    assert torch.equal(got.trailing, want["trailing_text_hidden"])
    assert torch.equal(got.pad, want["tts_pad_embed"])


@pytest.mark.parametrize("non_streaming", [False, True])
def test_design_prompt_equals_qwen_tts(tiny_design_qwen: Any, non_streaming: bool) -> None:
    inputs = design_inputs(tiny_design_qwen, non_streaming=non_streaming)
    want = qwen_prompt(tiny_design_qwen, inputs)
    got = prompt_from_generate_kwargs(tiny_design_qwen.model, inputs)
    assert torch.equal(got.embeds, want["inputs_embeds"])
    assert torch.equal(got.trailing, want["trailing_text_hidden"])


def test_unknown_language_is_rejected(tiny_qwen: Any, reference: Any) -> None:
    inputs = clone_inputs(tiny_qwen, reference, icl=False, language="klingon")
    with pytest.raises(ValueError, match="klingon"):
        prompt_from_generate_kwargs(tiny_qwen.model, inputs)


# --- greedy parity ----------------------------------------------------------------------------------


@pytest.mark.parametrize("icl", [False, True], ids=["xvector", "icl"])
def test_greedy_codes_equal_qwen_tts_200_frames(tiny_qwen: Any, reference: Any, icl: bool) -> None:
    inputs = clone_inputs(tiny_qwen, reference, icl=icl)
    want = qwen_codes(tiny_qwen, inputs, 200, **GREEDY)
    got = our_codes(tiny_qwen, inputs, 200, **GREEDY)
    assert want.shape == (200, 16)
    assert torch.equal(got, want)


def test_greedy_design_codes_equal_qwen_tts_200_frames(tiny_design_qwen: Any) -> None:
    inputs = design_inputs(tiny_design_qwen)
    want = qwen_codes(tiny_design_qwen, inputs, 200, **GREEDY)
    got = our_codes(tiny_design_qwen, inputs, 200, **GREEDY)
    assert torch.equal(got, want)


@pytest.mark.slow
def test_greedy_codes_equal_qwen_tts_full_size_0_6b(reference: Any) -> None:
    """30 frames of the full-size random 0.6B (28 talker layers, 5 predictor layers, 3072 codes)."""
    if not (FULL_0_6B / "model.safetensors").is_file():
        pytest.skip(f"no full-size checkpoint at {FULL_0_6B} (bench/build_full_size.py 0.6b --save DIR)")
    qwen = _load_qwen(FULL_0_6B)
    try:
        inputs = clone_inputs(qwen, reference, icl=False)
        want = qwen_codes(qwen, inputs, 30, **GREEDY)
        got = our_codes(qwen, inputs, 30, **GREEDY)
        assert torch.equal(got, want)
    finally:
        del qwen


# --- sampling with a seed ---------------------------------------------------------------------------


def test_seeded_sampling_equals_qwen_tts_and_repeats(tiny_qwen: Any, reference: Any) -> None:
    """Our generator draws in qwen-tts' order from a generator seeded like its global RNG, so a
    seeded sampled run equals qwen-tts seeded the same way (top-p on to cover it as well)."""
    inputs = clone_inputs(tiny_qwen, reference, icl=False)
    want = qwen_codes(tiny_qwen, inputs, 40, seed=11, top_p=0.8)
    first = our_codes(tiny_qwen, inputs, 40, seed=11, top_p=0.8)
    again = our_codes(tiny_qwen, inputs, 40, seed=11, top_p=0.8)
    other = our_codes(tiny_qwen, inputs, 40, seed=12, top_p=0.8)
    assert torch.equal(first, want)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_interleaved_generators_do_not_disturb_each_other(tiny_qwen: Any, reference: Any) -> None:
    """Each call owns its KV caches and generator: a stream consumed frame by frame while another
    run happens in between gives the codes of an undisturbed run (and the global RNG is untouched)."""
    inputs = clone_inputs(tiny_qwen, reference, icl=True)
    alone = our_codes(tiny_qwen, inputs, 12, seed=3)
    kwargs = tiny_qwen._merge_generate_kwargs()
    decoder = engine.Decoder(tiny_qwen.model)
    prompt = prompt_from_generate_kwargs(tiny_qwen.model, inputs)
    stream = decoder.frames(prompt, sampling.SamplingConfig.from_generate_kwargs(kwargs), max_frames=12,
                            min_new_tokens=13, seed=3)
    rng_before = torch.random.get_rng_state()
    frames = []
    for frame in stream:
        frames.append(frame)
        our_codes(tiny_qwen, inputs, 2, seed=99)
    assert torch.equal(torch.stack(frames), alone)
    assert torch.equal(torch.random.get_rng_state(), rng_before)


def test_icl_voice_prefix_is_what_two_lines_share(tiny_qwen: Any, reference: Any) -> None:
    """``TalkerPrompt.voice_prefix``: the leading positions two lines of one ICL voice share exactly
    (header, tags, speaker, reference transcript over the first reference frames); none for x-vector."""
    whole = clone_inputs(tiny_qwen, reference, icl=True)
    # A short transcript: the tiny BPE spends more tokens on REF_TEXT than there are reference
    # frames, and then every position is the voice's (the new text only enters after the prompt).
    first = dict(whole, ref_ids=[tiny_qwen._tokenize_texts([tiny_qwen._build_ref_text("produced the block")])[0]])
    second = dict(first, input_ids=tiny_qwen._tokenize_texts([tiny_qwen._build_assistant_text("Many other words.")]))
    a = prompt_from_generate_kwargs(tiny_qwen.model, first)
    b = prompt_from_generate_kwargs(tiny_qwen.model, second)
    n = a.voice_prefix
    assert 9 < n < min(a.length, b.length) and n == b.voice_prefix
    assert torch.equal(a.embeds[:, :n], b.embeds[:, :n])
    assert not torch.equal(a.embeds[:, n], b.embeds[:, n])
    long = prompt_from_generate_kwargs(tiny_qwen.model, whole)
    assert long.voice_prefix == long.length
    xvector = prompt_from_generate_kwargs(tiny_qwen.model, clone_inputs(tiny_qwen, reference, icl=False))
    xvector_other = prompt_from_generate_kwargs(tiny_qwen.model, dict(
        clone_inputs(tiny_qwen, reference, icl=False), input_ids=second["input_ids"]))
    n = xvector.voice_prefix
    assert n == xvector.length - 1 == 9  # chat header 3, codec tags + speaker 6; then the first text token
    assert torch.equal(xvector.embeds[:, :n], xvector_other.embeds[:, :n])
    assert not torch.equal(xvector.embeds[:, n], xvector_other.embeds[:, n])


def test_design_voice_prefix_covers_the_instruction(tiny_design_qwen: Any) -> None:
    inputs = design_inputs(tiny_design_qwen)
    other = dict(inputs, input_ids=tiny_design_qwen._tokenize_texts(
        [tiny_design_qwen._build_assistant_text("Many other words.")]))
    a = prompt_from_generate_kwargs(tiny_design_qwen.model, inputs)
    b = prompt_from_generate_kwargs(tiny_design_qwen.model, other)
    n = a.voice_prefix
    assert n == b.voice_prefix > int(inputs["instruct_ids"][0].shape[1])
    assert torch.equal(a.embeds[:, :n], b.embeds[:, :n]) and not torch.equal(a.embeds[:, n], b.embeds[:, n])


def test_kept_voice_prefix_gives_the_same_codes_as_computing_it(tiny_qwen: Any, reference: Any) -> None:
    """With a voice-prefix store the prefill runs in two parts, whether the prefix's keys and
    values were kept or not: a seed gives the same codes on the first line and the next ones, and
    on a fresh decoder; greedy codes equal the whole prefill's; the store keeps at most its size."""
    inputs = clone_inputs(tiny_qwen, reference, icl=True)
    prompt = prompt_from_generate_kwargs(tiny_qwen.model, inputs)
    sampled = sampling.SamplingConfig.from_generate_kwargs(tiny_qwen._merge_generate_kwargs(max_new_tokens=31))
    greedy = sampling.SamplingConfig.from_generate_kwargs(tiny_qwen._merge_generate_kwargs(max_new_tokens=31,
                                                                                            **GREEDY))

    def run(decoder: Any, config: Any, seed: int | None = 5) -> tuple[Any, int]:
        stats = engine.DecodeStats()
        frames = decoder.frames(prompt, config, max_frames=30, min_new_tokens=31, seed=seed, stats=stats)
        return torch.stack(list(frames)), stats.prefix_reused

    kept = engine.Decoder(tiny_qwen.model, voice_prefixes=1)
    first, reused_first = run(kept, sampled)
    again, reused_again = run(kept, sampled)
    fresh, reused_fresh = run(engine.Decoder(tiny_qwen.model, voice_prefixes=1), sampled)
    assert (reused_first, reused_again, reused_fresh) == (0, min(prompt.voice_prefix, prompt.length - 1), 0)
    assert torch.equal(first, again) and torch.equal(first, fresh)
    assert torch.equal(run(kept, greedy, None)[0], run(engine.Decoder(tiny_qwen.model), greedy, None)[0])
    other = prompt_from_generate_kwargs(tiny_qwen.model, dict(inputs, languages=["german"]))
    list(kept.frames(other, sampled, max_frames=2, seed=1))
    assert len(kept._prefixes) == 1
    # x-vector: the 9 header positions kept, the first text token prefilled as one decode step
    prompt = prompt_from_generate_kwargs(tiny_qwen.model, clone_inputs(tiny_qwen, reference, icl=False))
    first, _ = run(kept, sampled)
    again, reused = run(kept, sampled)
    assert reused == 9 and torch.equal(first, again)
    assert torch.equal(run(kept, greedy, None)[0], run(engine.Decoder(tiny_qwen.model), greedy, None)[0])


def test_stops_at_end_of_speech_and_reports(tiny_qwen: Any, reference: Any) -> None:
    """With end of speech allowed after 2 tokens, a greedy run on random weights ends exactly as
    qwen-tts' does (at its budget or at an end-of-speech token), and the stats say which."""
    inputs = clone_inputs(tiny_qwen, reference, icl=False)
    kwargs = tiny_qwen._merge_generate_kwargs(max_new_tokens=9, **GREEDY)
    with torch.inference_mode():
        want = tiny_qwen.model.generate(**inputs, **kwargs)[0][0]
    stats = engine.DecodeStats()
    got = list(engine.decode_frames(tiny_qwen.model, prompt_from_generate_kwargs(tiny_qwen.model, inputs),
                                    sampling.SamplingConfig.from_generate_kwargs(kwargs), max_frames=8, stats=stats))
    assert torch.equal(torch.stack(got) if got else torch.zeros((0, 16), dtype=torch.long), want)
    assert stats.frames == len(got)
    assert stats.ended in ("eos", "budget")
    assert stats.prompt_len > 0 and stats.prefill_s > 0


# --- the pure sampling functions -----------------------------------------------------------------


def test_fp32_rms_norm_is_bit_identical_to_qwen_tts_formula() -> None:
    """layers.rms_norm takes F.rms_norm for float32; it must equal Qwen3TTSRMSNorm's own
    arithmetic bit for bit (normalise in float32, then scale), or greedy parity could drift."""
    from personalization_engine.tts import layers

    torch.manual_seed(0)
    for shape in [(1, 1, 1024), (1, 9, 1024), (1, 1, 16, 128)]:
        x, w = torch.randn(shape) * 3, torch.randn(shape[-1])
        expected = w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
        assert torch.equal(layers.rms_norm(x, w, 1e-6), expected)


def test_repetition_penalty_known_answer() -> None:
    scores = torch.tensor([[2.0, -2.0, 1.0, -1.0]])
    seen = torch.tensor([[True, True, False, False]])
    out = sampling.repetition_penalty(scores, seen, 2.0)
    assert torch.equal(out, torch.tensor([[1.0, -4.0, 1.0, -1.0]]))
    assert sampling.repetition_penalty(scores, seen, 1.0) is scores


def test_repetition_penalty_matches_transformers() -> None:
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    g = torch.Generator().manual_seed(0)
    scores = torch.randn((1, 3072), generator=g)
    ids = torch.tensor([[5, 17, 5, 2047, 3000]])
    seen = torch.zeros((1, 3072), dtype=torch.bool).scatter_(1, ids, True)
    want = RepetitionPenaltyLogitsProcessor(1.05)(ids, scores.clone())
    assert torch.equal(sampling.repetition_penalty(scores, seen, 1.05), want)


def test_top_k_keeps_k_largest_and_ties() -> None:
    scores = torch.tensor([[1.0, 5.0, 3.0, 3.0, 0.0]])
    out = sampling.top_k(scores, 2)
    assert out[0, 1] == 5.0 and out[0, 2] == 3.0 and out[0, 3] == 3.0  # the tie at the k-th value stays
    assert torch.isinf(out[0, 0]) and torch.isinf(out[0, 4])
    assert sampling.top_k(scores, 0) is scores


def test_top_p_known_answer_and_transformers() -> None:
    from transformers.generation.logits_process import TopPLogitsWarper

    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = sampling.top_p(probs.log(), 0.7)  # 0.5 + 0.3 reaches 0.7: keep two
    assert torch.isfinite(out[0, :2]).all() and torch.isinf(out[0, 2:]).all()
    scores = torch.randn((1, 2048), generator=torch.Generator().manual_seed(1))
    assert torch.equal(sampling.top_p(scores, 0.8), TopPLogitsWarper(0.8)(None, scores.clone()))
    assert sampling.top_p(scores, 1.0) is scores


def test_mask_temperature_and_greedy_draw() -> None:
    scores = torch.tensor([[1.0, 4.0, 2.0]])
    masked = sampling.mask_tokens(scores, torch.tensor([[False, True, False]]))
    assert torch.isinf(masked[0, 1]) and masked[0, 2] == 2.0
    assert torch.equal(sampling.temperature(scores, 2.0), scores / 2.0)
    greedy = sampling.SamplerSettings(do_sample=False)
    assert int(sampling.sample_token(masked, greedy, None)) == 2


def test_draw_only_from_kept_tokens_and_seeded() -> None:
    settings = sampling.SamplerSettings(do_sample=True, temperature=1.0, top_k=2, top_p=1.0)
    scores = torch.tensor([[0.0, 3.0, 2.9, -1.0, 1.0]])
    draws = [int(sampling.sample_token(scores, settings, torch.Generator().manual_seed(s))) for s in range(40)]
    assert set(draws) == {1, 2}
    again = [int(sampling.sample_token(scores, settings, torch.Generator().manual_seed(s))) for s in range(40)]
    assert draws == again


def test_sampling_config_from_generate_kwargs() -> None:
    cfg = sampling.SamplingConfig.from_generate_kwargs({
        "do_sample": False, "temperature": 0.7, "top_k": 0, "top_p": 0.9, "repetition_penalty": 1.1,
        "subtalker_dosample": True, "subtalker_temperature": 0.5, "subtalker_top_k": 10, "subtalker_top_p": 0.95,
    })
    assert cfg.talker == sampling.SamplerSettings(False, 0.7, 0, 0.9)
    assert cfg.subtalker == sampling.SamplerSettings(True, 0.5, 10, 0.95)
    assert cfg.repetition_penalty == 1.1
