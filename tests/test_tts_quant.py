"""Compact talker weights (personalization_engine.tts.quant): accuracy, the real path, the cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from personalization_engine.errors import ModelLoadError, ProfileError  # noqa: E402
from personalization_engine.tts import _native, quant  # noqa: E402
from personalization_engine.tts._qlinear import (  # noqa: E402
    BF16Embedding,
    Int4Linear,
    Int8Linear,
    NativeInt4Linear,
    NativeInt8Linear,
    quantize_linear,
)

#: Relative output error ||y_q - y|| / ||y|| allowed per mode on Gaussian weights and inputs.
#: bf16 rounds weights and inputs to 8 mantissa bits (~0.4 % each); int8 per-channel gives
#: ~0.8 % (native: int8 blocks of 32 and int8 activations, ~0.75 %); int4 in groups of 32 ~8 %
#: (measured 0.079 at 3072 x 1024, native 0.077). Limits leave headroom.
TOLERANCE = {"bf16": 0.01, "int8": 0.02, "int4": 0.10}
#: Kernel families: ours (tts/_native.py, when it builds here) and PyTorch's.
KERNELS = ["native", "torch"]


def _kernels(kind: str) -> Any:
    import contextlib

    if kind == "native" and not _native.available():
        pytest.skip(f"native kernels unavailable here: {_native.describe()}")
    return contextlib.nullcontext() if kind == "native" else _native.disabled()
REF_TEXT = "Hello from a tiny model."


def _fresh_tiny(folder: Path) -> Any:
    """A new TTSModel on the tiny checkpoint (not the resident one other tests share)."""
    from personalization_engine.tts.device import load_qwen
    from personalization_engine.tts.model import TTSModel

    qwen = load_qwen(folder, "cpu", "float32")
    return TTSModel(qwen, model_id="tiny", model_dir=folder, device="cpu", dtype="float32")


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("mode", sorted(TOLERANCE))
@pytest.mark.parametrize("bias", [False, True])
def test_quantized_linear_matches_float(mode: str, bias: bool, kernels: str) -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 512, bias=bias)
    torch.nn.init.normal_(lin.weight, std=0.02)
    x = torch.randn(2, 3, 256)  # leading dims are kept, as in the HF forward
    with _kernels(kernels), torch.inference_mode():
        packed = quantize_linear(lin, mode)
        y, yq = lin(x), packed(x)
    assert packed.mode == mode and packed.kind.endswith("n") == (kernels == "native")
    assert yq.shape == y.shape and yq.dtype == torch.float32
    rel = float((yq - y).norm() / y.norm())
    assert rel < TOLERANCE[mode], f"{mode}: relative error {rel:.4f}"
    assert rel > 0  # it really is a different representation


def test_int4_falls_back_to_int8_where_the_kernel_rejects_the_shape() -> None:
    """PyTorch's CPU int4 kernel needs out % 16 == 0 and in % 32 == 0; other layers become int8.
    Ours takes any out and in % 32 == 0; other shapes fall back to PyTorch's kernels."""
    with _native.disabled():
        assert isinstance(quantize_linear(torch.nn.Linear(64, 24), "int4"), Int8Linear)
        assert isinstance(quantize_linear(torch.nn.Linear(64, 32), "int4"), Int4Linear)
    if _native.available():
        assert isinstance(quantize_linear(torch.nn.Linear(64, 24), "int4"), NativeInt4Linear)
        assert isinstance(quantize_linear(torch.nn.Linear(64, 24), "int8"), NativeInt8Linear)
        assert isinstance(quantize_linear(torch.nn.Linear(40, 32), "int4"), Int8Linear)  # in % 32 != 0: torch int8


def test_bf16_embedding_is_lossless_for_bf16_weights() -> None:
    weights = torch.randn(100, 16).to(torch.bfloat16)
    ids = torch.tensor([[0, 5, 99]])
    ref = torch.nn.functional.embedding(ids, weights.float())
    out = BF16Embedding(weights, torch.float32)(ids)
    assert out.dtype == torch.float32 and torch.equal(out, ref)


@pytest.mark.parametrize(
    "value, match",
    [
        ("int3", "use one of auto, none, bf16, int8, int4"),  # a mode that does not exist
        ("fp8", "use one of auto, none, bf16, int8, int4"),  # not offered on CPU
        ("", "quant ''"),  # empty
    ],
)
def test_bad_mode_lists_the_choices(value: str, match: str) -> None:
    with pytest.raises(ProfileError, match=match):
        quant.resolve_quant(value, "cpu")


def test_resolve_quant() -> None:
    assert quant.resolve_quant("auto", "cpu") == "int8"
    assert quant.resolve_quant(" INT4 ", "cpu") == "int4"
    assert quant.resolve_quant("auto", "cuda:0") == "none"
    assert quant.resolve_quant("bf16", "cuda:0") == "bf16"
    with pytest.raises(ProfileError, match="CPU kernels"):
        quant.resolve_quant("int4", "cuda:0")


def test_quantize_model_refuses_unresolved_auto_and_non_models() -> None:
    with pytest.raises(ProfileError, match="resolve_quant"):
        quant.quantize_model(object(), "auto")
    with pytest.raises(ModelLoadError, match="no Qwen3-TTS talker"):
        quant.quantize_model(object(), "int8")


@pytest.mark.parametrize("mode, kernels", [("int4", "native"), ("int4", "torch"), ("int8", "native"),
                                           ("int8", "torch"), ("bf16", "native"), ("bf16", "torch")])
