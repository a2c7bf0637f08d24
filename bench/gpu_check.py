"""GPU check for the CUDA backend: a sanitizer smoke run (--smoke) and the benchmark (--bench).

--bench times pycnnrnn's kernels against torch (cuBLAS / cuDNN) with TF32 disabled, in one
process, and prints one table: median ms of each, ratio = torch / ours (> 1: ours faster),
achieved GB/s or TFLOP/s and its fraction of ceilings measured in the same run (a large
device-to-device copy; torch.mm fp32 8192^3), and the relative difference to torch's result.
Run from the repository root with the built package on PYTHONPATH (bench/gpu_check.sh does).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F

import pycnnrnn
import pycnnrnn.cuda as pcc

DEV = "cuda"


def strict_fp32():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    for path in ("torch.backends.cuda.matmul", "torch.backends.cudnn.conv", "torch.backends.cudnn.rnn"):
        mod = eval(path)  # noqa: S307 - fixed strings
        if hasattr(mod, "fp32_precision"):
            try:
                mod.fp32_precision = "ieee"
            except Exception as e:  # pragma: no cover
                print(f"  could not set {path}.fp32_precision: {e}")
    settings = {}
    for key in (
        "torch.backends.cuda.matmul.allow_tf32",
        "torch.backends.cudnn.allow_tf32",
        "torch.backends.cudnn.benchmark",
        "torch.backends.cuda.matmul.fp32_precision",
        "torch.backends.cudnn.conv.fp32_precision",
        "torch.backends.cudnn.rnn.fp32_precision",
    ):
        try:
            settings[key] = eval(key)  # noqa: S307 - fixed strings
        except Exception as e:
            settings[key] = f"n/a ({type(e).__name__})"
    for k, v in settings.items():
        print(f"  {k} = {v}")
    return settings


def bench(fn, reps=20, warmup=3, max_s=3.0):
    """Median ms over event-timed reps (after warm-up); stops early past max_s of work."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    t_start = time.perf_counter()
    for _ in range(reps):
        e0 = torch.cuda.Event(enable_timing=True)
        e1 = torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1))
        if time.perf_counter() - t_start > max_s and len(times) >= 3:
            break
    med = statistics.median(times)
    spread = (max(times) - min(times)) / med if med > 0 else 0.0
    return med, spread


def rel(a, b) -> float:
    a = a.double()
    b = b.double()
    d = b.norm().item()
    if not torch.isfinite(a).all():
        return float("nan")
    return (a - b).norm().item() / (d if d > 0 else 1.0)


ROWS: list[dict] = []


def row(name, ours_ms, torch_ms, *, flops=None, nbytes=None, err=None, note="", spread=None):
    r = {
        "case": name,
        "ours_ms": ours_ms,
        "torch_ms": torch_ms,
        "ratio": (torch_ms / ours_ms) if ours_ms and torch_ms else None,
        "err": err,
        "note": note,
        "spread": spread,
    }
    if flops is not None:
        r["ours_tflops"] = flops / ours_ms / 1e9
        r["torch_tflops"] = flops / torch_ms / 1e9 if torch_ms else None
    if nbytes is not None:
        r["ours_gbs"] = nbytes / ours_ms / 1e6
        r["torch_gbs"] = nbytes / torch_ms / 1e6 if torch_ms else None
    ROWS.append(r)
    print(
        f"  {name}: ours {ours_ms:.4f} ms, torch {torch_ms:.4f} ms, ratio {r['ratio']:.3f}, err {err}",
        flush=True,
    )
    return r


def ceilings():
    n = (2 << 30) // 4  # 2 GiB of float32
    src = torch.randn(n, device=DEV)
    dst = torch.empty_like(src)
    ms, _ = bench(lambda: dst.copy_(src), reps=10)
    copy_gbs = 2 * src.numel() * 4 / ms / 1e6
    src = dst = None
    a = torch.randn(8192, 8192, device=DEV)
    b = torch.randn(8192, 8192, device=DEV)
    ms_mm, _ = bench(lambda: torch.mm(a, b), reps=8)
    mm_tflops = 2 * 8192**3 / ms_mm / 1e9
    a = b = None
    torch.cuda.empty_cache()
    print(
        f"  ceilings: D2D copy {copy_gbs:.0f} GB/s (read+write), torch.mm fp32 8192^3 {mm_tflops:.1f} TFLOP/s"
    )
    return {"copy_gbs": copy_gbs, "sgemm_tflops": mm_tflops}


