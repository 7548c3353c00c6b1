"""The talker's prefill: qwen-tts' prompt construction for one text, as a typed record.

``Qwen3TTSForConditionalGeneration.generate`` (qwen-tts 0.1.1) builds the talker's input
embeddings and the "trailing text" (text embeddings fed one per generated frame) inline, batched
and left-padded. This module is that construction for batch 1 (no padding), written step by step
in the same order and with the same slices, so the embeddings are bit-identical to the ones
qwen-tts hands to the talker (``tests/test_tts_engine.py`` checks it):

    [instruct text]                                   (VoiceDesign only)
    <|im_start|>assistant\\n                          (text side: 3 tokens, projected)
    tts_pad x n + tts_bos  +  codec think/language tags, [x-vector], pad     (summed)
    then either
      ICL:          ref text + text + eos   summed with   codec bos + reference codes
      non-ICL:      first text token + codec bos   (the rest trails, one token per frame)
      non-streaming: all text + eos over codec pads, then tts_pad + codec bos

Token ids (``input_ids`` etc.) come from qwen-tts' own tokenisation helpers
(``_build_assistant_text`` / ``_tokenize_texts``), as the adapter already calls them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class TalkerPrompt:
    """What the decode loop needs to start: the prefill and the per-frame text inputs."""

    embeds: torch.Tensor
    """(1, prompt_len, hidden): the talker's prefill input embeddings."""
    trailing: torch.Tensor
    """(1, n, hidden): text embeddings added to the input of generated frame 0, 1, ... n-1."""
    pad: torch.Tensor
    """(1, 1, hidden): ``tts_pad`` embedding added after the trailing text is used up."""
    voice_prefix: int = 0
    """Leading prefill positions that depend on the voice (and language) alone, not on the text:
    the VoiceDesign instruction, the chat header, the codec tags and speaker, and in ICL mode the
    reference transcript over the first reference frames; the same for every line of one voice.
    A hint for reuse (:class:`.engine.Decoder` keys what it keeps by the embeddings themselves)."""

    @property
    def length(self) -> int:
        return int(self.embeds.shape[1])


