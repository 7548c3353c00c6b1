"""Winograd (Toom-Cook) convolution for the codec decoder's k=7 convolutions on CPU.

The decoder's residual units spend about three quarters of its 61 GFLOP per second of audio in
dilated k=7 convolutions (channels x channels, dilation 1, 3, 9). Those run near this CPU's
float32 peak already, so the only lever left on them is fewer multiplications. Winograd's
minimal filtering F(m, r) computes m outputs of an r-tap correlation from m + r - 1 products
of transformed inputs and transformed weights: for F(4, 7), 10 channel GEMMs per 4 outputs
instead of 28, i.e. 0.36x the multiply-adds, plus cheap input and output transforms.

A dilated conv is the same correlation on every ``dilation``-th sample, so a tile is 4 outputs
``dilation`` apart and ``dilation`` tiles interleave (one per phase), read through a strided
view of the channels-last (time-major) input. Tiles start at each call's first output, so a
streamed decode rounds a little differently from one call over the same frames.

The transforms come from Toom-Cook evaluation at the points :data:`POINTS` (and infinity):
with ``Vx``, ``Vh`` and ``Vn`` the evaluation matrices of polynomials of degree m - 1, r - 1
and m + r - 2, convolution is ``Vn^-1 ((Vh h) * (Vx x))``, and its transpose, correlation,
is ``y = Vx^T [(Vh g) * (Vn^-T d)]``. With the points 0, +-1, +-2, +-1/2, +-3/2 one conv's float32
error is about 1.2e-5 of its output's scale against float64, 8x a direct conv's (of five point
sets tried, the smallest); through the whole full-size decoder the audio differs from qwen-tts'
by 9.4e-5 instead of 5e-5 (peak 0.47), far below the 1e-2 the decoder is allowed
(``bench/results/codec.md``, ``tests/test_tts_codec.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Outputs per tile and the finite evaluation points of F(4, 7) (infinity is the tenth).
TILE = 4
POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.5, -1.5)
#: Kernel size this module is used for (the residual units' convolutions).
KERNEL = 7
#: Products per tile: TILE + KERNEL - 1.
N_POINTS = TILE + KERNEL - 1
#: Tiles transformed and multiplied per pass: bounds the transformed inputs and products (10
#: rows per tile) to a few MB, so they stay in cache. One pass over a 4 s clip's last stage
#: (96 channels, 96,000 samples) was 1.9x slower than passes of 512 tiles (2 threads).
TILES_PER_PASS = 512


def toom_cook(m: int, r: int, points: tuple[float, ...] = POINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(AT, G, BT)`` of F(m, r) in float64: ``y = AT @ ((G @ g) * (BT @ d))`` is the
    correlation ``y[i] = sum_k g[k] d[i + k]`` of an r-tap filter ``g`` with m + r - 1 inputs ``d``."""
    n = m + r - 1
    if len(points) != n - 1 or len(set(points)) != n - 1:
        raise ValueError(f"F({m}, {r}) needs {n - 1} distinct finite points, got {points}")

    def evaluation(cols: int) -> np.ndarray:
        v = np.zeros((n, cols))
        for j, a in enumerate(points):
            v[j] = [a ** i for i in range(cols)]
        v[n - 1, cols - 1] = 1.0  # the point at infinity: the leading coefficient
        return v

    return evaluation(m).T, evaluation(r), np.linalg.inv(evaluation(n)).T


def _torch_nn() -> Any:
    import torch

    return torch.nn


class WinogradConv(_torch_nn().Module):  # type: ignore[misc]
    """A stride-1, dilated, K=7 correlation ``y[t] = b + sum_k W_k x[t + k * dilation]`` on
    time-major rows, computed with F(:data:`TILE`, 7).

    ``weight`` is a conv weight (C_out, C_in, K); only its transform is kept (10 x C_in x C_out).
    """

    def __init__(self, weight: Any, bias: Any, dilation: int) -> None:
        super().__init__()
        import torch

        cout, cin, k = weight.shape
        if k != KERNEL:
            raise ValueError(f"Winograd F({TILE}, {KERNEL}) needs kernel {KERNEL}, got {k}")
        at, g, bt = toom_cook(TILE, KERNEL)
        # (K, C_out * C_in) -> (10, C_in, C_out): one small matrix product in the weight's dtype
        # (float64 copies of the 768-channel weights cost 80 MB of transient memory per conv).
        taps = weight.detach().permute(2, 0, 1).reshape(k, cout * cin)
        transformed = torch.from_numpy(g).to(weight.dtype) @ taps
        self.register_buffer("weight", transformed.view(-1, cout, cin).transpose(1, 2).contiguous())
        self.register_buffer("at", torch.from_numpy(at).to(weight.dtype).contiguous())
        self.register_buffer("bt", torch.from_numpy(bt).to(weight.dtype).contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.dilation = dilation
        self.cin, self.cout = cin, cout

    def forward(self, rows: Any) -> Any:
        """Time-major rows (B, T + 6 * dilation, C_in) -> outputs (B, T, C_out)."""
        import torch

        rows = rows.contiguous()  # the tiles are strided views of each batch item's rows
        b, t_in, _ = rows.shape
        out = torch.empty((b, t_in - self.dilation * (KERNEL - 1), self.cout), dtype=rows.dtype, device=rows.device)
        for i in range(b):
            self._one(rows[i], out[i])
        return out

    def _one(self, rows: Any, out: Any) -> None:
        """One batch item: contiguous rows (T + 6 * dilation, C_in) into ``out`` (T, C_out)."""
        import torch

        t = out.shape[0]
        span = TILE * self.dilation
        blocks = t // span
        per_pass = max(1, TILES_PER_PASS // self.dilation)  # a block holds `dilation` tiles
        for a in range(0, blocks, per_pass):
            b = min(blocks, a + per_pass)
            self._tiles(rows[a * span:], b - a, out[a * span:b * span])
        rest = t - blocks * span
        if rest:  # the last partial tile block, on a zero-extended copy of its inputs
            tail = rows.new_zeros((span + self.dilation * (KERNEL - 1), self.cin))
            tail[:rows.shape[0] - blocks * span].copy_(rows[blocks * span:])
            last = torch.empty((span, self.cout), dtype=rows.dtype, device=rows.device)
            self._tiles(tail, 1, last)
            out[blocks * span:].copy_(last[:rest])

    def _tiles(self, rows: Any, blocks: int, out: Any) -> None:
        """``blocks`` full tile blocks (TILE x dilation outputs each) of ``rows`` into ``out``."""
        import torch

        n, d, cin, cout = N_POINTS, self.dilation, self.cin, self.cout
        # tiles[b, j, p, c] = rows[b * TILE * d + j * d + p, c]: input j of phase p's tile in block b
        tiles = rows.as_strided((blocks, n, d, cin), (TILE * d * cin, d * cin, cin, 1))
        u = torch.matmul(self.bt, tiles.permute(1, 0, 2, 3).reshape(n, blocks * d * cin))
        prod = torch.bmm(u.view(n, blocks * d, cin), self.weight)  # (n, blocks * d, C_out)
        y = torch.mm(self.at, prod.view(n, blocks * d * cout)).view(TILE, blocks, d, cout)
        dest = out.view(blocks, TILE, d, cout)
        if self.bias is not None:
            torch.add(y.permute(1, 0, 2, 3), self.bias, out=dest)
        else:
            dest.copy_(y.permute(1, 0, 2, 3))