def bench_pool():
    N, C, H, W = 32, 64, 224, 224
    x = torch.randn(N, C, H, W, device=DEV)
    nin = x.numel()
    nout = nin // 4
    y = pcc.max_pool2d(x, 2, 2)
    ref = F.max_pool2d(x, 2, 2)
    err = 0.0 if torch.equal(y, ref) else rel(y, ref)
    mo, so = bench(lambda: pcc.max_pool2d(x, 2, 2))
    mt, _ = bench(lambda: F.max_pool2d(x, 2, 2))
    row("max_pool2d fwd 32x64x224^2 2x2/2", mo, mt, nbytes=4 * (nin + nout), err=err, spread=so)
    yi, idx = pcc.max_pool2d(x, 2, 2, return_indices=True)
    ry, ridx = F.max_pool2d(x, 2, 2, return_indices=True)
    err = 0.0 if (torch.equal(yi, ry) and torch.equal(idx, ridx)) else float("nan")
    mo, so = bench(lambda: pcc.max_pool2d(x, 2, 2, return_indices=True))
    mt, _ = bench(lambda: F.max_pool2d(x, 2, 2, return_indices=True))
    row("max_pool2d fwd +int64 idx", mo, mt, nbytes=4 * nin + 12 * nout, err=err, spread=so)
    gy = torch.randn_like(ry)
    gx = pcc.max_pool2d_backward(gy, idx, x.shape, 2, 2)

    def tb():
        return torch.ops.aten.max_pool2d_with_indices_backward(
            gy, x, [2, 2], [2, 2], [0, 0], [1, 1], False, ridx
        )

    err = rel(gx, tb())
    mo, so = bench(lambda: pcc.max_pool2d_backward(gy, idx, x.shape, 2, 2))
    mt, _ = bench(tb)
    row("max_pool2d bwd 2x2/2 (window path)", mo, mt, nbytes=12 * nout + 4 * nin, err=err, spread=so)
    # overlapping 3x3/2 pad 1 (ResNet stem): the generic forward and the gather backward
    args = (3, 2, 1)
    yi, idx = pcc.max_pool2d(x, *args, return_indices=True)
    ry, ridx = F.max_pool2d(x, *args, return_indices=True)
    err = 0.0 if (torch.equal(yi, ry) and torch.equal(idx, ridx)) else float("nan")
    nout3 = ry.numel()
    mo, so = bench(lambda: pcc.max_pool2d(x, *args, return_indices=True))
    mt, _ = bench(lambda: F.max_pool2d(x, *args, return_indices=True))
    row("max_pool2d fwd 3x3/2 p1 +idx", mo, mt, nbytes=4 * nin + 12 * nout3, err=err, spread=so)
    gy = torch.randn_like(ry)

    def tb():
        return torch.ops.aten.max_pool2d_with_indices_backward(
            gy, x, [3, 3], [2, 2], [1, 1], [1, 1], False, ridx
        )

    err = rel(pcc.max_pool2d_backward(gy, idx, x.shape, *args), tb())
    mo, so = bench(lambda: pcc.max_pool2d_backward(gy, idx, x.shape, *args))
    mt, _ = bench(tb)
    row("max_pool2d bwd 3x3/2 p1 (gather)", mo, mt, nbytes=12 * nout3 + 4 * nin, err=err, spread=so)


def bench_gemm():
    n = 4096
    a = torch.randn(n, n, device=DEV)
    b = torch.randn(n, n, device=DEV)
    flops = 2 * n**3
    for name, ta, tb in (("NN", False, False), ("NT", False, True), ("TN", True, False)):
        out = pcc.gemm(a, b, ta, tb)
        ref_fn = lambda ta=ta, tb=tb: torch.mm(a.t() if ta else a, b.t() if tb else b)  # noqa: E731
        err = rel(out, ref_fn())
        mo, so = bench(lambda ta=ta, tb=tb: pcc.gemm(a, b, ta, tb, out=out))
        mt, _ = bench(ref_fn)
        row(f"sgemm {name} 4096^3", mo, mt, flops=flops, err=err, spread=so)
    # LSTM-shaped: xproj for T*B = 800, 4H = 2048, I = 512
    x = torch.randn(800, 512, device=DEV)
    w = torch.randn(2048, 512, device=DEV)
    out = pcc.gemm(x, w, False, True)
    err = rel(out, x @ w.t())
    mo, so = bench(lambda: pcc.gemm(x, w, False, True, out=out))
    mt, _ = bench(lambda: x @ w.t())
    row("sgemm NT 800x2048x512 (lstm xproj)", mo, mt, flops=2 * 800 * 2048 * 512, err=err, spread=so)


