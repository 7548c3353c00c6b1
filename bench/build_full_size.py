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

``--save DIR`` writes the model as a checkpoint in the hub layout (``config.json`` and the
other hub files verbatim from the configs folder, our tokenizer files at the hub ids, the talker
and speaker encoder as bf16 ``model.safetensors`` like the hub file, ``speech_tokenizer/`` in
float32), so ``load_model(DIR)`` and ``qwen_tts.Qwen3TTSModel.from_pretrained(DIR)`` load it as
they load real weights. It is written into a temporary sibling folder and renamed into place when
complete, so a half-written DIR never exists.

Usage (memory: ~4.5 GB for 0.6B, ~9 GB for 1.7B in float32)::

    .venv/bin/python bench/build_full_size.py 0.6b       # builds, prints parameter counts
    .venv/bin/python bench/build_full_size.py 0.6b --save /work/cache/full-0.6b
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


def build_qwen(size: str = "0.6b", *, configs_dir: Path = CONFIGS, seed: int = 0) -> Any:
    """A full-size random-weight Base model as qwen-tts' ``Qwen3TTSModel`` on CPU in float32.

    ``size`` is ``0.6b``, ``1.7b`` or ``1.7b-design``. The modules are qwen-tts' own, untouched
    (what :func:`save_checkpoint` writes); :func:`build_full_size` wraps them for our API.
    """
    import torch

    qwen_tts = import_qwen_tts()
    from qwen_tts.core import Qwen3TTSTokenizerV2Config, Qwen3TTSTokenizerV2Model
    from qwen_tts.core.models import Qwen3TTSConfig, Qwen3TTSForConditionalGeneration

    folder = _config_folder(size, configs_dir)
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
    return qwen_tts.Qwen3TTSModel(model=model, processor=_processor(folder), generate_defaults=model.generate_config)


def build_full_size(size: str = "0.6b", *, configs_dir: Path = CONFIGS, seed: int = 0) -> TTSModel:
    """:func:`build_qwen` as a :class:`TTSModel` on CPU in float32 (its codec decoder rewritten for
    speed, as ``load_model`` does); the plain qwen-tts API runs on the same weights (``model._qwen``)."""
    repo_id = MODEL_ALIASES[size]
    qwen = build_qwen(size, configs_dir=configs_dir, seed=seed)
    return TTSModel(qwen, model_id=f"random-weights:{repo_id}", model_dir=_config_folder(size, configs_dir),
                    device="cpu", dtype="float32")


def _config_folder(size: str, configs_dir: Path) -> Path:
    folder = Path(configs_dir) / MODEL_ALIASES[size].split("/")[-1]
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder}/config.json not found; the configs live in ../shared/qwen3_tts_configs")
    return folder


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


#: Files copied verbatim from the configs folder (those that exist there).
HUB_FILES = ("config.json", "generation_config.json", "preprocessor_config.json", "configuration.json")
SPEECH_FILES = ("config.json", "configuration.json", "preprocessor_config.json")


def save_checkpoint(qwen: Any, size: str, directory: Path, *, configs_dir: Path = CONFIGS) -> Path:
    """Write ``qwen`` (from :func:`build_qwen`) to ``directory`` in the hub layout.

    The talker and speaker encoder are cast to bfloat16 in place (as the hub file stores them),
    so ``qwen`` is bf16 afterwards. ``directory`` must not exist; the files go to a temporary
    sibling that is renamed to ``directory`` once everything is written. A model whose codec
    decoder was rewritten for speed (a :class:`TTSModel`'s, ``tts.codec.optimize_decoder``) is
    refused: its modules no longer have the hub's names and shapes.
    """
    import torch

    from personalization_engine.tts.codec import is_optimized

    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(f"{directory} exists; remove it or choose another folder")
    if is_optimized(qwen.model.speech_tokenizer.model.decoder):
        raise ValueError("this model's codec decoder was rewritten for speed (a TTSModel's); save the model "
                         "from build_qwen(), whose modules are qwen-tts' own")
    folder = _config_folder(size, configs_dir)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        _write_text_side(tmp, folder)
        m = qwen.model
        speech = m.speech_tokenizer
        m.to(torch.bfloat16)
        # The speech tokenizer wrapper is not a submodule, so it keeps float32 (as on the hub).
        m.save_pretrained(str(tmp), safe_serialization=True, max_shard_size="100GB")
        for name in HUB_FILES:  # save_pretrained rewrote config.json; the hub file is the truth
            if (folder / name).is_file():
                shutil.copyfile(folder / name, tmp / name)
        st = tmp / "speech_tokenizer"
        speech.model.save_pretrained(str(st), safe_serialization=True, max_shard_size="100GB")
        for name in SPEECH_FILES:
            shutil.copyfile(folder / "speech_tokenizer" / name, st / name)
        if (st / "generation_config.json").exists():  # the hub folder has none
            (st / "generation_config.json").unlink()
        for f in tmp.rglob("*"):
            if f.is_file():
                os.chmod(f, 0o644)  # safetensors writes 0600; the cache is shared
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        if directory.exists():
            raise FileExistsError(f"{directory} appeared while writing; the checkpoint is left in {tmp}")
        os.rename(tmp, directory)
    except BaseException:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _write_text_side(out: Path, folder: Path) -> None:
    """Our BPE tokenizer files with the special tokens at the hub ids (checked against config.json)."""
    ids = _qwen_tiny.write_text_tokenizer(out, special_start_id=HUB_SPECIAL_START_ID)
    cfg = _json(folder / "config.json")
    for key in ("im_start_token_id", "im_end_token_id", "tts_pad_token_id", "tts_bos_token_id", "tts_eos_token_id"):
        if ids[key] != cfg[key]:
            raise RuntimeError(f"tokenizer id {key}={ids[key]} differs from the hub config's {cfg[key]}")


def count_parameters(qwen: Any) -> dict[str, int]:
    """Parameters of the talker, the speech tokenizer and the speaker encoder of a qwen-tts model."""
    m = qwen.model
    parts = {"talker": m.talker, "speech_tokenizer": m.speech_tokenizer.model}
    if m.speaker_encoder is not None:
        parts["speaker_encoder"] = m.speaker_encoder
    return {k: sum(p.numel() for p in v.parameters()) for k, v in parts.items()}


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size", choices=sorted(MODEL_ALIASES), nargs="?", default="0.6b")
    parser.add_argument("--save", metavar="DIR", type=Path, default=None,
                        help="write the checkpoint to DIR (hub layout; DIR must not exist)")
    args = parser.parse_args(argv)
    if args.save is not None and args.save.exists():
        print(f"error: {args.save} exists; remove it or choose another folder", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    qwen = build_qwen(args.size)
    counts = count_parameters(qwen)
    print(f"random-weights:{MODEL_ALIASES[args.size]}: built in {time.perf_counter() - t0:.1f} s")
    for name, n in counts.items():
        print(f"  {name:16s} {n / 1e6:9.1f} M parameters")
    if args.save is not None:
        t0 = time.perf_counter()
        save_checkpoint(qwen, args.size, args.save)
        print(f"saved to {args.save} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
