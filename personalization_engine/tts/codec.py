"""A faster 12 Hz codec decoder on CPU: qwen-tts' function to float rounding, in fewer FLOPs and passes.

``Qwen3TTSTokenizerV2Decoder`` turns codec frames into 24 kHz audio. Measured on the full-size
decoder (random variance-preserving weights, ``bench/bench_codec.py``), 61 GFLOP per second of
audio, 96 % of it in the sample-rate half: four upsampling blocks, each a transposed conv and
three residual units (SnakeBeta, a dilated k=7 conv, SnakeBeta, a 1x1 conv). The profile of the
unchanged module: convolutions about 60 %, SnakeBeta (five tensor passes: mul, sin, pow, mul,
add, with ``exp`` of its parameters on every call) about 25 %, padding and ``contiguous``
copies about 12 %.

:func:`optimize_decoder` rewrites, in place and once (idempotent), the modules of that half:

* SnakeBeta -> :class:`FusedSnake`: ``exp(alpha)`` and ``1 / (exp(beta) + eps)`` computed once at
  load, and one pass of our C kernel (``_snake.c``, a vectorised sine) where the native kernels
  are built; otherwise torch's mul, sin, in-place square and ``addcmul`` (five passes before).
* the quantizer's codebooks -> :class:`FrozenCodebook`: the table divided once, not per call.
* padding of carried or zero left context written straight into channels-last memory (one copy).
* causal convs, transposed convs -> conv2d over a (batch, channels, 1, time) view in
  channels-last memory, which oneDNN runs without reordering activations between layers
  (measured 1.15-1.2x per conv on this AVX2 CPU), and without the ``contiguous`` copies.
* the residual units' k=7 convs -> Winograd F(4, 7) (:mod:`.winograd`) on CPUs without AVX-512
  (:func:`winograd_pays`): 0.36x the multiply-adds of a direct conv, for float32 rounding about
  twice a direct conv's (the decoder's output differs from qwen-tts' by 9e-5 instead of 5e-5 at a
  peak of 0.47). The decoder as a whole: 1.35-1.4x faster on one thread of an AVX2 Zen 3, but
  1.05-1.15x slower than oneDNN's direct convs on an AVX-512 Zen 5 (``bench/results/codec.md``).

* streaming (:class:`.codec_stream.BackHalfStream`, used by ``ChunkDecoder``): every layer of
  that half is causal, so each chunk carries its convs' last inputs instead of re-decoding 8 frames of
  context (which cost +50 % on 16-frame chunks, +200 % on the first 4-frame chunk).

Speed (``bench/bench_codec.py``, ``bench/results/codec.md``): the direct decoder needs 61 GFLOP
per second of audio, about 75 % of it in the k=7 convs. On a 2-core AVX-512 Zen 5 it takes
0.23-0.24 s of compute per second of audio streamed on two threads (direct convs); on a 2-core
AVX2 Zen 3 0.37-0.38 (Winograd), near that core's float32 peak for these kernels.

The arithmetic is float32 (differences are float rounding; tested). bf16 convs, where oneDNN has
native bf16 (AVX512-BF16, AMX), were 1.1-1.4x faster on the Zen 5 but moved the output of the
random-weight decoder by up to 2.4e-2 (the issue allows 1e-2), so the decoder stays float32;
:attr:`DecoderReport.bf16_supported` says what the machine offers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .winograd import KERNEL, WinogradConv

_LOGGER = logging.getLogger(__name__)

#: Marker attribute set on an optimized decoder (makes optimize_decoder idempotent).
_MARK = "_pe_codec_report"
#: Conv weights from this many elements up run as one GEMM per tap (see ChannelsLastConv).
TAPS_MIN_WEIGHTS = 8 * 2**20
#: k=7 convs with at least this many output channels run as Winograd F(4, 7) (:mod:`.winograd`):
#: the residual units' convs (96-768 channels); not the last conv (96 -> 1), a GEMM of width 1.
WINOGRAD_MIN_CHANNELS = 16


@dataclass(frozen=True)
class DecoderReport:
    """What :func:`optimize_decoder` changed in a codec decoder."""

    snakes_fused: int
    """SnakeBeta activations replaced by :class:`FusedSnake`."""
    convs_rewritten: int
    """Causal and transposed convolutions running as channels-last conv2d."""
    winograd_convs: int
    """Of those, the k=7 convs computed with Winograd F(4, 7) (:mod:`.winograd`)."""
    dtype: str
    """Compute dtype of the decoder (float32 on CPUs without native bf16)."""
    bf16_supported: bool
    """Whether oneDNN has native bf16 on this CPU (AVX512-BF16 / AMX)."""
    device: str
    """Device the decoder runs on; the rewrites apply on CPU only."""

    def to_dict(self) -> dict[str, Any]:
        return {"snakes_fused": self.snakes_fused, "convs_rewritten": self.convs_rewritten,
                "winograd_convs": self.winograd_convs, "dtype": self.dtype,
                "bf16_supported": self.bf16_supported, "device": self.device}


def bf16_supported() -> bool:
    """True when oneDNN runs bf16 natively on this CPU (False where torch cannot say)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def winograd_pays() -> bool:
    """Whether the k=7 convs run faster as Winograd F(4, 7) than as oneDNN's direct convs here:
    on CPUs without AVX-512. Measured (``bench/bench_codec.py``, one process, alternating): an
    AVX2 Zen 3, Winograd 1.35-1.4x faster on one thread; an AVX-512 Zen 5, direct 1.05-1.15x
    faster (oneDNN's AVX-512 convs gain more than the Winograd GEMMs). Decided by the CPU, not by
    timing at load, so one machine always gets the same arithmetic."""
    import torch

    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return True
    return not capability.startswith(("AVX512", "AMX"))


