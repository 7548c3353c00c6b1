"""``bench/build_full_size.py --save``: the checkpoint it writes loads through ``load_model`` and
through qwen-tts' own ``from_pretrained`` (the issue's stable interface).

The real 0.6B configs (``tests/data/qwen3_tts_configs``, copies of ``../shared``'s) with the layer counts and the text
embedding width cut down (the file layout, module names and codec shapes are the hub's), so the
test builds, saves and loads in seconds.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "tests" / "data" / "qwen3_tts_configs"  # see tests/data/README.md
NAME = "Qwen3-TTS-12Hz-0.6B-Base"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_full_size", REPO / "bench" / "build_full_size.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def small_configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 0.6B configs with 1 talker layer, 1 predictor layer, a 64-wide text embedding and a
    1-layer, 96-channel codec decoder (same upsampling rates, so the same samples per frame)."""
    root = tmp_path_factory.mktemp("configs")
    folder = root / NAME
    shutil.copytree(CONFIGS / NAME, folder)
    cfg = json.loads((folder / "config.json").read_text())
    talker = cfg["talker_config"]
    talker.update(num_hidden_layers=1, text_hidden_size=64)
    talker["code_predictor_config"]["num_hidden_layers"] = 1
    (folder / "config.json").write_text(json.dumps(cfg))
    speech = json.loads((folder / "speech_tokenizer" / "config.json").read_text())
    speech["decoder_config"].update(num_hidden_layers=1, decoder_dim=96)
    (folder / "speech_tokenizer" / "config.json").write_text(json.dumps(speech))
    return root


@pytest.fixture(scope="module")
def saved(small_configs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    script = _script()
    qwen = script.build_qwen("0.6b", configs_dir=small_configs)
    out = tmp_path_factory.mktemp("ckpt") / "full"
    script.save_checkpoint(qwen, "0.6b", out, configs_dir=small_configs)
    return out


@pytest.fixture(scope="module")
def reference_audio(voices_dir: Path) -> tuple[np.ndarray, int]:
    from personalization_engine.audio_io import load_audio

    clip = load_audio(voices_dir / "LJ001-0004.flac", sample_rate=24_000)
    return clip.samples, clip.sample_rate


def test_saved_checkpoint_loads_and_speaks(saved: Path, reference_audio: tuple[np.ndarray, int]) -> None:
    from personalization_engine.qwen_adapter import load_model

    assert (saved / "model.safetensors").is_file() and (saved / "speech_tokenizer" / "model.safetensors").is_file()
    model = load_model(str(saved), device="cpu", quant="none")
    try:
        voice = model.create_voice(reference_audio, analyze=False)
        chunks = list(model.generate("Hello there.", voice, stream=True, seed=0, max_new_frames=3,
                                     _min_new_frames=3))
        audio = np.concatenate([c.audio for c in chunks])
        assert audio.dtype == np.float32 and audio.shape == (3 * model.samples_per_frame,)
        assert np.isfinite(audio).all() and float(np.abs(audio).max()) > 0
    finally:
        model.close()


def test_saved_checkpoint_loads_in_qwen_tts(saved: Path) -> None:
    import torch

    from personalization_engine.tts.runtime import import_qwen_tts

    qwen = import_qwen_tts().Qwen3TTSModel.from_pretrained(str(saved), dtype=torch.float32)
    assert qwen.model.config.talker_config.num_hidden_layers == 1
    assert int(qwen.model.speech_tokenizer.get_decode_upsample_rate()) == 1920


def test_a_rewritten_decoder_is_not_saved(small_configs: Path, tmp_path: Path) -> None:
    """A TTSModel rewrites its codec decoder for speed; those modules are not the hub's."""
    script = _script()
    model = script.build_full_size("0.6b", configs_dir=small_configs)
    try:
        with pytest.raises(ValueError, match="rewritten for speed"):
            script.save_checkpoint(model._qwen, "0.6b", tmp_path / "out", configs_dir=small_configs)
        assert not (tmp_path / "out").exists()
    finally:
        model.close()


def test_save_refuses_an_existing_folder(small_configs: Path, tmp_path: Path) -> None:
    script = _script()
    with pytest.raises(FileExistsError, match="exists"):
        script.save_checkpoint(None, "0.6b", tmp_path, configs_dir=small_configs)
