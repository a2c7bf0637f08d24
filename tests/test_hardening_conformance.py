"""`python -m pycnnrnn conformance`: writes conformance.json/.md, prints the table, every row
passes on this machine's native path; without torch it fails with a clear one-line error."""

from __future__ import annotations

import json
import os

import pytest
from helpers import run_python

import pycnnrnn


@pytest.mark.torch
def test_conformance_cli_writes_and_prints_the_matrix(tmp_path):
    isa = pycnnrnn.cpu_isa()
    code = (
        "import sys; from pycnnrnn.cli import main; "
        f"sys.exit(main(['conformance', '--out', {str(tmp_path)!r}, '--cases', '1', '--isa', {isa!r}]))"
    )
    r = run_python(code, timeout=600, check=False)
    assert r.returncode == 0, f"rc={r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-3000:]}"
    assert "| op | class | dtype | ISA |" in r.stdout
    data = json.loads((tmp_path / "conformance.json").read_text())
    md = (tmp_path / "conformance.md").read_text()
    rows = data["rows"]
    assert rows and all(row["passed"] for row in rows), [row for row in rows if not row["passed"]]
    assert {row["isa"] for row in rows} == {isa}
    ops = {row["op"] for row in rows}
    assert {"conv2d", "max_pool2d", "linear"} <= ops
    classes = {(row["op"], row["class"]) for row in rows}
    for c in (
        "basic",
        "stride",
        "padding-same",
        "padding_mode",
        "dilation",
        "groups",
        "depthwise",
        "backward",
    ):
        assert ("conv2d", c) in classes
    for c in ("basic", "padding", "dilation", "ceil", "indices", "backward"):
        assert ("max_pool2d", c) in classes
    if "rnn" in ops:
        for c in ("lstm/layers", "gru/bidirectional", "lstm/proj", "rnn/lengths", "lstm/backward"):
            assert ("rnn", c) in classes
    assert {row["dtype"] for row in rows} == {"float32", "float64"}
    assert f"{len(rows)}/{len(rows)} rows pass" in md
    assert all(row["cases"] >= 1 for row in rows)


def test_conformance_without_torch_is_a_clear_error(tmp_path):
    code = (
        "import sys; sys.modules['torch'] = None; from pycnnrnn.cli import main; "
        f"sys.exit(main(['conformance', '--out', {str(tmp_path)!r}]))"
    )
    r = run_python(code, timeout=120, check=False, PYCNNRNN_BLOCK_TORCH="1")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "torch" in r.stderr and "not installed" in r.stderr and "Traceback" not in r.stderr
    assert not os.path.exists(tmp_path / "conformance.json")