def optimize_decoder(decoder: Any, *, winograd: bool | None = None) -> DecoderReport:
    """Rewrite the sample-rate half of a 12 Hz codec decoder for CPU speed, in place.

    ``decoder`` is ``speech_tokenizer.model.decoder`` (``Qwen3TTSTokenizerV2Decoder``). Call it
    once at load; calling it again returns the first report and changes nothing. On a non-CPU
    device nothing is rewritten (the report says so). ``winograd``: the k=7 convs as Winograd
    (True) or direct convolutions (False); None chooses by the CPU (:func:`winograd_pays`).
    Asking an optimized decoder for the other choice raises ValueError (the rewrite keeps only
    the weights it needs).
    """
    import torch

    if winograd is None:
        winograd = winograd_pays()
    done = getattr(decoder, _MARK, None)
    if isinstance(done, DecoderReport):
        if done.device == "cpu" and done.convs_rewritten and (done.winograd_convs > 0) != winograd:
            raise ValueError(f"codec decoder already optimized with winograd={not winograd}; "
                             "optimize a fresh copy of the decoder for the other choice")
        return done
    param = next(decoder.parameters())
    device, dtype = param.device.type, str(param.dtype).replace("torch.", "")
    snakes = convs = 0
    if device == "cpu":
        with torch.no_grad():
            snakes = _swap(decoder, _is_snake, FusedSnake.from_snake)
            convs = _swap(decoder.decoder, _is_causal_conv,
                          lambda m: ChannelsLastConv.from_causal(m, winograd=winograd))
            convs += _swap(decoder.decoder, _is_trans_conv, ChannelsLastConv.from_trans)
            convs += _swap(decoder.upsample, _is_frame_upsample, FrameUpsample.from_trans)
            _swap(decoder.quantizer, _is_codebook, FrozenCodebook.from_codebook)
            last = decoder.decoder[-1]
            if isinstance(last, ChannelsLastConv):
                last.out_3d = True  # the decoder's output stays (B, 1, T)
    wino = sum(1 for m in decoder.modules() if isinstance(m, ChannelsLastConv) and m.winograd is not None)
    report = DecoderReport(snakes, convs, wino, dtype, bf16_supported(), device)
    setattr(decoder, _MARK, report)
    _LOGGER.info("codec decoder optimized: %s", report)
    return report


def _swap(root: Any, match: Any, make: Any) -> int:
    """Replace every submodule of ``root`` for which ``match(module)`` holds by ``make(module)``."""
    n = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if match(child):
                setattr(parent, name, make(child)) if not name.isdigit() else parent.__setitem__(int(name), make(child))
                n += 1
    return n


