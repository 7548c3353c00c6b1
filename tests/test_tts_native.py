"""Our int4/int8 CPU kernels (personalization_engine.tts._native, _gemv.c) against known answers.

* the kernels equal the product of the dequantized weight and the block-quantized activations
  (the only rounding is float summation order), on shapes that exercise both the AVX2 blocks
  and the scalar tail, for one and several activation rows;
* the plain-C build (no SIMD) equals the AVX2 build;
* fused q|k|v and gate|up modules compute exactly what the separate modules computed, in the
  same memory;
* one native stack step equals the layer-by-layer PyTorch forward on the tiny checkpoint's
  quantized talker and code predictor (hidden state and the key/value cache);
* the decode helper thread (_pool.c) changes no bit of a stack step (one token, or the two of a
  short prefill in one call), also when the caller takes chunks back from it (a helper held up
  inside its chunks); the short prefill equals the PyTorch prefill;
* the one-pass SnakeBeta (_snake.c) equals PyTorch's four passes on channels-last rows, from
  small arguments to ones beyond its own sine's range (libm's then), in the SIMD and plain builds;
* the switch back to PyTorch's kernels, the cache key, and the error on a bad shape.
"""

from __future__ import annotations

import ctypes
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from personalization_engine.tts import _native, layers, quant  # noqa: E402
from personalization_engine.tts._qlinear import (  # noqa: E402
    Int4Linear,
    NativeBF16Linear,
    NativeInt4Linear,
    NativeInt8Linear,
    fuse_outputs,
)

pytestmark = pytest.mark.skipif(not _native.available(), reason=f"native kernels unavailable: {_native.describe()}")


def _block_quantized(x: torch.Tensor) -> torch.Tensor:
    """What the kernel multiplies with: x rounded to int8 per block of 32 (scale max|x| / 127)."""
    blocks = x.reshape(*x.shape[:-1], -1, 32)
    scale = blocks.abs().amax(dim=-1, keepdim=True) / 127
    q = torch.where(scale > 0, torch.round(blocks / torch.where(scale > 0, scale, 1)), 0)
    return (q * scale).reshape(x.shape)


@pytest.mark.parametrize("cls", [NativeInt4Linear, NativeInt8Linear, NativeBF16Linear])
@pytest.mark.parametrize("out_f, in_f, rows", [(48, 96, 1), (40, 288, 5), (64, 1024, 2), (7, 32, 1), (256, 512, 80)])
def test_kernel_equals_the_dequantized_product(cls: Any, out_f: int, in_f: int, rows: int) -> None:
    """int4/int8: dequantized weight x block-quantized activations; bf16: x stays float32."""
    torch.manual_seed(out_f + in_f)
    module = cls.from_float(torch.randn(out_f, in_f) * 0.02)
    x = torch.randn(rows, in_f)
    expected = (x if cls is NativeBF16Linear else _block_quantized(x)) @ module.dequantize().T
    with torch.inference_mode():
        got = module(x)
    assert got.shape == (rows, out_f) and got.dtype == torch.float32
    assert float((got - expected).abs().max()) <= 1e-5 * float(expected.abs().max()) + 1e-7


def test_codes_round_to_the_nearest_level() -> None:
    """int4 (symmetric, GGML's Q4_0 rule): each block's largest-magnitude weight is a level
    (code 0), every weight inside the levels' range is within half a step of the nearest one, and
    the few beyond the top level (7 steps on the other side) within one step; int8: within half a
    step of zero-centred levels."""
    torch.manual_seed(1)
    w = torch.randn(32, 256) * 0.05
    q4 = NativeInt4Linear.from_float(w)
    step4 = q4.scales.to(torch.float32).repeat_interleave(32, dim=1)
    err = (q4.dequantize() - w).abs()
    inside = (w / step4 >= -8.0 - 1e-3) & (w / step4 <= 7.0 + 1e-3)  # levels -8 .. 7 steps (signed step)
    assert bool((err[inside] <= step4.abs()[inside] / 2 + 1e-4 * step4.abs()[inside]).all())
    assert bool((err <= step4.abs() * (1 + 1e-4)).all()) and float(inside.float().mean()) > 0.9
    blocks = w.reshape(32, 8, 32)
    extreme = blocks.gather(-1, blocks.abs().argmax(dim=-1, keepdim=True))
    got = q4.dequantize().reshape(32, 8, 32).gather(-1, blocks.abs().argmax(dim=-1, keepdim=True))
    assert bool(((got - extreme).abs() <= 1e-3 * extreme.abs()).all())
    q8 = NativeInt8Linear.from_float(w)
    step8 = q8.scales.to(torch.float32).repeat_interleave(32, dim=1)
    assert bool(((q8.dequantize() - w).abs() <= step8 / 2 + 1e-3 * step8).all())
    zero = NativeInt4Linear.from_float(torch.zeros(16, 64))  # constant blocks: no division by zero
    assert torch.equal(zero.dequantize(), torch.zeros(16, 64))


