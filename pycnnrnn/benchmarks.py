"""`python -m pycnnrnn bench`: run the pytest-benchmark suites in bench/ and print the table.

The suites live in the source checkout's bench/ directory (they are not installed with the
wheel): pycnnrnn, torch and onnxruntime run side by side, one group per case, and the
harness (bench/conftest.py) prints each peer's median, its ratio to pycnnrnn and the fraction
of this machine's FMA peak / copy bandwidth measured in the same run."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def find_bench_dir(explicit: str | None) -> Path:
    candidates = (
        [Path(explicit)]
        if explicit
        else [Path.cwd() / "bench", Path(__file__).resolve().parents[1] / "bench"]
    )
    for c in candidates:
        if (c / "conftest.py").is_file():
            return c
    where = explicit or " or ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"no benchmark suites found at {where}: run from a pycnnrnn source checkout or pass --dir PATH/bench"
    )


def run(
    bench_dir: str | None = None,
    select: str | None = None,
    quick: bool = False,
    json_out: str | None = None,
    extra: list[str] | None = None,
) -> int:
    try:
        import pytest
        import pytest_benchmark  # noqa: F401
    except ImportError:
        print(
            "pycnnrnn bench needs pytest and pytest-benchmark: pip install 'pycnnrnn[bench]' pytest",
            file=sys.stderr,
        )
        return 2
    d = find_bench_dir(bench_dir)
    args = [
        str(d),
        "--benchmark-enable",
        "-p",
        "no:cacheprovider",
        "--benchmark-columns=min,median,rounds",
        "--benchmark-sort=name",
        "-v",
    ]
    if select:
        args += ["-k", select]
    if quick:
        args += [
            "--benchmark-min-rounds=3",
            "--benchmark-max-time=0.2",
            "--benchmark-warmup=on",
            "-m",
            "not slow",
        ]
    if json_out:
        os.environ["PYCNNRNN_BENCH_JSON"] = json_out
    args += extra or []
    # rootdir/config from the checkout so the harness conftest and markers apply
    root = d.parent
    if (root / "pyproject.toml").is_file():
        args += ["--rootdir", str(root), "-c", str(root / "pyproject.toml")]
    rc = pytest.main(args)
    return 0 if rc in (0, 5) else int(rc)