def _is_snake(m: Any) -> bool:
    return type(m).__name__ == "SnakeBeta"


def _is_codebook(m: Any) -> bool:
    return type(m).__name__ == "EuclideanCodebook"


def _is_causal_conv(m: Any) -> bool:
    return type(m).__name__ == "Qwen3TTSTokenizerV2CausalConvNet" and m.conv.stride[0] == 1 and m.conv.groups == 1


def _is_trans_conv(m: Any) -> bool:
    return type(m).__name__ == "Qwen3TTSTokenizerV2CausalTransConvNet" and m.left_pad == 0


def _is_frame_upsample(m: Any) -> bool:
    return type(m).__name__ == "Qwen3TTSTokenizerV2CausalTransConvNet" and m.right_pad == 0


def _torch_nn() -> Any:
    import torch

    return torch.nn


class FrozenCodebook(_torch_nn().Module):  # type: ignore[misc]
    """qwen-tts' ``EuclideanCodebook`` for decoding only: its table ``embedding_sum / usage``
    divided once at load, not on every call (16 tables of 2048 x 256: ~3 ms per streamed chunk)."""

    def __init__(self, embedding: Any) -> None:
        super().__init__()
        self.register_buffer("embedding", embedding)

    @classmethod
    def from_codebook(cls, book: Any) -> FrozenCodebook:
        usage = book.cluster_usage.detach().clamp(min=book.epsilon)
        return cls(book.embedding_sum.detach() / usage[:, None])

    def decode(self, codes: Any) -> Any:
        import torch.nn.functional as F

        return F.embedding(codes, self.embedding)


class FusedSnake(_torch_nn().Module):  # type: ignore[misc]
    """SnakeBeta ``x + 1/(exp(beta) + eps) * sin(exp(alpha) * x)^2`` with its per-channel
    factors computed once; works on (B, C, T) and on channels-last (B, C, 1, T) inputs."""

    def __init__(self, alpha: Any, inv_beta: Any) -> None:
        super().__init__()
        self.register_buffer("alpha", alpha)
        self.register_buffer("inv_beta", inv_beta)

    @classmethod
    def from_snake(cls, snake: Any) -> FusedSnake:
        import torch

        alpha = torch.exp(snake.alpha.detach()).reshape(1, -1, 1)
        inv_beta = 1.0 / (torch.exp(snake.beta.detach()) + snake.no_div_by_zero)
        return cls(alpha, inv_beta.reshape(1, -1, 1))

    def forward(self, x: Any) -> Any:
        import torch

        if not torch.is_grad_enabled():  # one pass of our C kernel where it can run (_snake.c)
            from . import _native

            out = _native.snake(x, self.alpha, self.inv_beta)
            if out is not None:
                return out
        alpha, inv_beta = self.alpha, self.inv_beta
        if x.dim() == 4:
            alpha, inv_beta = alpha.unsqueeze(-1), inv_beta.unsqueeze(-1)
        s = torch.sin(x * alpha)
        s = s.square_() if not torch.is_grad_enabled() else s.square()
        return torch.addcmul(x, s, inv_beta)


