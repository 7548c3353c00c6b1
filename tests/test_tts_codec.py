"""The CPU rewrite of the codec decoder (:mod:`personalization_engine.tts.codec`) on the tiny
real-architecture checkpoint: same audio as the unchanged qwen-tts decoder (float rounding),
idempotent, and streamed chunk joins still equal the one-shot decode."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
qwen_tts = pytest.importorskip("qwen_tts")

from personalization_engine.rates import SAMPLES_PER_FRAME  # noqa: E402
from personalization_engine.tts.codec import DecoderReport, FusedSnake, optimize_decoder  # noqa: E402
from personalization_engine.tts.stream import ChunkDecoder, decode_whole  # noqa: E402

#: Float32 rounding of the rewrite with direct convs (other summation order; measured 1e-5 on the
#: tiny decoder, 5e-5 on the full-size one, bench/results/codec_r19.json). The issue allows 1e-2.
TOL = 1e-4
#: The same with the k=7 convs as Winograd F(4, 7) (the default): up to 1.6e-4 here, where the
#: audio peaks near 0.2, and each chunk's tiling rounds differently (full size: 9.4e-5).
WINOGRAD_TOL = 1e-3


@pytest.fixture(scope="module")
def original_decoder(tiny_checkpoint: Path):
    """The tiny checkpoint's codec decoder as plain qwen-tts loads it (not rewritten)."""
    model = qwen_tts.Qwen3TTSModel.from_pretrained(str(tiny_checkpoint), device_map="cpu", dtype=torch.float32)
    decoder = model.model.speech_tokenizer.model.decoder.float().eval()
    assert not any(isinstance(m, FusedSnake) for m in decoder.modules())
    return decoder


@pytest.fixture(scope="module")
def optimized_decoder(original_decoder):
    decoder = copy.deepcopy(original_decoder)
    optimize_decoder(decoder, winograd=True)
    return decoder


@pytest.fixture(scope="module")
def direct_decoder(original_decoder):
    decoder = copy.deepcopy(original_decoder)
    optimize_decoder(decoder, winograd=False)
    return decoder


@pytest.fixture(params=["winograd", "direct"])
def rewritten(request, optimized_decoder, direct_decoder):
    """``(decoder, tolerance against the unchanged decoder, tolerance between two ways of
    decoding the same frames with it)``: the Winograd rewrite (the default without AVX-512), and the rewrite with
    direct convs, whose tight bounds check the carried streaming state to float rounding."""
    if request.param == "winograd":
        return optimized_decoder, WINOGRAD_TOL, WINOGRAD_TOL
    return direct_decoder, TOL, 1e-5