VGG16 = [  # name, C, K, HW (3x3, pad 1)
    ("conv1_1", 3, 64, 224),
    ("conv1_2", 64, 64, 224),
    ("conv2_1", 64, 128, 112),
    ("conv2_2", 128, 128, 112),
    ("conv3_1", 128, 256, 56),
    ("conv3_2", 256, 256, 56),
    ("conv4_1", 256, 512, 28),
    ("conv4_2", 512, 512, 28),
    ("conv5_1", 512, 512, 14),
]
VGG16_COUNT = {
    "conv1_1": 1,
    "conv1_2": 1,
    "conv2_1": 1,
    "conv2_2": 1,
    "conv3_1": 1,
    "conv3_2": 2,
    "conv4_1": 1,
    "conv4_2": 2,
    "conv5_1": 3,
}


def bench_conv(N=32, bwd_layers=("conv2_2", "conv3_2", "conv4_2")):
    tot_o = tot_t = 0.0
    for name, C, K, HW in VGG16:
        x = torch.randn(N, C, HW, HW, device=DEV)
        w = torch.randn(K, C, 3, 3, device=DEV) / math.sqrt(C * 9)
        b = torch.randn(K, device=DEV)
        flops = 2 * N * K * C * 9 * HW * HW
        y = pcc.conv2d(x, w, b, 1, 1)
        err = rel(y, F.conv2d(x, w, b, 1, 1))
        mo, so = bench(lambda: pcc.conv2d(x, w, b, 1, 1), reps=5, max_s=4)
        mt, _ = bench(lambda: F.conv2d(x, w, b, 1, 1), reps=10)
        row(f"conv fwd VGG16 {name} N={N}", mo, mt, flops=flops, err=err, spread=so)
        tot_o += mo * VGG16_COUNT[name]
        tot_t += mt * VGG16_COUNT[name]
        if name in bwd_layers:
            gy = torch.randn_like(y)
            mask = [True, True, False]
            tref = torch.ops.aten.convolution_backward(
                gy, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask
            )
            dx, dw, _ = pcc.conv2d_backward(gy, x, w, 1, 1, 1, 1, (True, False, False))
            mo, so = bench(
                lambda: pcc.conv2d_backward(gy, x, w, 1, 1, 1, 1, (True, False, False)), reps=5, max_s=4
            )
            mt, _ = bench(
                lambda: torch.ops.aten.convolution_backward(
                    gy, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False]
                ),
                reps=10,
            )
            row(f"conv dgrad {name}", mo, mt, flops=flops, err=rel(dx, tref[0]), spread=so)
            _, dw, _ = pcc.conv2d_backward(gy, x, w, 1, 1, 1, 1, (False, True, False))
            mo, so = bench(
                lambda: pcc.conv2d_backward(gy, x, w, 1, 1, 1, 1, (False, True, False)), reps=5, max_s=4
            )
            mt, _ = bench(
                lambda: torch.ops.aten.convolution_backward(
                    gy, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, False]
                ),
                reps=10,
            )
            row(f"conv wgrad {name}", mo, mt, flops=flops, err=rel(dw, tref[1]), spread=so)
        torch.cuda.empty_cache()
    row(f"conv fwd VGG16 all 13 layers N={N}", tot_o, tot_t, flops=30.7e9 * N, note="sum of layer medians")