class ChannelsLastConv(_torch_nn().Module):  # type: ignore[misc]
    """A causal (left-padded) conv or a right-trimmed transposed conv as conv2d on channels-last
    (B, C, 1, T) tensors; (B, C, T) inputs are converted on the way in and kept 4-D on the way
    out (:func:`to_channels_last` / :func:`from_channels_last` at the ends of the stack)."""

    def __init__(self, weight: Any, bias: Any, *, transposed: bool, stride: int, dilation: int,
                 left_pad: int, right_trim: int, winograd: bool) -> None:
        super().__init__()
        import torch

        self.winograd: WinogradConv | None = None

        if transposed:  # (in, out, K) -> (in, K * out): one GEMM, then overlap-add (see forward)
            cin, cout, k = weight.shape
            if k != 2 * stride or right_trim != k - stride:
                raise ValueError(f"transposed conv with kernel {k}, stride {stride}, trim {right_trim}: "
                                 "only kernel = 2 x stride, trimmed by stride, is supported")
            self.register_buffer("weight", weight.permute(0, 2, 1).reshape(cin, k * cout).contiguous())
            self.taps = False
        else:
            # A huge weight on few time steps (the first conv, 1024 -> 1536 at 4x the frame rate):
            # oneDNN reorders the whole weight on every call (51 ms for a 4-frame chunk); as one
            # GEMM per tap on time-major rows it costs 10 ms (bench/results/codec_kernels.txt).
            self.taps = weight.numel() >= TAPS_MIN_WEIGHTS
            if self.taps:  # (out, in, K) -> (K, in, out)
                self.register_buffer("weight", weight.permute(2, 1, 0).contiguous())
            elif winograd and weight.shape[2] == KERNEL and weight.shape[0] >= WINOGRAD_MIN_CHANNELS:
                self.winograd = WinogradConv(weight, bias, dilation)  # keeps only the transformed weight
                self.register_buffer("weight", None)
            else:
                self.register_buffer("weight", weight.unsqueeze(2).contiguous(memory_format=torch.channels_last))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.transposed, self.stride, self.dilation = transposed, stride, dilation
        self.left_pad, self.right_trim = left_pad, right_trim
        self.out_3d = False

    @classmethod
    def from_causal(cls, m: Any, *, winograd: bool) -> ChannelsLastConv:
        return cls(m.conv.weight.detach(), m.conv.bias, transposed=False, stride=1,
                   dilation=int(m.conv.dilation[0]), left_pad=int(m.padding), right_trim=0, winograd=winograd)

    @classmethod
    def from_trans(cls, m: Any) -> ChannelsLastConv:
        return cls(m.conv.weight.detach(), m.conv.bias, transposed=True, stride=int(m.conv.stride[0]),
                   dilation=1, left_pad=0, right_trim=int(m.right_pad), winograd=False)

    def forward(self, x: Any) -> Any:
        x = to_channels_last(x)
        if self.transposed:
            return self._transposed(x)
        if self.left_pad:
            x = left_padded(x, self.left_pad)
        return self.conv_padded(x)

    def conv_padded(self, x: Any) -> Any:
        """The convolution proper on channels-last ``x`` that already holds its left context."""
        import torch.nn.functional as F

        if self.winograd is not None:
            y = time_major_to_channels(self.winograd(time_major_rows(x)).unsqueeze(2))
        elif self.taps:
            y = self._by_taps(x)
        else:
            y = F.conv2d(x, self.weight, self.bias, dilation=(1, self.dilation))
        return from_channels_last(y) if self.out_3d else y

    def _by_taps(self, x: Any) -> Any:
        """``y[t] = b + sum_k W_k x[t + k * dilation]``: channels-last memory is time-major, so
        every tap's input is a contiguous row slice and the sum is K accumulated GEMMs."""
        import torch

        b, _, _, t_in = x.shape
        k, _, cout = self.weight.shape
        t = t_in - self.dilation * (k - 1)
        rows = time_major_rows(x)
        y = torch.empty((b, t, cout), dtype=x.dtype, device=x.device)
        for i in range(b):
            out = y[i]
            if self.bias is not None:
                out.copy_(self.bias.expand(t, cout))
            else:
                out.zero_()
            for tap in range(k):
                out.addmm_(rows[i, tap * self.dilation:tap * self.dilation + t], self.weight[tap])
        return time_major_to_channels(y.view(b, t, 1, cout))

    def _transposed(self, x: Any) -> Any:
        """Transposed conv, kernel 2u, stride u, last u outputs trimmed (qwen-tts' causal one).

        Input frame t adds ``W_k^T x_t`` to output ``t*u + k`` (k < 2u), so output ``t*u + j``
        (j < u) is ``Z[t, j] + Z[t-1, u + j]`` with ``Z = x^T W`` one GEMM over time-major
        (channels-last) memory; the trimmed tail is never computed. 1.3-1.6x faster here than
        oneDNN's transposed conv (bench/results/codec_micro.txt).
        """
        y, _ = self.transposed_gemm(x)
        return time_major_to_channels(y)

    def transposed_gemm(self, x: Any) -> tuple[Any, Any]:
        """The GEMM of :meth:`_transposed` on channels-last ``x``: ``(y, z)`` with ``y`` the
        outputs (B, T, u, C_out) before the previous input frame's tail is added to ``y[:, 0]``,
        and ``z`` (B, T, 2, u, C_out), whose ``z[:, -1, 1]`` is this input's tail for what follows."""
        import torch

        b, cin, _, t = x.shape
        u = self.stride
        cout = self.weight.shape[1] // (2 * u)
        z = torch.mm(time_major_rows(x).reshape(b * t, cin), self.weight).view(b, t, 2, u, cout)
        y = z[:, :, 0] + self.bias if self.bias is not None else z[:, :, 0].clone()
        y[:, 1:] += z[:, :-1, 1]
        return y, z