def _ids(model: Any, values: list[int], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor([values], device=model.talker.device, dtype=like.dtype)


def _text(model: Any, ids: torch.Tensor) -> torch.Tensor:
    """Text token ids -> talker-width embeddings (text embedding + the resize MLP)."""
    return model.talker.text_projection(model.talker.get_text_embeddings()(ids))


def _codec(model: Any, ids: torch.Tensor) -> torch.Tensor:
    return model.talker.get_input_embeddings()(ids)


@torch.inference_mode()
def build_talker_prompt(
    model: Any,
    input_ids: torch.Tensor,
    *,
    language: str = "auto",
    speaker_embed: torch.Tensor | None = None,
    ref_ids: torch.Tensor | None = None,
    ref_code: torch.Tensor | None = None,
    instruct_ids: torch.Tensor | None = None,
    non_streaming_mode: bool = False,
) -> TalkerPrompt:
    """The talker prompt of one text (``model``: ``Qwen3TTSForConditionalGeneration``).

    ``input_ids`` (1, n) is the tokenised ``<|im_start|>assistant\\n{text}<|im_end|>\\n
    <|im_start|>assistant\\n``; ``speaker_embed`` the x-vector (Base models); ``ref_ids`` and
    ``ref_code`` (frames, 16) switch on ICL mode; ``instruct_ids`` the VoiceDesign instruction.
    Raises ``ValueError`` for a language the model does not know.
    """
    cfg, tcfg = model.config, model.config.talker_config
    lang = language.lower()
    if lang != "auto" and lang not in tcfg.codec_language_id:
        raise ValueError(f"language {language!r} is not one of the model's {sorted(tcfg.codec_language_id)}")
    language_id = None if lang == "auto" else tcfg.codec_language_id[lang]
    parts: list[torch.Tensor] = []
    if instruct_ids is not None:
        parts.append(_text(model, instruct_ids))
    tts_bos, tts_eos, tts_pad = _text(
        model, _ids(model, [cfg.tts_bos_token_id, cfg.tts_eos_token_id, cfg.tts_pad_token_id], input_ids)
    ).chunk(3, dim=1)
    if language_id is None:
        tags = [tcfg.codec_nothink_id, tcfg.codec_think_bos_id, tcfg.codec_think_eos_id]
    else:
        tags = [tcfg.codec_think_id, tcfg.codec_think_bos_id, language_id, tcfg.codec_think_eos_id]
    codec0 = _codec(model, _ids(model, tags, input_ids))
    codec1 = _codec(model, _ids(model, [tcfg.codec_pad_id, tcfg.codec_bos_id], input_ids))
    if speaker_embed is None:
        codec = torch.cat([codec0, codec1], dim=1)
    else:
        spk = speaker_embed.to(model.talker.device).to(model.talker.dtype)
        codec = torch.cat([codec0, spk.view(1, 1, -1), codec1], dim=1)
    role = _text(model, input_ids[:, :3])
    tagged = torch.cat((tts_pad.expand(-1, codec.shape[1] - 2, -1), tts_bos), dim=1) + codec[:, :-1]
    embeds = torch.cat((role, tagged), dim=1)
    voice_prefix = int(embeds.shape[1])  # the text starts after the chat header and the codec tags
    if ref_code is not None and ref_ids is not None:
        icl, trailing = _icl_prompt(model, input_ids[:, 3:-5], ref_ids[:, 3:-2], ref_code.to(model.talker.device),
                                    tts_pad, tts_eos, non_streaming_mode)
        # Position i of the ICL part sums text token i with codec frame i (bos, then the reference
        # codes): the reference transcript's positions depend on the voice alone.
        voice_prefix += min(int(ref_ids.shape[1]) - 5, int(ref_code.shape[0]) + 1)
        embeds = torch.cat([embeds, icl], dim=1)
    else:
        embeds = torch.cat([embeds, _text(model, input_ids[:, 3:4]) + codec[:, -1:]], dim=1)
        if non_streaming_mode:
            body = input_ids[:, 3:-5]
            embeds = torch.cat([
                embeds[:, :-1],
                torch.cat((_text(model, body), tts_eos), dim=1)
                + _codec(model, _ids(model, [tcfg.codec_pad_id] * (body.shape[1] + 1), input_ids)),
                tts_pad + _codec(model, _ids(model, [tcfg.codec_bos_id], input_ids)),
            ], dim=1)
            trailing = tts_pad
        else:
            trailing = torch.cat((_text(model, input_ids[:, 4:-5]), tts_eos), dim=1)
    if parts:
        voice_prefix += sum(int(part.shape[1]) for part in parts)
        embeds = torch.cat([*parts, embeds], dim=1)
    return TalkerPrompt(embeds=embeds, trailing=trailing, pad=tts_pad, voice_prefix=voice_prefix)


def _icl_prompt(model: Any, text_id: torch.Tensor, ref_id: torch.Tensor, ref_code: torch.Tensor,
                tts_pad: torch.Tensor, tts_eos: torch.Tensor, non_streaming_mode: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``generate_icl_prompt``: reference text + text over codec bos + reference codes."""
    tcfg = model.config.talker_config
    text = torch.cat([_text(model, torch.cat([ref_id, text_id], dim=-1)), tts_eos], dim=1)
    groups = []
    for i in range(tcfg.num_code_groups):
        if i == 0:
            groups.append(_codec(model, ref_code[:, :1]))
        else:
            groups.append(model.talker.code_predictor.get_input_embeddings()[i - 1](ref_code[:, i:i + 1]))
    codec = torch.cat(groups, dim=1).sum(1).unsqueeze(0)
    codec = torch.cat([_codec(model, _ids(model, [tcfg.codec_bos_id], text_id)), codec], dim=1)
    n_text, n_codec = text.shape[1], codec.shape[1]
    if non_streaming_mode:
        embeds = text + _codec(model, _ids(model, [tcfg.codec_pad_id] * n_text, text_id))
        return torch.cat([embeds, codec + tts_pad], dim=1), tts_pad
    if n_text > n_codec:
        return text[:, :n_codec] + codec, text[:, n_codec:]
    text = torch.cat([text] + [tts_pad] * (n_codec - n_text), dim=1)
    return text + codec, tts_pad


def prompt_from_generate_kwargs(model: Any, inputs: Mapping[str, Any]) -> TalkerPrompt:
    """:func:`build_talker_prompt` from the keyword arguments of qwen-tts ``generate`` (batch of one).

    Accepts what the adapter passes there: ``input_ids`` (a one-element list), ``languages``,
    and optionally ``voice_clone_prompt`` (its ``ref_spk_embedding``, ``ref_code``,
    ``x_vector_only_mode``, ``icl_mode`` lists), ``ref_ids``, ``instruct_ids``,
    ``non_streaming_mode``.
    """
    input_ids = inputs["input_ids"][0]
    vcp = inputs.get("voice_clone_prompt")
    speaker = ref_code = ref_ids = None
    if vcp is not None:
        if vcp["x_vector_only_mode"][0] or vcp["icl_mode"][0]:
            speaker = vcp["ref_spk_embedding"][0]
        if vcp.get("ref_code") is not None and vcp["icl_mode"][0]:
            ref_code = vcp["ref_code"][0]
            ref_ids = inputs["ref_ids"][0]
    instruct = inputs.get("instruct_ids")
    return build_talker_prompt(
        model, input_ids, language=(inputs.get("languages") or ["auto"])[0], speaker_embed=speaker,
        ref_ids=ref_ids, ref_code=ref_code, instruct_ids=None if instruct is None else instruct[0],
        non_streaming_mode=bool(inputs.get("non_streaming_mode", False)),
    )
