# ruff: noqa  (a measuring script: loop-bound lambdas are called inside their iteration)
"""Per-kernel throughput of the codec decoder's convolutions on one thread (GFLOP/s of thread CPU time):
oneDNN conv (NCW and channels-last), 7 shifted GEMMs, 1x1 as GEMM, transposed conv vs GEMM + overlap-add.

    .venv/bin/python bench/bench_codec_kernels.py
"""

import time

import torch
import torch.nn.functional as F

torch.manual_seed(0); torch.set_num_threads(1)
def cpu_t(fn, reps=3):
    fn(); best=1e9
    for _ in range(reps):
        t0=time.thread_time(); fn(); best=min(best, time.thread_time()-t0)
    return best
with torch.inference_mode():
  for C, T, d in ((384, 8000, 1), (192, 24000, 9), (768, 2000, 3)):
    x = torch.randn(1, C, T); w = torch.randn(C, C, 7)/ (7*C)**.5; b=torch.zeros(C)
    fl = 2*C*C*7*T
    xp = F.pad(x, (6*d, 0))
    x2 = xp.unsqueeze(2).contiguous(memory_format=torch.channels_last); w2 = w.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    t5 = cpu_t(lambda: F.conv2d(x2, w2, b, dilation=(1, d)))
    xt = xp[0].t().contiguous()  # (T+p, C)
    Wk = [w[:, :, k].t().contiguous() for k in range(7)]  # (Cin, Cout)
    def mm7():
        out = torch.addmm(b, xt[0:T], Wk[0])
        for k in range(1, 7):
            out.addmm_(xt[k*d:k*d+T], Wk[k])
        return out
    t4 = cpu_t(mm7)
    ref = F.conv1d(xp, w, b, dilation=d)[0].t()
    err = (mm7() - ref).abs().max().item()
    # 1x1
    w1 = torch.randn(C, C)/C**.5
    w1c = w1[:, :, None, None].contiguous(memory_format=torch.channels_last)
    xc = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    fl1 = 2*C*C*T
    t6 = cpu_t(lambda: F.conv2d(xc, w1c, b)); w1t = w1.t().contiguous(); xtt = x[0].t().contiguous()
    t7 = cpu_t(lambda: torch.addmm(b, xtt, w1t))
    print(f"C={C} T={T} d={d}: conv2d-cl {fl/t5/1e9:.1f} GF/s, mm7-nwc {fl/t4/1e9:.1f} (err {err:.1e}); 1x1 conv2d-cl {fl1/t6/1e9:.1f} mm {fl1/t7/1e9:.1f}", flush=True)
  # transconv
  for Cin, T, u in ((1536, 400//8*4, 8), (768, 400*2, 5), (384, 2000*2, 4), (192, 8000*2, 3)):
    Cout = Cin//2; K = 2*u
    x = torch.randn(1, Cin, T); w = torch.randn(Cin, Cout, K)/Cin**.5; b = torch.zeros(Cout)
    fl = 2*Cin*Cout*K*T
    xc = x.unsqueeze(2).contiguous(memory_format=torch.channels_last); wc = w.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    t1 = cpu_t(lambda: F.conv_transpose2d(xc, wc, b, stride=(1, u)))
    t0_ = cpu_t(lambda: F.conv_transpose1d(x, w, b, stride=u))
    xt = x[0].t().contiguous(); W = w.permute(0, 2, 1).reshape(Cin, K*Cout).contiguous()
    def tg():
        z = torch.mm(xt, W).view(T, 2, u, Cout)
        y = z[:, 0] + b
        y[1:] += z[:-1, 1]
        return y.reshape(T*u, Cout)
    t2 = cpu_t(tg)
    ref = F.conv_transpose1d(x, w, b, stride=u)[0, :, :T*u].t()
    err = (tg() - ref).abs().max().item()
    print(f"trans Cin={Cin} T={T} u={u}: convT1d {fl/t0_/1e9:.1f} GF/s, convT2d-cl {fl/t1/1e9:.1f}, gemm+ola {fl/t2/1e9:.1f} (err {err:.1e})", flush=True)
