"""Benchmark harness: pycnnrnn, torch and onnxruntime side by side, one group per case.

Conventions for bench_*.py files:
- parametrize the implementation as ``impl`` (values "pycnnrnn", "torch", "onnxruntime",
  "numpy", ...) and set ``benchmark.group = "<op>-<case>"`` so peers share a group;
- set ``benchmark.extra_info["flops"]`` (useful floating-point operations per call) or
  ``benchmark.extra_info["bytes"]`` (bytes that must move: read + written) so the table can
  print the fraction of the machine's FMA peak / copy bandwidth;
- skip an impl with ``pytest.skip`` only when its package is absent or lacks the op.

At the end of the session the harness prints, per group, each impl's median time, its ratio
(baseline median / pycnnrnn median, > 1 means pycnnrnn is faster) and its GFLOP/s or GB/s as
a fraction of the ceilings measured by pycnnrnn.roofline() in the same run; the same table is
written to bench/results/ratios.json (or $PYCNNRNN_BENCH_JSON).
"""

from __future__ import annotations

import json
import os
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


@pytest.fixture(scope="session")
def roof():
    return roofline()


# Every case starts on idle cores and times warm calls. A library's worker threads keep spinning
# after its last call (OpenBLAS for ~0.1 s or more, torch's OpenMP team for milliseconds,
# pycnnrnn's pool for under one), and the cases of one group run back to back in one process:
# on the 2-core Zen 3 box pycnnrnn's 64x512 @ 512x2048 ran 2.2x slower right after numpy's rounds
# and 1.3x slower right after torch's, so the order of the implementations decided the ratios.
# After an idle pause the first calls are slow too (about 3x for the first, ~10 ms of calls to
# settle), so each case warms up for WARMUP_S before its timed rounds. The same for every
# implementation.
SETTLE_S = 0.3
WARMUP_S = 0.05


@pytest.fixture(autouse=True)
def _settle(request):
    if "benchmark" in request.fixturenames:
        time.sleep(SETTLE_S)


@pytest.fixture
def timed(benchmark):
    """timed(fn, *args, rounds=None, **kwargs): fn(*args, **kwargs) called for WARMUP_S (at least
    twice), then timed by pytest-benchmark: `rounds` rounds of one call (pedantic), or its own
    calibration when None. Returns fn's result."""

    def run(fn, *args, rounds=None, **kwargs):
        t0, calls = time.perf_counter(), 0
        while calls < 2 or time.perf_counter() - t0 < WARMUP_S:
            fn(*args, **kwargs)
            calls += 1
        if rounds is None:
            return benchmark(fn, *args, **kwargs)
        return benchmark.pedantic(fn, args=args, kwargs=kwargs, rounds=rounds, iterations=1, warmup_rounds=0)

    return run


def pytest_configure(config):
    # glibc serves blocks over its mmap threshold (128 KiB at start) with fresh mappings, and
    # raises the threshold to the size of the first such block freed. Until some library frees
    # one, every large tensor page-faults anew: torch's LSTM(300, 512, 2) forward+backward at
    # B=1 took 17-18 ms with 4,700-5,700 page faults per call, 8.6-9.3 ms with none after one
    # 16 MiB free (in the full suite the first ONNX export did that by chance, so a case's
    # figures depended on what ran before it). Every run starts in the settled state.
    import numpy as np

    block = np.ones(16 << 20, np.uint8)
    del block
    try:
        import torch

        torch.set_num_threads(pycnnrnn.get_num_threads())
    except ImportError:
        pass


def _median(bench) -> float | None:
    stats = getattr(bench, "stats", None)
    if stats is None:
        return None
    inner = getattr(stats, "stats", stats)
    return getattr(inner, "median", None)


def collect_table(benchmarks) -> list[dict]:
    groups: dict[str, list] = {}
    for b in benchmarks:
        med = _median(b)
        if med is None:
            continue
        params = getattr(b, "params", None) or {}
        impl = params.get("impl", b.name)
        groups.setdefault(b.group or b.name, []).append((impl, med, dict(getattr(b, "extra_info", {}) or {})))
    roof = roofline()
    rows = []
    for group, entries in sorted(groups.items()):
        # an interleaved case (bench_train: extra_info["paired"]): its own step medians, and the
        # median of its per-round ratios as the peer's ratio
        paired = next((e["paired"] for _, _, e in entries if "paired" in e), None)
        if paired:
            entries = [("pycnnrnn", paired["pycnnrnn_ms"] * 1e-3, entries[0][2])]
            peer = {"group": group, "impl": "torch", "median_ms": paired["torch_ms"]}
            rows.append({**peer, "ratio_vs_pycnnrnn": paired["torch_ratio"]})
        ours = next((m for i, m, _ in entries if i == "pycnnrnn"), None)
        for impl, med, extra in entries:
            row = {"group": group, "impl": impl, "median_ms": med * 1e3}
            if ours:
                row["ratio_vs_pycnnrnn"] = med / ours  # baseline time / pycnnrnn time
            if "flops" in extra:
                g = extra["flops"] / med * 1e-9
                row["gflops"] = g
                row["frac_fma_peak"] = g / roof["fma_peak_gflops"]
            if "bytes" in extra:
                g = extra["bytes"] / med * 1e-9
                row["gbs"] = g
                row["frac_bandwidth"] = g / roof["copy_bandwidth_gbs"]
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
