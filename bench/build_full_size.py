"""Build full-size random-weight Qwen3-TTS models (0.6B, 1.7B) in memory, for speed work.

The architecture comes verbatim from ``../shared/qwen3_tts_configs`` (the hub ``config.json``,
``speech_tokenizer/config.json`` and ``generation_config.json``); only the weights are random
(fixed seed) and the text tokenizer is our small BPE with the special tokens at the hub ids
(151643...), padded with unused entries so every id in the config is valid. Nothing is
written to the repository; the tokenizer files go to a temporary folder.

Two adjustments keep random weights representative for timing (both also used by the tiny
checkpoint, see ``personalization_engine/_qwen_tiny.py``): the RVQ codebooks get random entries
(fresh ones are all zero, which decodes to silence), and the codec decoder's convolutions are
variance-preserving (the default std of 0.02 shrinks the signal into the denormal range, where
CPU arithmetic is many times slower than with trained weights).

Usage (memory: ~4.5 GB for 0.6B, ~9 GB for 1.7B in float32)::

    .venv/bin/python bench/build_full_size.py 0.6b       # builds, prints parameter counts
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from personalization_engine.tts import MODEL_ALIASES, TTSModel  # noqa: E402
from personalization_engine.tts import tiny as _qwen_tiny  # noqa: E402
from personalization_engine.tts.runtime import import_qwen_tts  # noqa: E402

CONFIGS = REPO.parent / "shared" / "qwen3_tts_configs"
#: First special-token id of the hub tokenizer (<|endoftext|>).
HUB_SPECIAL_START_ID = 151643


def build_full_size(size: str = "0.6b", *, configs_dir: Path = CONFIGS, seed: int = 0) -> TTSModel:
    """A full-size random-weight Base model as a :class:`TTSModel` on CPU in float32.

    ``size`` is ``0.6b``, ``1.7b`` or ``1.7b-design``. The qwen-tts wrapper
    (``Qwen3TTSModel``) is ``model._qwen``, so the plain qwen-tts API runs on the same weights.
    """
    import torch

    qwen_tts = import_qwen_tts()
    from qwen_tts.core import Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration

    repo_id = MODEL_ALIASES[size]
    folder = configs_dir / repo_id.split("/")[-1]
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}/config.json not found; the configs live in ../shared/qwen3_tts_configs")
    cfg = _json(folder / "config.json")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3TTSForConditionalGeneration(Qwen3TTSConfig(**cfg))
        speech_cfg = Qwen3TTSTokenizerV2Config(**_json(folder / "speech_tokenizer" / "config.json"))
        speech = Qwen3TTSTokenizerV2Model(speech_cfg)
        _qwen_tiny.randomize_codebooks(speech)
        _qwen_tiny.rescale_codec_decoder(speech)
    model.load_speech_tokenizer(_speech_tokenizer_wrapper(qwen_tts, speech, folder))
    model.load_generate_config(_json(folder / "generation_config.json"))
    model.eval()
    qwen = qwen_tts.Qwen3TTSModel(model=model, processor=_processor(folder), generate_defaults=model.generate_config)
    return TTSModel(qwen, model_id=f"random-weights:{repo_id}", model_dir=folder, device="cpu", dtype="float32")


def _processor(folder: Path) -> Any:
    """Qwen3TTSProcessor over our BPE, with the hub special-token ids."""
    from qwen_tts.core.models import Qwen3TTSProcessor
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="qwen3_tts_tok_") as tmp:
        ids = _qwen_tiny.write_text_tokenizer(Path(tmp), special_start_id=HUB_SPECIAL_START_ID)
        tokenizer = AutoTokenizer.from_pretrained(tmp)
    cfg = _json(folder / "config.json")
    for key in ("im_start_token_id", "im_end_token_id", "tts_pad_token_id", "tts_bos_token_id", "tts_eos_token_id"):
        if ids[key] != cfg[key]:
            raise RuntimeError(f"tokenizer id {key}={ids[key]} differs from the hub config's {cfg[key]}")
    return Qwen3TTSProcessor(tokenizer=tokenizer)


def _speech_tokenizer_wrapper(qwen_tts: Any, model: Any, folder: Path) -> Any:
    """A ``Qwen3TTSTokenizer`` around an in-memory model, as ``from_pretrained`` would build it."""
    from transformers import EncodecFeatureExtractor

    pre = {k: v for k, v in _json(folder / "speech_tokenizer" / "preprocessor_config.json").items()
           if k != "feature_extractor_type"}
    tok = qwen_tts.Qwen3TTSTokenizer()
    tok.model = model.eval()
    tok.feature_extractor = EncodecFeatureExtractor(**pre)
    tok.config = model.config
    tok.device = next(model.parameters()).device
    return tok


def count_parameters(model: TTSModel) -> dict[str, int]:
    m = model._qwen.model
    parts = {"talker": m.talker, "speech_tokenizer": m.speech_tokenizer.model}
    if m.speaker_encoder is not None:
        parts["speaker_encoder"] = m.speaker_encoder
    return {k: sum(p.numel() for p in v.parameters()) for k, v in parts.items()}


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", choices=sorted(MODEL_ALIASES), nargs="?", default="0.6b")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    model = build_full_size(args.size)
    counts = count_parameters(model)
    print(f"{model.model_id}: built in {time.perf_counter() - t0:.1f} s")
    for name, n in counts.items():
        print(f"  {name:16s} {n / 1e6:9.1f} M parameters")
    model.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