def bench_lstm():
    I = H = 512
    T = 100
    for B in (1, 8, 16, 64):
        torch.manual_seed(0)
        m = torch.nn.LSTM(I, H).to(DEV)
        x = torch.randn(T, B, I, device=DEV)
        args = (
            m.weight_ih_l0.detach(),
            m.weight_hh_l0.detach(),
            m.bias_ih_l0.detach(),
            m.bias_hh_l0.detach(),
        )
        y, _, _, _ = pcc.lstm_forward(x, None, None, *args)
        with torch.no_grad():
            ref, _ = m(x)
            err = rel(y, ref)
            mo, so = bench(lambda: pcc.lstm_forward(x, None, None, *args), reps=20)
            mt, _ = bench(lambda: m(x), reps=20)
        flops = T * B * (2 * 4 * H * (I + H))
        row(
            f"lstm fwd 512/512 T=100 B={B}",
            mo,
            mt,
            flops=flops,
            err=err,
            spread=so,
            note=f"{1000 * mo / T:.1f} us/step ours",
        )
        with torch.no_grad(), torch.backends.cudnn.flags(enabled=False):
            mn, _ = bench(lambda: m(x), reps=10)
        row(f"lstm fwd B={B} vs ATen-native (cuDNN off)", mo, mn, flops=flops)
        try:  # our launches captured in a CUDA graph (no launch gaps) vs cuDNN, also graph-captured
            g = torch.cuda.CUDAGraph()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                pcc.lstm_forward(x, None, None, *args)
            torch.cuda.current_stream().wait_stream(side)
            with torch.cuda.graph(g):
                yg, _, _, _ = pcc.lstm_forward(x, None, None, *args)
            g.replay()
            torch.cuda.synchronize()
            errg = rel(yg, ref)
            mg, sg = bench(g.replay, reps=20)
            gt = torch.cuda.CUDAGraph()
            with torch.no_grad():
                with torch.cuda.stream(side):
                    m(x)
                torch.cuda.current_stream().wait_stream(side)
                with torch.cuda.graph(gt):
                    m(x)
            mtg, _ = bench(gt.replay, reps=20)
            row(f"lstm fwd B={B} CUDA graph (both)", mg, mtg, flops=flops, err=errg, spread=sg)
        except Exception as e:
            print(f"  graph capture failed: {type(e).__name__}: {e}")
        if B == 8:
            gy = torch.randn_like(ref)

            def ours_train():
                yy, _, _, saved = pcc.lstm_forward(x, None, None, *args, training=True)
                return pcc.lstm_backward(x, None, None, args[0], args[1], yy, saved, gy)

            xr = x.clone().requires_grad_(True)

            def torch_train():
                yy, _ = m(xr)
                return torch.autograd.grad(yy, [xr, *m.parameters()], gy)

            g_ours = ours_train()
            g_t = torch_train()
            err = max(
                rel(g_ours[0], g_t[0]), rel(g_ours[3], g_t[1]), rel(g_ours[4], g_t[2]), rel(g_ours[5], g_t[3])
            )
            mo, so = bench(ours_train, reps=10)
            mt, _ = bench(torch_train, reps=10)
            row(f"lstm fwd+bwd T=100 B={B}", mo, mt, flops=3 * flops, err=err, spread=so)


def bench_gru():
    I = H = 512
    T = 100
    for B in (8, 64):
        torch.manual_seed(0)
        m = torch.nn.GRU(I, H).to(DEV)
        x = torch.randn(T, B, I, device=DEV)
        args = [p.detach() for p in m.parameters()]
        y, _, _ = pcc.gru_forward(x, None, *args)
        with torch.no_grad():
            ref, _ = m(x)
            err = rel(y, ref)
            mo, so = bench(lambda: pcc.gru_forward(x, None, *args), reps=20)
            mt, _ = bench(lambda: m(x), reps=20)
        row(
            f"gru fwd 512/512 T=100 B={B}",
            mo,
            mt,
            flops=T * B * (2 * 3 * H * (I + H)),
            err=err,
            spread=so,
            note=f"{1000 * mo / T:.1f} us/step ours",
        )


def print_table(ceil):
    print("\n" + "=" * 118)
    print(
        f"GPU: {torch.cuda.get_device_name(0)} | torch {torch.__version__} | cuDNN {torch.backends.cudnn.version()} | "
        f"ceilings: copy {ceil['copy_gbs']:.0f} GB/s, torch.mm fp32 {ceil['sgemm_tflops']:.1f} TFLOP/s | TF32 off"
    )
    hdr = (
        f"{'case':44s} {'ours ms':>9s} {'torch ms':>9s} {'torch/ours':>10s} {'ours rate':>12s} {'of ceil':>8s} "
        f"{'rel err':>9s}  note"
    )
    print(hdr)
    print("-" * 118)
    for r in ROWS:
        if "ours_gbs" in r:
            rate, frac = f"{r['ours_gbs']:.0f} GB/s", r["ours_gbs"] / ceil["copy_gbs"]
        elif "ours_tflops" in r:
            rate, frac = f"{r['ours_tflops']:.2f} TF/s", r["ours_tflops"] / ceil["sgemm_tflops"]
        else:
            rate, frac = "", None
        err = "" if r["err"] is None else f"{r['err']:.1e}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        fr = "" if frac is None else f"{100 * frac:.0f}%"
        note = r["note"]
        if r.get("spread") is not None:
            note = (note + " " if note else "") + f"spread {100 * r['spread']:.0f}%"
        print(
            f"{r['case'][:44]:44s} {r['ours_ms']:9.4f} {r['torch_ms']:9.4f} {ratio:>10s} {rate:>12s} {fr:>8s} "
            f"{err:>9s}  {note}"
        )
    print("=" * 118)