@pytest.fixture(scope="module")
def plain_lib(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The kernels built without SIMD flags (the plain-C fallback), to compare with the AVX2 build."""
    if "(AVX2" not in _native.describe():
        pytest.skip("this machine has no AVX2 build to compare with")
    compiler = _native._compiler()
    assert compiler is not None
    plain = tmp_path_factory.mktemp("plain") / "plain.so"
    _native._build(compiler, ["-O2", "-fPIC", "-shared"], plain)
    lib = ctypes.CDLL(str(plain))
    assert lib.pe_simd() == 0
    return lib


def test_plain_c_build_equals_the_simd_build(plain_lib: Any) -> None:
    lib = plain_lib
    torch.manual_seed(2)
    module = NativeInt4Linear.from_float(torch.randn(24, 544) * 0.02)
    x = torch.randn(2, 544)
    out = torch.empty(2, 24)
    vp = ctypes.c_void_p
    rc = lib.pe_gemm_q4(vp(module.qweight.data_ptr()), vp(module.scales.data_ptr()), vp(x.data_ptr()),
                        vp(out.data_ptr()), 2, 24, 544, 0, 24)
    assert rc == 0
    with torch.inference_mode():
        simd = module(x)
    assert float((out - simd).abs().max()) <= 1e-5 * float(simd.abs().max())


def test_vnni_builds_equal_the_avx2_build(tmp_path: Path) -> None:
    """Where the CPU has VNNI the integer sums use vpdpbusd; they equal AVX2's vpmaddubsw +
    vpmaddwd exactly (no int16 saturation at these ranges), so q8 (and q4 with AVX-VNNI) match
    the AVX2 build bit for bit; with AVX-512 the q4 products sum two blocks per vector, in
    another order: equal to float rounding. One row and a prefill."""
    if "VNNI" not in _native.describe():
        pytest.skip("this CPU has no VNNI (AVX-VNNI or AVX512-VNNI): the AVX2 build is the one in use")
    compiler = _native._compiler()
    assert compiler is not None
    _native._build(compiler, _native._flag_choices()[-1], tmp_path / "avx2.so")  # without the VNNI flags
    avx2 = ctypes.CDLL(str(tmp_path / "avx2.so"))
    assert avx2.pe_simd() == 1
    avx512 = "AVX-512" in _native.describe()
    torch.manual_seed(4)
    vp = ctypes.c_void_p
    for cls, fn in ((NativeInt4Linear, "pe_gemm_q4"), (NativeInt8Linear, "pe_gemm_q8")):
        module = cls.from_float(torch.randn(40, 544) * 0.05)
        for rows in (1, 7):
            x = torch.randn(rows, 544) * 3
            out = torch.empty(rows, 40)
            rc = getattr(avx2, fn)(vp(module.qweight.data_ptr()), vp(module.scales.data_ptr()), vp(x.data_ptr()),
                                   vp(out.data_ptr()), rows, 40, 544, 0, 40)
            assert rc == 0
            with torch.inference_mode():
                got = module(x)
            if avx512 and fn == "pe_gemm_q4":
                assert float((got - out).abs().max()) <= 1e-5 * float(out.abs().max()), (fn, rows)
            else:
                assert torch.equal(got, out), (fn, rows)


def test_a_compiler_without_the_vnni_flags_still_gets_the_avx2_build(monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """gcc < 11 has no -mavxvnni: a build with flags the compiler refuses falls back to the
    build without the VNNI / AVX-512 flags instead of to PyTorch's kernels."""
    if "(AVX2" not in _native.describe():
        pytest.skip("this machine has no AVX2 build")
    bogus = "-mno-such-isa-extension"
    monkeypatch.setattr(_native, "_AVX_VNNI_FLAGS", (bogus,))
    monkeypatch.setattr(_native, "_flags", lambda: ["-O3", "-fPIC", "-shared", "-fno-math-errno",
                                                    *_native._SIMD_FLAGS, bogus])
    saved = dict(_native._state)
    _native._state.clear()
    _native._state["helper"] = saved.get("helper", False)  # leave the new library's helper thread off
    try:
        with caplog.at_level("WARNING", logger=_native.__name__):
            lib = _native.library()
        assert lib is not None and lib.pe_simd() == 1
        assert _native.describe().startswith("native (AVX2)")
        assert any(bogus in r.getMessage() for r in caplog.records)
    finally:
        _native._state.clear()
        _native._state.update(saved)


def test_fused_outputs_compute_the_same_in_the_same_memory() -> None:
    torch.manual_seed(3)
    parts = [NativeInt4Linear.from_float(torch.randn(n, 64) * 0.02) for n in (32, 16, 16)]
    x = torch.randn(1, 64)
    with torch.inference_mode():
        before = [p(x) for p in parts]
        fused = fuse_outputs(parts)
        assert fused is not None
        joined = fused(x)
        after = [p(x) for p in parts]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert torch.equal(joined, torch.cat(before, dim=-1))
    base = fused.qweight.data_ptr()
    assert [p.qweight.data_ptr() - base for p in parts] == [0, 32 * 32, 48 * 32]  # rows of 64 / 2 bytes
    mixed = [NativeInt4Linear.from_float(torch.randn(16, 64)), NativeInt8Linear.from_float(torch.randn(16, 64))]
    assert fuse_outputs(mixed) is None  # different formats are never fused


@pytest.fixture(scope="module", params=["int4", "int8", "bf16"])
def quantized_tiny(tiny_checkpoint: Path, request: pytest.FixtureRequest) -> Any:
    from personalization_engine.tts.device import load_qwen

    qwen = load_qwen(tiny_checkpoint, "cpu", "float32")
    quant.quantize_model(qwen, request.param)
    return qwen.model


@pytest.mark.parametrize("which", ["talker", "predictor"])
def test_native_stack_step_equals_the_layer_by_layer_forward(quantized_tiny: Any, which: str) -> None:
    from personalization_engine.tts.engine import Decoder

    decoder = Decoder(quantized_tiny)
    stack = decoder.talker_stack if which == "talker" else decoder.predictor_stack
    assert stack.native is not None and all(q is not None and g is not None for q, g in stack.fused)
    torch_stack = dataclasses.replace(stack, native=None)
    capacity = min(16, int(stack.cos.shape[0]))
    hidden = int(stack.norm_weight.shape[0])
    torch.manual_seed(4)
    prompt, token = torch.randn(1, 5, hidden), torch.randn(1, 1, hidden)
    caches = [stack.allocate(capacity), stack.allocate(capacity)]
    slots = torch.arange(capacity)
    with torch.inference_mode():
        outs = []
        for s, cache in zip((stack, torch_stack), caches, strict=True):
            layers.forward(s, prompt, cache, torch.arange(5))  # prefill: the same PyTorch path for both
            h = token
            for pos in (5, 6, 7):  # three decode steps, each reading the ones before from the cache
                position = torch.tensor([pos])
                h = layers.forward(s, h, cache, position, layers.visible(position, slots))
            outs.append(h)
    native, reference = outs
    assert float((native - reference).abs().max()) <= 1e-4 * float(reference.abs().max())
    for k_nat, k_ref in zip(caches[0].keys + caches[0].values, caches[1].keys + caches[1].values, strict=True):
        assert float((k_nat - k_ref).abs().max()) <= 1e-4 * (float(k_ref.abs().max()) + 1e-6)


def test_a_short_prefill_runs_natively_and_equals_the_pytorch_prefill(quantized_tiny: Any) -> None:
    """The code predictor's two-position start of each frame: one native call for both tokens
    gives the hidden states and the cache of the causal PyTorch prefill."""
    from personalization_engine.tts.engine import Decoder

    stack = Decoder(quantized_tiny).predictor_stack
    assert stack.native is not None and layers.NATIVE_PREFILL_MAX >= 2
    torch_stack = dataclasses.replace(stack, native=None)
    hidden = int(stack.norm_weight.shape[0])
    torch.manual_seed(6)
    x = torch.randn(1, 2, hidden)
    native_cache, ref_cache = stack.allocate(4), stack.allocate(4)
    with torch.inference_mode():
        native = layers.forward(stack, x, native_cache, torch.arange(2))
        reference = layers.forward(torch_stack, x, ref_cache, torch.arange(2))
    assert native.shape == reference.shape == (1, 2, hidden)
    assert native_cache.pointers is not None  # the native step ran (it builds the pointers)
    assert ref_cache.pointers is None
    assert float((native - reference).abs().max()) <= 1e-4 * float(reference.abs().max())
    for k_nat, k_ref in zip(native_cache.keys + native_cache.values, ref_cache.keys + ref_cache.values, strict=True):
        assert float((k_nat[:, :, :2] - k_ref[:, :, :2]).abs().max()) <= 1e-4 * (float(k_ref.abs().max()) + 1e-6)


def test_switch_off_gives_pytorch_kernels_and_the_cache_is_rebuilt(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from personalization_engine.tts.device import load_qwen

    def quantize() -> quant.QuantReport:
        qwen = load_qwen(tiny_checkpoint, "cpu", "float32")
        return quant.quantize_model(qwen, "int4", cache_dir=tmp_path, checkpoint_hash="b" * 64)

    assert quantize().kernels.startswith("native")
    with _native.disabled():
        assert _native.describe() == "torch (native kernels switched off)"
        report = quantize()
        assert report.cache == "rebuilt" and "kernels" in report.cache_problem and report.kernels == "torch"
        qwen = load_qwen(tiny_checkpoint, "cpu", "float32")
        quant.quantize_model(qwen, "int4")
        assert isinstance(qwen.model.talker.codec_head, Int4Linear)
    assert _native.available()


def test_bad_shape_is_refused_with_a_clear_error() -> None:
    module = NativeInt8Linear.from_float(torch.randn(16, 64))
    with pytest.raises(RuntimeError, match="K % 32"):
        _native.gemm_q8(module.qweight, module.scales, torch.randn(1, 40), torch.empty(1, 16))


def _steps(stack: Any, steps: int) -> torch.Tensor:
    """A native two-token prefill (both tokens in one call), then ``steps`` native decode steps
    of ``stack`` from a fixed start (hidden states stacked)."""
    capacity = min(steps + 3, int(stack.cos.shape[0]))
    hidden = int(stack.norm_weight.shape[0])
    gen = torch.Generator().manual_seed(5)
    cache, slots = stack.allocate(capacity), torch.arange(capacity)
    with torch.inference_mode():
        h = layers.forward(stack, torch.randn(1, 2, hidden, generator=gen), cache, torch.arange(2))
        outs = [h]
        h = h[:, -1:]
        for pos in range(2, capacity):
            position = torch.tensor([pos])
            h = layers.forward(stack, h, cache, position, layers.visible(position, slots))
            outs.append(h)
    return torch.cat(outs, dim=1)


@pytest.mark.parametrize("which", ["talker", "predictor"])
def test_the_decode_helper_changes_no_bit(quantized_tiny: Any, which: str) -> None:
    """Rows of a product are computed by the same function on either thread: the hidden states of
    many steps are identical with the helper off, on, and held up 0.2 ms inside each chunk (the
    caller takes such chunks back after 30 us and the helper's late rows are dropped)."""
    from personalization_engine.tts.engine import Decoder

    decoder = Decoder(quantized_tiny)
    stack = decoder.talker_stack if which == "talker" else decoder.predictor_stack
    assert stack.native is not None
    lib, before = _native._lib(), _native.decode_helper()
    try:
        _native.decode_helper(False)
        alone = _steps(stack, 40)
        assert _native.decode_helper(True)
        shared = _steps(stack, 40)
        helped, stolen = _native.helper_counts()
        deadline = time.monotonic() + 10  # the helper runs at idle priority: give it a chance
        while _native.helper_counts()[0] == helped and time.monotonic() < deadline:
            assert torch.equal(_steps(stack, 40), alone)
        assert _native.helper_counts()[0] > helped, "the helper thread never computed a chunk"
        lib.pe_pool_test_delay(200_000)
        while _native.helper_counts()[1] == stolen and time.monotonic() < deadline:
            assert torch.equal(_steps(stack, 40), alone)
        assert _native.helper_counts()[1] > stolen, "no chunk was ever taken back from the held-up helper"
        held_up = _steps(stack, 40)
    finally:
        lib.pe_pool_test_delay(0)
        _native.decode_helper(before)
    assert torch.equal(shared, alone) and torch.equal(held_up, alone)


@pytest.mark.parametrize("cls", [NativeInt4Linear, NativeInt8Linear, NativeBF16Linear])
def test_a_one_row_product_shared_with_the_helper_equals_the_many_row_product(cls: Any) -> None:
    """A head after a decode step (one activation row) runs through the pool (``pe_gemv_one``):
    bit-identical to the same row of the prefill product (``pe_gemm_*``), helper on or off."""
    torch.manual_seed(3)
    module = cls.from_float(torch.randn(1040, 256) * 0.02)  # 17 chunks of 64 rows: split
    x = torch.randn(3, 256)
    before = _native.decode_helper()
    try:
        with torch.inference_mode():
            rows = module(x)
            _native.decode_helper(True)
            shared = [module(x[i:i + 1]) for i in range(3)]
            _native.decode_helper(False)
            alone = [module(x[i:i + 1]) for i in range(3)]
    finally:
        _native.decode_helper(before)
    for i in range(3):
        assert torch.equal(shared[i][0], rows[i]) and torch.equal(alone[i][0], rows[i])


def test_a_bad_one_row_product_is_refused_with_a_clear_error() -> None:
    module = NativeInt4Linear.from_float(torch.randn(16, 64))
    with pytest.raises(RuntimeError, match="pe_gemv_one failed"):
        _native.gemv_one(4, module.qweight, module.scales, torch.randn(1, 40), torch.empty(1, 16))


def _snake_reference(x: torch.Tensor, alpha: torch.Tensor, inv_beta: torch.Tensor) -> torch.Tensor:
    """SnakeBeta as PyTorch computes it, in float64 (the value both float32 versions round)."""
    x64 = x.double()
    return x64 + inv_beta.double() * torch.sin(alpha.double() * x64) ** 2


def _snake_inputs(channels: int, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(5)
    # arguments from 1e-3 to 3e4 (past the SIMD sine's range of 8192), both signs
    x = torch.randn(2, channels, length) * torch.logspace(-3, 4.5, length)
    alpha = torch.exp(torch.randn(channels) * 0.5).reshape(1, channels, 1)
    inv_beta = (1.0 / (torch.exp(torch.randn(channels) * 0.5) + 1e-9)).reshape(1, channels, 1)
    return x, alpha, inv_beta


@pytest.mark.parametrize("channels, length", [(96, 257), (13, 40), (8, 1)])
def test_one_pass_snake_equals_the_four_passes(channels: int, length: int) -> None:
    x, alpha, inv_beta = _snake_inputs(channels, length)
    want = _snake_reference(x, alpha, inv_beta)
    bound = 2e-6 * (1 + want.abs())  # float32 rounding of values up to ~3e4
    x4 = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)  # time-major (B, C, 1, T)
    out4 = _native.snake(x4, alpha, inv_beta)
    assert out4 is not None and out4.is_contiguous(memory_format=torch.channels_last)
    assert bool(((out4.squeeze(2).double() - want).abs() <= bound).all())
    # layouts it does not take: None, and the caller (FusedSnake) runs PyTorch's ops
    assert _native.snake(x, alpha, inv_beta) is None  # channel-major (B, C, T)
    if length > 1:  # (B, C, 1, 1) is channels-last too
        assert _native.snake(x.unsqueeze(2), alpha, inv_beta) is None  # 4-D, not channels-last
    assert _native.snake(x4.double(), alpha, inv_beta) is None


def test_plain_c_snake_equals_the_simd_snake(plain_lib: Any) -> None:
    lib = plain_lib
    x, alpha, inv_beta = _snake_inputs(24, 100)
    rows = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    simd, out = _native.snake(rows, alpha, inv_beta), torch.empty_like(rows)
    assert simd is not None
    vp = ctypes.c_void_p
    lib.pe_snake_time_major(vp(rows.data_ptr()), vp(out.data_ptr()), vp(alpha.data_ptr()), vp(inv_beta.data_ptr()),
                            ctypes.c_long(2 * 100), ctypes.c_int(24))
    assert float((out - simd).abs().max()) <= 2e-6 * (1 + float(simd.abs().max()))
