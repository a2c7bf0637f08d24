"""python -m pycnnrnn in subprocesses: help, the summary subcommand, exit codes without
tracebacks for user errors, and the demo with torch and without it (torch blocked)."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile

import pytest
from helpers import child_env, run_python


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pycnnrnn", *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=timeout,
        cwd=tempfile.gettempdir(),
    )


def test_help():
    r = cli("--help")
    assert r.returncode == 0, r.stderr
    assert "usage: python -m pycnnrnn" in r.stdout
    assert "summary" in r.stdout and "--no-torch" in r.stdout and "random" not in r.stderr
    r = cli("summary", "--help")
    assert r.returncode == 0 and "--mode {table,tree}" in r.stdout


def test_summary_vgg16():
    r = cli("summary", "vgg16")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "            Conv2d-1         [-1, 64, 224, 224]           1,792" in lines
    assert "Total params: 138,357,544" in lines
    assert "Params size (MB): 527.79" in lines


def test_summary_vqa_tree_small():
    r = cli("summary", "vqa", "--mode", "tree", "--mult-adds", "--image-size", "32", "--vocab-size", "100")
    assert r.returncode == 0, r.stderr
    assert "└─LSTM: 2-5" in r.stdout and "Total mult-adds" in r.stdout
    # VGG16 backbone: 138,357,544 - 4,097,000 (last Linear) + fc 4,195,328 + embedding 300*100
    # + LSTM 3,768,320 + fc 2,098,176 + fc1 1,025,000 + fc2 1,001,000
    total = 138_357_544 - 4_097_000 + 4_195_328 + 300 * 100 + 3_768_320 + 2_098_176 + 1_025_000 + 1_001_000
    assert f"Total params: {total:,}" in r.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("summary", "resnet"), 2, "invalid choice: 'resnet'"),
        (("summary",), 2, "the following arguments are required: model"),
        (("--repeat", "x"), 2, "invalid int value: 'x'"),
        (("frobnicate",), 2, "invalid choice"),
        (("summary", "vgg11", "--image-size", "8"), 1, "pycnnrnn: error: --image-size must be at least 32"),
        (("summary", "vgg11", "--num-classes", "0"), 1, "--num-classes must be positive, got 0"),
        (("--repeat", "0"), 1, "pycnnrnn: error: --repeat must be >= 1, got 0"),
        (("bench", "--dir", "/nonexistent/bench"), 1, "no benchmark suites found at /nonexistent/bench"),
        (
            ("--no-summary", "--weights", "/nonexistent/vgg16.npz"),
            1,
            "weights file not found: /nonexistent/vgg16.npz",
        ),
    ],
)
def test_user_errors_exit_codes_without_traceback(args, code, message):
    r = cli(*args)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_wrong_weights_file_is_a_user_error(tmp_path):
    import numpy as np

    path = tmp_path / "w.npz"
    np.savez(path, **{"features.0.weight": np.zeros((1, 1))})
    r = cli("--no-summary", "--weights", str(path))
    assert r.returncode == 1
    assert "missing keys" in r.stderr and "Traceback" not in r.stderr


def test_demo_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from pycnnrnn.cli import main\n"
        "sys.exit(main(['--repeat', '1', '--no-summary']))\n"
    )
    r = run_python(code, check=False)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "random (seed 0" in out
    assert "features.0     Conv2d             [1, 64, 224, 224]" in out
    assert "classifier.6   Linear             [1, 1000]" in out
    assert "qst_encoder (Embedding + LSTM)" in out and "whole model" in out
    assert "torch is not installed: comparison skipped" in out
    assert "Q: what color is the circle?" in out and "A: purple" in out  # the trained small VQA model


@pytest.mark.slow
@pytest.mark.torch
def test_demo_with_torch():
    pytest.importorskip("torch")
    r = cli("--repeat", "1", timeout=600)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Total params: 138,357,544" in out
    rows = {
        m.group(1): (float(m.group(2)), float(m.group(3)))
        for m in re.finditer(r"^  (VGG16|VQA)\s+(\S+)\s+(\S+)\s+\S+\s+\S+\s+\S+x$", out, re.M)
    }
    assert set(rows) == {"VGG16", "VQA"}, out
    for name, (diff, scale) in rows.items():
        assert diff <= 1e-4 * max(scale, 1.0), (name, diff, scale)


@pytest.mark.torch
def test_bench_runs_one_case_and_writes_the_ratio_table(tmp_path):
    import json
    from pathlib import Path

    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    bench_dir = Path(__file__).resolve().parents[1] / "bench"
    out = tmp_path / "ratios.json"
    r = cli("bench", "--dir", str(bench_dir), "--quick", "-k", "test_forward and N1-k2s2", "--json", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "test_forward[N1-k2s2] PASSED" in r.stdout  # the progress display
    rows = json.loads(out.read_text())["rows"]
    impls = {row["impl"] for row in rows}
    assert impls == {"pycnnrnn", "torch", "onnxruntime"}, rows
    assert all(row["median_ms"] > 0 for row in rows)
    assert all(row["ratio_vs_pycnnrnn"] > 0 for row in rows if row["impl"] != "pycnnrnn")