class FrameUpsample(_torch_nn().Module):  # type: ignore[misc]
    """A transposed conv with kernel == stride (the upsampling stage's 2x): output ``t*u + j``
    is ``W_j^T x_t + b``, so it is one GEMM on (B, C, T) -> (B, C, T*u). oneDNN's transposed conv
    took 12 ms for a 4-frame chunk (1024 channels), the GEMM about 1 ms."""

    def __init__(self, weight: Any, bias: Any) -> None:
        super().__init__()
        cin, cout, u = weight.shape
        self.register_buffer("weight", weight.permute(0, 2, 1).reshape(cin, u * cout).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.stride = int(u)

    @classmethod
    def from_trans(cls, m: Any) -> FrameUpsample:
        return cls(m.conv.weight.detach(), m.conv.bias)

    def forward(self, x: Any) -> Any:
        import torch

        b, cin, t = x.shape
        u = self.stride
        cout = self.weight.shape[1] // u
        y = torch.mm(x.transpose(1, 2).reshape(b * t, cin), self.weight).view(b, t * u, cout)
        if self.bias is not None:
            y = y + self.bias
        return y.transpose(1, 2).contiguous()


def time_major_rows(x: Any) -> Any:
    """Channels-last (B, C, 1, T) -> its memory as time-major rows (B, T, C) (a view)."""
    b, c, _, t = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, t, c)


def time_major_to_channels(y: Any) -> Any:
    """(B, T, u, C) outputs of a transposed-conv GEMM -> (B, C, 1, T*u), channels-last memory."""
    b, t, u, cout = y.shape
    return y.view(b, 1, t * u, cout).permute(0, 3, 1, 2)


def to_channels_last(x: Any) -> Any:
    """(B, C, T) -> (B, C, 1, T) in channels-last memory; 4-D inputs pass through."""
    import torch

    if x.dim() == 3:
        return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    return x


def from_channels_last(x: Any) -> Any:
    """(B, C, 1, T) -> contiguous (B, C, T); 3-D inputs pass through."""
    return x.squeeze(2).contiguous() if x.dim() == 4 else x


def left_padded(x: Any, n: int, prev: Any = None) -> Any:
    """``x`` with ``n`` time steps in front (``prev``'s, or zeros), in one copy of ``x`` (``F.pad``
    then ``contiguous`` made two): channels-last (B, C, 1, T) stays channels-last, (B, C, T)
    comes out contiguous."""
    import torch

    layout = torch.channels_last if x.dim() == 4 else torch.contiguous_format
    full = torch.empty((*x.shape[:-1], n + x.shape[-1]), dtype=x.dtype, device=x.device, memory_format=layout)
    if prev is None:
        full[..., :n].zero_()
    else:
        full[..., :n].copy_(prev)
    full[..., n:].copy_(x)
    return full


def is_optimized(decoder: Any) -> bool:
    """Whether :func:`optimize_decoder` rewrote ``decoder`` (its modules then differ from the
    checkpoint's: a rewritten decoder cannot be saved in the hub layout)."""
    return isinstance(getattr(decoder, _MARK, None), DecoderReport)


def supports_streaming(decoder: Any) -> bool:
    """Whether :class:`.codec_stream.BackHalfStream` can run ``decoder`` (optimized on CPU)."""
    report = getattr(decoder, _MARK, None)
    return isinstance(report, DecoderReport) and report.convs_rewritten > 0
