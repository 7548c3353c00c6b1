"""Build a tiny Qwen3-TTS checkpoint of the real architecture, for tests and CI.

``build_tiny_checkpoint(DIR)`` writes a folder with exactly the layout of the hub repositories
(``Qwen/Qwen3-TTS-12Hz-0.6B-Base`` and friends)::

    DIR/config.json                  Qwen3TTSConfig: talker, code predictor, speaker encoder
    DIR/generation_config.json       qwen-tts sampling defaults (the hub file, verbatim values)
    DIR/preprocessor_config.json     Qwen3TTSProcessor
    DIR/tokenizer_config.json        Qwen2Tokenizer with the Qwen3-TTS special tokens
    DIR/vocab.json, DIR/merges.txt   a small byte-level BPE of our own
    DIR/model.safetensors
    DIR/speech_tokenizer/{config.json, configuration.json, preprocessor_config.json,
                          model.safetensors}   the 12 Hz tokenizer (Mimi encoder + decoder)

The classes are the ones of ``qwen-tts`` (``Qwen3TTSForConditionalGeneration``,
``Qwen3TTSTokenizerV2Model``); only widths and depths are small, and the weights are random with
a fixed seed. Token ids of the codec (pad 2148, bos 2149, eos 2150, language ids) and the codec
vocabulary (3072, with 2048-entry codebooks) are the real ones, so prompt construction, the
suppressed-token range and the 1920-samples-per-frame codec are exercised unchanged. The text
vocabulary is our own (a few hundred BPE merges) with the special tokens placed right after it;
``config.json`` names their ids, exactly as the real config names the real ids.

Heavy imports (torch, transformers, qwen_tts) happen inside the functions.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ..rates import FRAMES_PER_S, SAMPLES_PER_FRAME, TTS_SAMPLE_RATE

_LOGGER = logging.getLogger(__name__)

#: Pre-tokenizer pattern of Qwen2 (transformers ``tokenization_qwen2.PRETOKENIZE_REGEX``).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
    r"""\s*[\r\n]+|\s+(?!\S)|\s+"""
)

#: Special tokens in the order and with the flags of the hub ``tokenizer_config.json``
#: (ids 151643.. there; here they follow the BPE vocabulary). True = "special".
SPECIAL_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True), ("<tool_call>", False),
    ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False),
    ("<|file_sep|>", False), ("<tool_response>", False), ("</tool_response>", False),
    ("<think>", False), ("</think>", False), ("<|audio_start|>", True), ("<|audio_end|>", True),
    ("<tts_pad>", True), ("<tts_text_bos>", True), ("<tts_text_eod>", True),
    ("<tts_text_bos_single>", True), ("<|audio_pad|>", True),
)

#: BPE merges learned for the tiny text tokenizer (the real one has 151,387).
TINY_BPE_MERGES = 400

#: Training text for the tiny BPE: the chat-template words plus ordinary sentences, so
#: ``assistant`` and ``user`` become single tokens as in the real vocabulary (the model code
#: slices ``<|im_start|>assistant\n`` as exactly three tokens).
_BPE_CORPUS = (
    ["assistant user system"] * 64
    + [
        "The quick brown fox jumps over the lazy dog. Hello, how are you today?",
        "Please call Stella and ask her to bring these things with her from the store.",
        "She had your dark suit in greasy wash water all year, don't ask me to carry an oily rag.",
        "A calm, warm voice speaking slowly; a bright, fast and cheerful one; numbers 0123456789.",
        "Guten Tag, wie geht es dir? Bonjour, comment allez-vous? Hola, buenos dias.",
    ]
    * 16
)

#: Widths and depths of the tiny model. Everything not listed keeps the hub value.
TINY_TALKER = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, text_hidden_size=32,
)
#: M-RoPE sections must add up to head_dim / 2 (the hub's [24, 20, 20] for head_dim 128).
TINY_MROPE_SECTION = [4, 2, 2]
TINY_CODE_PREDICTOR = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16,
)
#: ECAPA-TDNN: the last channel count must equal the sum of the middle ones (MFA concat);
#: enc_dim must equal the talker width (the x-vector is a talker input embedding).
TINY_SPEAKER_ENCODER = dict(
    enc_dim=64, enc_channels=[32, 32, 32, 32, 96], enc_attention_channels=16, enc_se_channels=16,
)
TINY_CODEC_DECODER = dict(
    latent_dim=32, codebook_dim=16, decoder_dim=64, hidden_size=32, intermediate_size=64,
    head_dim=16, num_attention_heads=2, num_key_value_heads=2, num_hidden_layers=1,
    vector_quantization_hidden_dimension=16,
)
TINY_CODEC_ENCODER = dict(
    hidden_size=32, num_filters=4, intermediate_size=64, head_dim=16, num_attention_heads=2,
    num_key_value_heads=2, num_hidden_layers=1, codebook_dim=16,
    vector_quantization_hidden_dimension=16, upsample_groups=32, num_quantizers=16,
)

#: ``generation_config.json`` of the hub repositories (qwen-tts reads it as its defaults).
GENERATION_CONFIG: dict[str, Any] = {
    "do_sample": True, "repetition_penalty": 1.05, "temperature": 0.9, "top_p": 1.0, "top_k": 50,
    "subtalker_dosample": True, "subtalker_temperature": 0.9, "subtalker_top_p": 1.0,
    "subtalker_top_k": 50, "max_new_tokens": 8192,
}
PROCESSOR_CONFIG: dict[str, Any] = {
    "padding_side": "left", "padding_value": 0.0, "processor_class": "Qwen3TTSProcessor",
    "return_attention_mask": True,
}
SPEECH_FEATURE_EXTRACTOR_CONFIG: dict[str, Any] = {
    "chunk_length_s": None, "feature_extractor_type": "EncodecFeatureExtractor", "feature_size": 1,
    "overlap": None, "padding_side": "right", "padding_value": 0.0, "return_attention_mask": True,
    "sampling_rate": TTS_SAMPLE_RATE,
}
MODELSCOPE_CONFIGURATION: dict[str, Any] = {
    "framework": "pytorch", "task": "feature-extraction", "allow_remote": True,
}

#: Codec token ids and language ids of the hub talker config (identical in every variant).
CODEC_IDS: dict[str, Any] = dict(
    vocab_size=3072, codec_pad_id=2148, codec_bos_id=2149, codec_eos_token_id=2150,
    codec_think_id=2154, codec_nothink_id=2155, codec_think_bos_id=2156, codec_think_eos_id=2157,
    codec_language_id={
        "chinese": 2055, "english": 2050, "german": 2053, "italian": 2070, "portuguese": 2071,
        "spanish": 2054, "japanese": 2058, "korean": 2064, "french": 2061, "russian": 2069,
    },
)


def build_tiny_checkpoint(
    directory: str | Path, *, kind: str = "base", seed: int = 0, overwrite: bool = False
) -> Path:
    """Write a tiny random-weight Qwen3-TTS checkpoint (hub layout) into ``directory``.

    Parameters
    ----------
    directory : path
        Output folder; created if missing. Must be empty unless ``overwrite``.
    kind : {"base", "voice_design"}
        ``base`` has the ECAPA speaker encoder (voice cloning); ``voice_design`` has none.
    seed : int
        Seed of the random weights (same seed, same checkpoint).
    overwrite : bool
        Replace an existing non-empty folder.

    Returns
    -------
    Path
        The folder, loadable with ``tts.load_model(directory)``.
    """
    import torch

    if kind not in ("base", "voice_design"):
        raise ValueError(f"kind must be 'base' or 'voice_design', got {kind!r}")
    out = Path(directory)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    token_ids = write_text_tokenizer(out)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        _write_talker(out, kind=kind, token_ids=token_ids)
        _write_speech_tokenizer(out / "speech_tokenizer")
    _LOGGER.info("tiny %s checkpoint written to %s in %.1f s", kind, out, time.perf_counter() - t0)
    return out


def write_text_tokenizer(directory: Path, *, special_start_id: int | None = None) -> dict[str, int]:
    """Train the small byte-level BPE and write vocab.json, merges.txt, tokenizer_config.json.

    ``special_start_id`` places the special tokens at that id (the vocabulary is padded with
    unused placeholder entries up to it), e.g. 151643 to match the hub ids exactly; by default
    they follow the BPE vocabulary. Returns the ids of the tokens the model config names.
    """
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + TINY_BPE_MERGES, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(_BPE_CORPUS, trainer)
    vocab: dict[str, int] = tok.get_vocab()
    merges_path = Path(tok.model.save(str(directory))[1])  # writes vocab.json and merges.txt
    start = len(vocab) if special_start_id is None else int(special_start_id)
    if start < len(vocab):
        raise ValueError(f"special_start_id {start} overlaps the {len(vocab)}-token vocabulary")
    if start > len(vocab):  # placeholders keep ids contiguous up to the special tokens
        vocab.update({f"<|unused_{i}|>": i for i in range(len(vocab), start)})
        (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    ids = {name: start + i for i, (name, _) in enumerate(SPECIAL_TOKENS)}
    _write_tokenizer_config(directory, ids)
    _LOGGER.debug("tiny BPE: %d tokens, merges in %s", len(vocab), merges_path.name)
    return {
        "im_start_token_id": ids["<|im_start|>"],
        "im_end_token_id": ids["<|im_end|>"],
        "tts_pad_token_id": ids["<tts_pad>"],
        "tts_bos_token_id": ids["<tts_text_bos>"],
        "tts_eos_token_id": ids["<tts_text_eod>"],
        "assistant_token_id": vocab["assistant"],
        "text_vocab_size": _round_up(start + len(SPECIAL_TOKENS), 64),
    }


def _write_tokenizer_config(directory: Path, ids: dict[str, int]) -> None:
    """tokenizer_config.json with the keys and values of the hub file, at our ids."""
    special = dict(SPECIAL_TOKENS)
    extra = {
        "image_token": "<|image_pad|>", "audio_token": "<|audio_pad|>", "video_token": "<|video_pad|>",
        "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>",
        "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>",
    }
    additional = [
        "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
        "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
        "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<|audio_start|>", "<|audio_end|>",
        "<tts_pad>", "<tts_text_bos>", "<tts_text_bos_single>", "<|audio_pad|>",
    ]
    cfg: dict[str, Any] = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(i): {"content": name, "lstrip": False, "normalized": False, "rstrip": False,
                     "single_word": False, "special": special[name]}
            for name, i in ids.items()
        },
        "additional_special_tokens": additional,
        "extra_special_tokens": extra,
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
        **extra,
    }
    _write_json(directory / "tokenizer_config.json", cfg)


def tiny_model_config(*, kind: str, token_ids: dict[str, int]) -> dict[str, Any]:
    """The tiny ``config.json`` content (hub keys, small sizes)."""
    talker: dict[str, Any] = dict(
        attention_bias=False, attention_dropout=0, hidden_act="silu", initializer_range=0.02,
        max_position_embeddings=32768, model_type="qwen3_tts_talker", num_code_groups=16,
        position_id_per_seconds=13, rms_norm_eps=1e-06, rope_theta=1000000, sliding_window=None,
        use_cache=True, use_sliding_window=False, spk_id={}, spk_is_dialect={},
        rope_scaling={"interleaved": True, "mrope_section": TINY_MROPE_SECTION,
                      "rope_type": "default", "type": "default"},
        text_vocab_size=token_ids["text_vocab_size"],
        code_predictor_config=dict(
            attention_bias=False, attention_dropout=0, hidden_act="silu", initializer_range=0.02,
            max_position_embeddings=65536, max_window_layers=28,
            model_type="qwen3_tts_talker_code_predictor", num_code_groups=16, rms_norm_eps=1e-06,
            rope_scaling=None, rope_theta=1000000, sliding_window=None, tie_word_embeddings=False, use_cache=True,
            use_sliding_window=False, vocab_size=2048,
            layer_types=["full_attention"] * TINY_CODE_PREDICTOR["num_hidden_layers"],
            **TINY_CODE_PREDICTOR,
        ),
        **CODEC_IDS,
        **TINY_TALKER,
    )
    cfg: dict[str, Any] = {
        "architectures": ["Qwen3TTSForConditionalGeneration"],
        **{k: v for k, v in token_ids.items() if k.endswith("_token_id")},
        "model_type": "qwen3_tts",
        "tokenizer_type": "qwen3_tts_tokenizer_12hz",
        "tts_model_size": "tiny",
        "tts_model_type": kind,
        "talker_config": talker,
    }
    if kind == "base":
        cfg["speaker_encoder_config"] = dict(sample_rate=TTS_SAMPLE_RATE, **TINY_SPEAKER_ENCODER)
    return cfg


def _write_talker(out: Path, *, kind: str, token_ids: dict[str, int]) -> None:
    from .runtime import import_qwen_tts

    import_qwen_tts()  # quietly, before the submodule import below
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration

    cfg = tiny_model_config(kind=kind, token_ids=token_ids)
    model = Qwen3TTSForConditionalGeneration(Qwen3TTSConfig(**cfg))
    model.save_pretrained(str(out), safe_serialization=True)
    # The config is written as the hub file is: transformers' own serialisation adds keys to
    # speaker_encoder_config that qwen-tts 0.1.1 cannot read back.
    _write_json(out / "config.json", {**cfg, "transformers_version": _transformers_version()})
    _write_json(out / "generation_config.json", GENERATION_CONFIG)
    _write_json(out / "preprocessor_config.json", PROCESSOR_CONFIG)


def tiny_speech_tokenizer_config() -> dict[str, Any]:
    """The tiny ``speech_tokenizer/config.json`` content (hub keys, small sizes)."""
    decoder = dict(
        attention_bias=False, attention_dropout=0.0, codebook_size=2048, hidden_act="silu",
        layer_scale_initial_scale=0.01, max_position_embeddings=8000, num_quantizers=16,
        num_semantic_quantizers=1, rms_norm_eps=1e-05, rope_theta=10000,
        semantic_codebook_size=4096, sliding_window=72, upsample_rates=[8, 5, 4, 3],
        upsampling_ratios=[2, 2], **TINY_CODEC_DECODER,
    )
    encoder = dict(
        _frame_rate=FRAMES_PER_S, attention_bias=False, attention_dropout=0.0, audio_channels=1,
        codebook_size=2048, compress=2, dilation_growth_rate=2, dtype="float32", hidden_act="gelu",
        initializer_range=0.02, kernel_size=7, last_kernel_size=3, layer_scale_initial_scale=0.01,
        max_position_embeddings=8000, norm_eps=1e-05, normalize=False, num_residual_layers=1,
        num_semantic_quantizers=1, pad_mode="constant", residual_kernel_size=3, rope_theta=10000.0,
        sampling_rate=TTS_SAMPLE_RATE, sliding_window=250, trim_right_ratio=1.0,
        upsampling_ratios=[8, 6, 5, 4], use_cache=False, use_causal_conv=True,
        use_conv_shortcut=False, use_streaming=False, **TINY_CODEC_ENCODER,
    )
    return {
        "architectures": ["Qwen3TTSTokenizerV2Model"],
        "model_type": "qwen3_tts_tokenizer_12hz",
        "encoder_valid_num_quantizers": 16,
        "input_sample_rate": TTS_SAMPLE_RATE,
        "output_sample_rate": TTS_SAMPLE_RATE,
        "decode_upsample_rate": SAMPLES_PER_FRAME,
        "encode_downsample_rate": SAMPLES_PER_FRAME,
        "decoder_config": decoder,
        "encoder_config": encoder,
    }


def _write_speech_tokenizer(out: Path) -> None:
    from .runtime import import_qwen_tts

    import_qwen_tts()
    from qwen_tts.core import Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model

    out.mkdir(parents=True, exist_ok=True)
    cfg = tiny_speech_tokenizer_config()
    model = Qwen3TTSTokenizerV2Model(Qwen3TTSTokenizerV2Config(**cfg))
    randomize_codebooks(model)
    rescale_codec_decoder(model)
    model.save_pretrained(str(out), safe_serialization=True)
    _write_json(out / "config.json", {**cfg, "transformers_version": _transformers_version()})
    _write_json(out / "preprocessor_config.json", SPEECH_FEATURE_EXTRACTOR_CONFIG)
    _write_json(out / "configuration.json", MODELSCOPE_CONFIGURATION)
    gen = out / "generation_config.json"  # save_pretrained may add one; the hub folder has none
    if gen.exists():
        gen.unlink()


def randomize_codebooks(model: Any) -> int:
    """Give the RVQ codebooks of a fresh speech tokenizer random entries; returns the count.

    The codebooks are stored as running sums (``embedding_sum`` in the qwen-tts decoder,
    ``embed_sum`` in the Mimi encoder) that start at zero, so a freshly built tokenizer decodes
    every code to silence and encodes every frame to code 0. Random unit-variance entries make
    the random-weight codec behave like a codec (distinct codes, non-silent audio).
    """
    import torch

    n = 0
    with torch.no_grad():
        for module in model.modules():
            for name in ("embedding_sum", "embed_sum"):
                table = getattr(module, name, None)
                if isinstance(table, torch.Tensor) and table.dim() == 2:
                    table.normal_(0.0, 1.0)
                    module._embed = None  # Mimi caches embed_sum / cluster_usage
                    n += 1
    return n


def rescale_codec_decoder(model: Any, *, output_rms: float = 0.1) -> int:
    """Re-draw the codec decoder's conv and linear weights with std 1/sqrt(fan_in).

    With transformers' default std of 0.02 the signal shrinks at every one of the decoder's
    ~40 layers and reaches the denormal range (1e-38 and below), where CPU arithmetic is 10-100x
    slower: a random decoder would be both silent and unrepresentatively slow. Variance-
    preserving weights keep the waveform in a normal range, as trained weights do.
    """
    import torch

    n = 0
    with torch.no_grad():
        for module in model.decoder.modules():
            if isinstance(module, (torch.nn.Conv1d, torch.nn.ConvTranspose1d, torch.nn.Linear)):
                w = module.weight
                fan_in = w.shape[1] * (w.shape[2] if w.dim() == 3 else 1)
                if isinstance(module, torch.nn.ConvTranspose1d):  # weight is (in, out/groups, k)
                    fan_in = w.shape[0] * w.shape[2] // max(1, module.stride[0])
                w.normal_(0.0, 1.0 / max(1, fan_in) ** 0.5)
                n += 1
        # Calibrate the output conv so random codes decode to RMS ~``output_rms`` instead of
        # living at the decoder's [-1, 1] clamp.
        out_conv = model.decoder.decoder[-1].conv
        seen: list[torch.Tensor] = []
        hook = out_conv.register_forward_hook(lambda _m, _i, o: seen.append(o))
        codes = torch.randint(0, model.config.decoder_config.codebook_size, (1, 16, 12))
        model.decoder(codes)
        hook.remove()
        out_conv.weight.mul_(output_rms / max(float(seen[0].std()), 1e-6))
    return n


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _transformers_version() -> str:
    import transformers

    return str(transformers.__version__)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


# --- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m personalization_engine.qwen_adapter make-tiny DIR``: write a tiny checkpoint."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m personalization_engine.qwen_adapter")
    sub = parser.add_subparsers(dest="command", required=True)
    tiny = sub.add_parser("make-tiny", help="write a tiny random-weight Qwen3-TTS checkpoint (hub layout)")
    tiny.add_argument("directory", help="output folder (must be empty unless --overwrite)")
    tiny.add_argument("--kind", choices=("base", "voice_design"), default="base")
    tiny.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    tiny.add_argument("--overwrite", action="store_true", help="replace a non-empty folder")
    args = parser.parse_args(argv)
    try:
        out = build_tiny_checkpoint(args.directory, kind=args.kind, seed=args.seed, overwrite=args.overwrite)
    except (FileExistsError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0