def test_quantized_tiny_checkpoint_still_speaks(tiny_checkpoint: Path, voices_dir: Path, mode: str,
                                                kernels: str) -> None:
    """The whole real path (voice prompt, talker, code predictor, codec decoder) on packed weights."""
    model = _fresh_tiny(tiny_checkpoint)
    lines: list[str] = []
    talker = model._qwen.model.talker
    linears = len(quant.target_linears(talker))
    with _kernels(kernels):
        report = quant.quantize_model(model._qwen, mode, progress=lines.append)
    assert report.kernels == ("torch" if kernels == "torch" else _native.describe())
    assert report.layers == linears > 30 and not quant.target_linears(talker)  # no float Linear left
    assert report.packed_bytes < report.float_bytes
    assert any(line.startswith("quantizing talker 2/2") for line in lines), lines
    voice = model.create_voice(voices_dir / "LJ001-0004.flac", analyze=False)
    chunks = list(model.generate(REF_TEXT, voice, stream=True, seed=0, max_new_frames=12, _min_new_frames=12))
    audio = np.concatenate([c.audio for c in chunks])
    assert len(audio) == 12 * model.samples_per_frame
    assert np.isfinite(audio).all() and float(np.abs(audio).max()) > 0
    model.close()


def test_cache_round_trips_and_a_tampered_file_is_rebuilt(tiny_checkpoint: Path, tmp_path: Path) -> None:
    key = quant.checkpoint_hash(tiny_checkpoint)
    x = torch.randn(3, 64)

    def run() -> tuple[quant.QuantReport, Any]:
        model = _fresh_tiny(tiny_checkpoint)
        report = quant.quantize_model(model._qwen, "int4", cache_dir=tmp_path, checkpoint_hash=key)
        with torch.inference_mode():
            y = model._qwen.model.talker.codec_head(x)
        model.close()
        return report, y

    built, y_built = run()
    assert built.cache == "built" and built.cache_path is not None and built.cache_path.is_file()
    hit, y_hit = run()
    assert hit.cache == "hit" and torch.equal(y_hit, y_built)

    data = bytearray(built.cache_path.read_bytes())
    data[-100] ^= 0x55  # one flipped byte inside the packed weights
    built.cache_path.write_bytes(bytes(data))
    rebuilt, y_rebuilt = run()
    assert rebuilt.cache == "rebuilt" and "SHA-256" in rebuilt.cache_problem
    assert torch.equal(y_rebuilt, y_built)
    assert run()[0].cache == "hit"  # the rebuilt cache is good again


def test_cache_from_another_torch_or_mode_is_not_used(tiny_checkpoint: Path, tmp_path: Path) -> None:
    model = _fresh_tiny(tiny_checkpoint)
    report = quant.quantize_model(model._qwen, "int8", cache_dir=tmp_path, checkpoint_hash="a" * 64)
    model.close()
    assert report.cache_path is not None
    manifest_path = report.cache_path.with_suffix(".json")
    manifest = json.loads(manifest_path.read_text())
    manifest["torch"] = "0.0.1"
    manifest_path.write_text(json.dumps(manifest))
    model = _fresh_tiny(tiny_checkpoint)
    again = quant.quantize_model(model._qwen, "int8", cache_dir=tmp_path, checkpoint_hash="a" * 64)
    model.close()
    assert again.cache == "rebuilt" and "torch" in again.cache_problem


def test_checkpoint_hash_and_dtype(tiny_checkpoint: Path, tmp_path: Path) -> None:
    assert quant.checkpoint_hash(tiny_checkpoint) == quant.checkpoint_hash(tiny_checkpoint)
    assert quant.checkpoint_dtype(tiny_checkpoint) == "F32"  # make-tiny saves float32
    assert quant.load_dtype(tiny_checkpoint, "int4", "cpu") == "float32"  # bf16 would round fp32 weights
    with pytest.raises(ModelLoadError, match="no weights"):
        quant.checkpoint_hash(tmp_path)
    assert quant.default_cache_dir(tmp_path) == tmp_path / quant.MODEL_CACHE_SUBDIR


def test_load_model_quant_is_checked_before_any_weights(tmp_path: Path) -> None:
    from personalization_engine.tts import load_model

    with pytest.raises(ProfileError, match="quant 'int3' is not supported; use one of auto, none"):
        load_model(str(tmp_path / "no-such-model"), device="cpu", quant="int3")


def test_load_model_applies_and_records_the_mode(tiny_checkpoint: Path) -> None:
    from personalization_engine.tts import load_model

    lines: list[str] = []
    model = load_model(str(tiny_checkpoint), device="cpu", quant="int4", progress=lines.append)
    try:
        assert model.quant == "int4" and "quant=int4" in repr(model)
        assert model.quant_report is not None and model.quant_report.layers > 30
        assert model._qwen.model.talker.codec_head.mode == "int4"
        assert model.quant_report.kernels == ("torch" if not _native.available() else _native.describe())
        assert any("int4" in line for line in lines)
        assert load_model(str(tiny_checkpoint), device="cpu", quant="int4") is model  # still resident
        auto = load_model(str(tiny_checkpoint), device="cpu", quant="auto")  # replaces it
        assert auto.quant == "int8" and model.closed
    finally:
        load_model(str(tiny_checkpoint), device="cpu", quant="none").close()  # leave no quantized resident