def _codes(frames: int, seed: int = 1, batch: int = 1):
    return torch.randint(0, 2048, (batch, 16, frames), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("frames, batch", [(1, 1), (7, 1), (60, 1), (13, 2)])
def test_optimized_decoder_gives_the_same_audio(original_decoder, rewritten, frames, batch):
    decoder, tol, _ = rewritten
    codes = _codes(frames, batch=batch)
    with torch.inference_mode():
        want = original_decoder(codes)
        got = decoder(codes)
    assert got.shape == want.shape == (batch, 1, frames * SAMPLES_PER_FRAME)
    assert float(want.abs().max()) > 1e-3  # the tiny decoder is not silent
    assert float((got - want).abs().max()) < tol


def test_official_chunked_decode_goes_through_the_rewrite(original_decoder, optimized_decoder):
    """qwen-tts' ``speech_tokenizer.decode`` calls ``chunked_decode`` -> ``forward``: a caller of
    qwen-tts' own decode (the adapter off the CPU fast path, which decodes with ``decode_whole``)
    gets the rewritten modules without any change of its own."""
    codes = _codes(40)
    with torch.inference_mode():
        want = original_decoder.chunked_decode(codes, chunk_size=16, left_context_size=8)
        got = optimized_decoder.chunked_decode(codes, chunk_size=16, left_context_size=8)
    assert float((got - want).abs().max()) < WINOGRAD_TOL


def test_optimize_is_idempotent(original_decoder):
    decoder = copy.deepcopy(original_decoder)
    first = optimize_decoder(decoder)
    n_modules = len(list(decoder.modules()))
    codes = _codes(9)
    with torch.inference_mode():
        before = decoder(codes)
        second = optimize_decoder(decoder)
        after = decoder(codes)
    assert isinstance(first, DecoderReport) and second is first
    assert len(list(decoder.modules())) == n_modules
    assert torch.equal(before, after)
    n_snakes = sum(type(m).__name__ == "SnakeBeta" for m in original_decoder.modules())
    assert first.snakes_fused == n_snakes > 0 and first.convs_rewritten > 0
    assert first.dtype == "float32" and first.device == "cpu"
    assert first.bf16_supported == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_streamed_chunks_join_to_the_one_shot_decode(original_decoder, rewritten):
    """ChunkDecoder on the rewritten decoder (both halves carry their state from chunk to chunk)
    joins to the unchanged decoder's one-shot audio."""
    decoder, tol, _ = rewritten
    codes = _codes(150)[0].t()  # (frames, groups)
    with torch.inference_mode():
        one_shot = original_decoder(codes.t().unsqueeze(0))[0, 0].numpy()
    dec = ChunkDecoder(decoder, SAMPLES_PER_FRAME, 100)
    parts, start = [], 0
    for n in [4] + [16] * 9 + [2]:
        parts.append(dec.decode(codes[start:start + n]))
        start += n
    joined = np.concatenate(parts)
    assert len(joined) == len(one_shot)
    assert float(np.abs(joined - one_shot).max()) < tol


@pytest.mark.parametrize("context_frames", [0, 30])
def test_a_whole_segment_decoded_in_pieces_equals_the_one_shot_decode(original_decoder, rewritten, context_frames):
    """decode_whole (the non-streamed path on CPU: 16-frame pieces with carried state, after
    the ICL reference frames) gives the unchanged decoder's one-shot audio after the context."""
    codes = _codes(context_frames + 41, seed=3)[0].t()  # (frames, groups)
    with torch.inference_mode():
        want = original_decoder(codes.t().unsqueeze(0))[0, 0].numpy()[context_frames * SAMPLES_PER_FRAME:]
    context = codes[:context_frames] if context_frames else None
    decoder, tol, _ = rewritten
    got = decode_whole(decoder, codes[context_frames:], context, SAMPLES_PER_FRAME)
    assert got is not None and got.dtype == np.float32 and len(got) == len(want) == 41 * SAMPLES_PER_FRAME
    assert float(np.abs(got - want).max()) < tol
    assert decode_whole(original_decoder, codes, None, SAMPLES_PER_FRAME) is None  # not optimized: qwen-tts decodes


def test_fused_snake_equals_snake_beta(original_decoder):
    """FusedSnake precomputes exp(alpha) and 1/(exp(beta)+eps): same function, also on the
    channels-last 4-D layout the rewritten stack uses."""
    snake = copy.deepcopy(next(m for m in original_decoder.modules() if type(m).__name__ == "SnakeBeta"))
    with torch.no_grad():  # non-trivial parameters, unlike the fresh zeros
        snake.alpha.copy_(torch.linspace(-1, 1, snake.alpha.numel()))
        snake.beta.copy_(torch.linspace(0.5, -0.5, snake.beta.numel()))
    fused = FusedSnake.from_snake(snake)
    x = torch.randn(2, snake.alpha.numel(), 50, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        want = snake(x)
        assert float((fused(x) - want).abs().max()) < 1e-5
        assert float((fused(x.unsqueeze(2)).squeeze(2) - want).abs().max()) < 1e-5


def test_back_half_streams_with_carried_state(rewritten):
    """BackHalfStream over chunks equals the one-shot back half: every layer is causal, so the
    carried conv inputs and transposed-conv overlaps replace re-decoded context."""
    from personalization_engine.tts.codec import supports_streaming
    from personalization_engine.tts.codec_stream import BackHalfStream

    decoder, _, join_tol = rewritten
    assert supports_streaming(decoder)
    hidden = torch.randn(1, decoder.config.latent_dim, 40, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        whole = BackHalfStream(decoder)(hidden)
        stream = BackHalfStream(decoder)
        parts = [stream(hidden[..., a:b]) for a, b in ((0, 4), (4, 20), (20, 21), (21, 40))]
    joined = torch.cat(parts, dim=-1)
    assert joined.shape == whole.shape == (1, 1, 40 * SAMPLES_PER_FRAME)
    assert float((joined - whole).abs().max()) < join_tol


def test_unoptimized_decoder_does_not_stream_with_state(original_decoder):
    from personalization_engine.tts.codec import supports_streaming

    assert not supports_streaming(original_decoder)
    assert ChunkDecoder(original_decoder, SAMPLES_PER_FRAME, 100)._stream is None


def test_big_convs_run_as_one_gemm_per_tap(monkeypatch, original_decoder):
    """Convs with TAPS_MIN_WEIGHTS weights or more run as K accumulated GEMMs on time-major rows
    (oneDNN reordered the full-size first conv's 44 MB weight on every call: 51 ms per 4-frame
    chunk, 10 ms as GEMMs). With the threshold at 0 every conv takes that path: same audio, in
    a batch of two and streamed chunk by chunk."""
    from personalization_engine.tts import codec
    from personalization_engine.tts.codec import ChannelsLastConv

    monkeypatch.setattr(codec, "TAPS_MIN_WEIGHTS", 0)
    decoder = copy.deepcopy(original_decoder)
    optimize_decoder(decoder)
    convs = [m for m in decoder.modules() if isinstance(m, ChannelsLastConv) and not m.transposed]
    assert convs and all(m.taps for m in convs)
    codes = _codes(13, batch=2)
    with torch.inference_mode():
        want = original_decoder(codes)
        got = decoder(codes)
    assert float((got - want).abs().max()) < TOL
    dec = ChunkDecoder(decoder, SAMPLES_PER_FRAME, 100)
    joined = np.concatenate([dec.decode(codes[0, :, a:b].t()) for a, b in ((0, 1), (1, 5), (5, 13))])
    assert float(np.abs(joined - want[0, 0].numpy()).max()) < TOL


@pytest.mark.parametrize("tiles_per_pass", [512, 5], ids=["one-pass", "passes"])
@pytest.mark.parametrize("dilation", [1, 3, 9])
@pytest.mark.parametrize("steps", [1, 35, 36, 37, 200])
def test_winograd_conv_is_the_correlation(monkeypatch, dilation, steps, tiles_per_pass):
    """WinogradConv (F(4, 7)) against the float64 direct correlation, with the last tile block
    partial or not (steps below, at and above a multiple of 4 x dilation), bias, and the tiles
    in one pass or in passes of a few blocks (TILES_PER_PASS)."""
    from personalization_engine.tts import winograd
    from personalization_engine.tts.winograd import WinogradConv

    monkeypatch.setattr(winograd, "TILES_PER_PASS", tiles_per_pass)

    gen = torch.Generator().manual_seed(dilation * 1000 + steps)
    cin, cout = 24, 40
    weight = torch.randn(cout, cin, 7, generator=gen) / (cin * 7) ** 0.5
    bias = torch.randn(cout, generator=gen)
    rows = torch.randn(steps + 6 * dilation, cin, generator=gen)
    want = torch.nn.functional.conv1d(rows.double().t()[None], weight.double(), bias.double(), dilation=dilation)[0].t()
    with torch.inference_mode():
        got = WinogradConv(weight, bias, dilation)(rows[None])[0]
    assert got.shape == (steps, cout) and got.dtype == torch.float32
    assert float((got.double() - want).abs().max()) < 2e-5 * float(want.abs().max())  # measured ~3e-6


def test_toom_cook_transforms_compute_the_correlation_exactly():
    from personalization_engine.tts.winograd import POINTS, toom_cook

    at, g, bt = toom_cook(4, 7)
    assert at.shape == (4, 10) and g.shape == (10, 7) and bt.shape == (10, 10)
    rng = np.random.default_rng(0)
    filt, data = rng.standard_normal(7), rng.standard_normal(10)
    want = [float(filt @ data[i:i + 7]) for i in range(4)]
    np.testing.assert_allclose(at @ ((g @ filt) * (bt @ data)), want, atol=1e-12)
    with pytest.raises(ValueError, match="distinct"):
        toom_cook(4, 7, POINTS[:-1] + (0.0,))


def test_winograd_is_chosen_by_the_cpu_and_can_be_forced(original_decoder, optimized_decoder, direct_decoder):
    """By default the residual units' k=7 convs run as Winograd on CPUs without AVX-512 and as
    direct convs with it; ``winograd=True/False`` forces either (A/B benchmarks); asking an
    optimized decoder for the other choice fails."""
    from personalization_engine.tts.codec import ChannelsLastConv, winograd_pays

    avx512 = str(torch.backends.cpu.get_cpu_capability()).startswith(("AVX512", "AMX"))
    assert winograd_pays() is not avx512
    default = copy.deepcopy(original_decoder)
    assert (optimize_decoder(default).winograd_convs > 0) is winograd_pays()
    assert optimize_decoder(optimized_decoder, winograd=True).winograd_convs > 0
    assert optimize_decoder(direct_decoder, winograd=False).winograd_convs == 0
    assert not any(isinstance(m, ChannelsLastConv) and m.winograd is not None for m in direct_decoder.modules())
    with pytest.raises(ValueError, match="already optimized"):
        optimize_decoder(direct_decoder, winograd=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_activation_memory_is_reused_without_page_faults():
    """``keep_freed_memory`` (applied by load_model on CPU): a freed 12 MB block (a 16-frame
    chunk's activations at 96 channels, 24 kHz) is reused, not unmapped and faulted in again."""
    import resource

    from personalization_engine.tts.runtime import keep_freed_memory

    def faults_of_blocks() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            block = torch.ones(3 * 2**20)  # 12 MB, every page written
            del block
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    try:
        assert keep_freed_memory(False)
        fresh = faults_of_blocks()
        assert keep_freed_memory(True)
        faults_of_blocks()  # the heap grows once
        kept = faults_of_blocks()
    finally:
        keep_freed_memory(True)
    assert kept < max(200, fresh // 10), (fresh, kept)
