"""Benchmark harness: pycnnrnn, torch and onnxruntime side by side, one group per case.

Conventions for bench_*.py files:
- one test per case: build a callable per implementation ("pycnnrnn" first, then "torch",
  "onnxruntime", "numpy", ...; a peer whose package is absent is left out) and
  time them together with the ``interleaved`` fixture; set ``benchmark.group = "<op>-<case>"``;
- set ``benchmark.extra_info["flops"]`` (useful floating-point operations per call) or
  ``benchmark.extra_info["bytes"]`` (bytes that must move: read + written) so the table can
  print the fraction of the machine's FMA peak / copy bandwidth.

At the end of the session the harness prints, per group, each impl's median time, its ratio
(baseline time / pycnnrnn time, > 1 means pycnnrnn is faster) and its GFLOP/s or GB/s as a
fraction of the ceilings measured by pycnnrnn.roofline() in the same run; the same table is
written to bench/results/ratios.json (or $PYCNNRNN_BENCH_JSON).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import pytest

import pycnnrnn

_ROOF: dict | None = None


def roofline() -> dict:
    global _ROOF
    if _ROOF is None:
        _ROOF = pycnnrnn.roofline()
    return _ROOF


# Every case starts on idle cores and times warm calls. A library's worker threads keep spinning
# after its last call (OpenBLAS for ~0.1 s or more, torch's OpenMP team for milliseconds,
# onnxruntime's pool for milliseconds, pycnnrnn's pool for under one): on the 2-core Zen 3 box
# pycnnrnn's 64x512 @ 512x2048 ran 2.2x slower right after numpy's rounds and 1.3x slower
# right after torch's, and on the Intel Xeon a 512->512@14 convolution right after
# onnxruntime's calls took 8.0 ms against 5.0 ms a moment later. After an idle pause the first
# calls are slow too (about 3x for the first, ~10 ms of calls to settle).
SETTLE_S = 0.3


@pytest.fixture(autouse=True)
def _settle(request):
    if "benchmark" in request.fixturenames:
        time.sleep(SETTLE_S)


# The implementations of a case run in alternating blocks within one loop, not one after the
# other: the machine's speed changes for seconds to minutes at a time (on the Intel Xeon one
# process timing the same 2048^3 GEMM every second read 154-300 GFLOP/s over 20 s), which
# back-to-back rows straddle, so a ratio could move 2x between runs with no code change.
# Within a round every implementation sees the same machine. After each block the library that
# ran it gets SPIN_S to let its worker threads stop spinning (measured on the Intel Xeon, 512^3
# matmul by pycnnrnn right after 5 calls of the peer, median of 7: after numpy even the sixth
# call ran at 2.1-2.5x its time until a 0.2 s pause, after onnxruntime 2.1-3.3x until 0.05 s,
# after torch about 1.4x at no pause), then the next block is one untimed call (its data into
# the caches) and BLOCK timed calls; who goes first rotates. (bench_train found alternating
# single calls, each starting on the other model's caches, cost pycnnrnn's step more:
# 1.40-1.49x where separate rows read 1.54-1.73x.)
SPIN_S = {"numpy": 0.25, "onnxruntime": 0.06, "torch": 0.03}  # others: DEFAULT_SPIN_S
DEFAULT_SPIN_S = 0.01
BLOCK = 3  # timed calls per block; more for calls under BLOCK_MIN_S / BLOCK (up to 50)
BLOCK_MIN_S = 0.01
ROUND_TARGET_S = 4.0  # rounds are chosen to fill about this much time (5 to 15 rounds)


@pytest.fixture
def interleaved(benchmark, request):
    """interleaved(fns, rounds=None): fns maps impl name -> zero-argument callable, "pycnnrnn"
    first. One warm-up round, then `rounds` timed ones (None: 5-15, about ROUND_TARGET_S in all;
    at most 3 with --quick), BLOCK timed calls an impl a round (more for short calls). Each
    impl's row is the median of its block medians and its ratio the median over rounds of (its
    block median / pycnnrnn's in the same round). pytest-benchmark times whole rounds (its own
    table, not used for the ratios)."""

    def run(fns: dict, rounds: int | None = None) -> None:
        names = list(fns)
        blocks: dict[str, list[float]] = {n: [] for n in names}
        block = BLOCK

        def round_():
            first = len(blocks[names[0]]) % len(names)
            for name in names[first:] + names[:first]:
                fn = fns[name]
                fn()
                ts = []
                for _ in range(block):
                    t0 = time.perf_counter()
                    fn()
                    ts.append(time.perf_counter() - t0)
                blocks[name].append(statistics.median(ts))
                time.sleep(SPIN_S.get(name, DEFAULT_SPIN_S))

        round_()  # warm-up (not kept)
        call_s = {n: b[0] for n, b in blocks.items()}
        block = max(BLOCK, min(50, int(BLOCK_MIN_S / min(call_s.values()))))
        if rounds is None:
            round_s = sum((block + 1) * s + SPIN_S.get(n, DEFAULT_SPIN_S) for n, s in call_s.items())
            rounds = max(5, min(15, int(ROUND_TARGET_S / round_s)))
        if float(request.config.getoption("benchmark_max_time", 1.0)) < 0.5:  # --quick
            rounds = min(rounds, 3)
        benchmark.pedantic(round_, rounds=rounds, iterations=1, warmup_rounds=0)
        kept = {n: b[-rounds:] for n, b in blocks.items()}
        ours = kept.get("pycnnrnn")
        benchmark.extra_info["interleaved"] = {
            n: {"median_ms": 1e3 * statistics.median(b)}
            | ({"ratio": statistics.median([t / o for o, t in zip(ours, b)])} if ours else {})
            for n, b in kept.items()
        }

    return run


def pytest_configure(config):
    # glibc serves blocks over its mmap threshold (128 KiB at start) with fresh mappings, and
    # raises the threshold to the size of a larger such block freed, up to 32 MiB; it also
    # returns the heap's free top to the system past a trim threshold. A tensor served either
    # way page-faults anew on every call: torch's LSTM(300, 512, 2) forward+backward at B=1 took
    # 17-18 ms with 4,700-5,700 page faults per call, 8.6-9.3 ms with none; torch's 7x7/2 stem
    # at N=8 (a 25.7 MB output) 23-30 ms or 10 ms, and its depthwise 3x3 at N=8 C=256 56x56
    # 1.14x or 6.7x pycnnrnn's time, as what ran before in the process left the allocator (a
    # freed block raising the threshold, or not). Every run fixes the settled state: blocks up to
    # 32 MiB (the most glibc allows) from the heap, which is never trimmed.
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError):  # not glibc: its own allocator's behaviour
        pass
    try:
        import torch

        torch.set_num_threads(pycnnrnn.get_num_threads())
    except ImportError:
        pass


def collect_table(benchmarks) -> list[dict]:
    roof = roofline()
    rows = []
    for b in sorted(benchmarks, key=lambda b: b.group or b.name):
        extra = dict(getattr(b, "extra_info", {}) or {})
        for impl, r in extra.get("interleaved", {}).items():
            row = {"group": b.group or b.name, "impl": impl, "median_ms": r["median_ms"]}
            if "ratio" in r:
                row["ratio_vs_pycnnrnn"] = r["ratio"]  # baseline time / pycnnrnn time, per round
            sec = r["median_ms"] * 1e-3
            if "flops" in extra:
                row["gflops"] = extra["flops"] / sec * 1e-9
                row["frac_fma_peak"] = row["gflops"] / roof["fma_peak_gflops"]
            if "bytes" in extra:
                row["gbs"] = extra["bytes"] / sec * 1e-9
                row["frac_bandwidth"] = row["gbs"] / roof["copy_bandwidth_gbs"]
            rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    roof = roofline()
    lines = [
        f"machine: FMA peak {roof['fma_peak_gflops']:.0f} GFLOP/s, copy {roof['copy_bandwidth_gbs']:.1f} GB/s, "
        f"{roof['threads']} threads, isa {roof['isa']}",
        f"{'group':<44} {'impl':<12} {'median ms':>10} {'ratio':>7} {'GFLOP/s|GB/s':>13} {'of peak':>8}",
    ]
    for r in rows:
        rate = r.get("gflops", r.get("gbs"))
        frac = r.get("frac_fma_peak", r.get("frac_bandwidth"))
        ratio = r.get("ratio_vs_pycnnrnn")
        lines.append(
            f"{r['group']:<44} {r['impl']:<12} {r['median_ms']:>10.3f} "
            f"{(f'{ratio:.2f}x' if ratio else '-'):>7} {(f'{rate:.1f}' if rate else '-'):>13} "
            f"{(f'{100 * frac:.0f}%' if frac else '-'):>8}"
        )
    return "\n".join(lines)


def pytest_sessionfinish(session, exitstatus):
    bs = getattr(session.config, "_benchmarksession", None)
    if bs is None or not getattr(bs, "benchmarks", None):
        return
    rows = collect_table(bs.benchmarks)
    if not rows:
        return
    out = Path(os.environ.get("PYCNNRNN_BENCH_JSON", Path(__file__).parent / "results" / "ratios.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "roofline": roofline(), "rows": rows}, indent=1
        )
    )
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    text = "\n" + format_table(rows) + f"\n(ratio = baseline time / pycnnrnn time; written to {out})\n"
    if tr is not None:
        tr.write_line(text)
    else:
        print(text)