def smoke():
    """Small cases of every kernel, for compute-sanitizer memcheck."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 11, device=DEV)
    y, idx = pcc.max_pool2d(x, 3, 2, 1, 1, ceil_mode=True, return_indices=True)
    pcc.max_pool2d(torch.randn(2, 3, 8, 8, device=DEV), 2)
    pcc.max_pool2d_backward(torch.randn_like(y), idx, x.shape, 3, 2, 1, 1, ceil_mode=True)
    for M, N, K in ((130, 129, 67), (64, 128, 36), (5, 3, 2)):
        pcc.gemm(torch.randn(M, K, device=DEV), torch.randn(K, N, device=DEV))
        pcc.gemm(torch.randn(M, K, device=DEV), torch.randn(N, K, device=DEV), False, True)
        pcc.gemm(torch.randn(K, M, device=DEV), torch.randn(K, N, device=DEV), True, False)
    m = torch.nn.LSTM(10, 20).to(DEV)
    xs = torch.randn(4, 3, 10, device=DEV)
    w = (m.weight_ih_l0.detach(), m.weight_hh_l0.detach(), m.bias_ih_l0.detach(), m.bias_hh_l0.detach())
    yl, _, _, saved = pcc.lstm_forward(xs, None, None, *w, training=True)
    pcc.lstm_backward(xs, None, None, w[0], w[1], yl, saved, torch.randn_like(yl))
    g = torch.nn.GRU(10, 20).to(DEV)
    gw = [p.detach() for p in g.parameters()]
    h0g = torch.randn(3, 20, device=DEV)
    yg, _, sg = pcc.gru_forward(xs, h0g, *gw, training=True)
    pcc.gru_backward(xs, h0g, gw[0], gw[1], yg, sg, torch.randn_like(yg))
    pcc.lstm_forward(torch.randn(2, 70, 10, device=DEV), None, None, *w, training=False)
    xc = torch.randn(2, 4, 9, 10, device=DEV)
    wc = torch.randn(6, 2, 3, 3, device=DEV)
    yc = pcc.conv2d(xc, wc, torch.randn(6, device=DEV), 2, 1, 2, 2)
    pcc.conv2d_backward(torch.randn_like(yc), xc, wc, 2, 1, 2, 2)
    torch.cuda.synchronize()
    print("smoke: ok")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--only", default="pool,gemm,lstm,gru,conv")
    args = ap.parse_args()
    print(
        f"pycnnrnn {pycnnrnn.__version__} cuda_available={pycnnrnn.cuda_available()} "
        f"device={pycnnrnn._C.cuda_device_name(0) if pycnnrnn.cuda_available() else None}"
    )
    if args.smoke:
        smoke()
    if not args.bench:
        return 0
    settings = strict_fp32()
    ceil = ceilings()
    failed = []
    stages = {
        "pool": bench_pool,
        "gemm": bench_gemm,
        "lstm": bench_lstm,
        "gru": bench_gru,
        "conv": bench_conv,
    }
    for name in args.only.split(","):
        print(f"--- bench {name}", flush=True)
        t0 = time.perf_counter()
        try:
            stages[name]()
        except Exception:
            traceback.print_exc()
            failed.append(name)
        torch.cuda.empty_cache()
        print(f"--- bench {name} took {time.perf_counter() - t0:.1f} s", flush=True)
    print_table(ceil)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "settings": settings,
                    "ceilings": ceil,
                    "rows": ROWS,
                    "failed": failed,
                    "device": torch.cuda.get_device_name(0),
                },
                f,
                indent=1,
                default=str,
            )
    if failed:
        print(f"bench stages failed: {failed}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
