"""Arguments of ``python -m pycnnrnn train`` (argparse only: building the parser never imports torch)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, default=30, help="maximum epochs per backend (default 30)")
    p.add_argument(
        "--scenes", type=int, default=10000, help="training scenes, 5 questions each (default 10000)"
    )
    p.add_argument("--test-scenes", type=int, default=500, help="held-out scenes (default 500)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="threads for torch and pycnnrnn (default: all)")
    p.add_argument(
        "--target",
        type=float,
        default=0.9,
        help="stop a backend once its held-out accuracy reaches this (default 0.9; 1.1 = never)",
    )
    p.add_argument(
        "--fusion",
        choices=("product", "concat"),
        default="product",
        help="img * qst (default, the tutorial's) or cat(img, qst)",
    )
    p.add_argument("--no-compare", action="store_true", help="skip the plain-torch comparison run")
    p.add_argument("--out", default="vqa_train_out", help="folder for the plot and the weights")
    p.add_argument("--save-weights", default=None, help="also write the trained weights (.npz) here")


def run_command(args: argparse.Namespace) -> int:
    """The CLI entry: needs torch (ImportError otherwise, reported on one line by the CLI)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ImportError("python -m pycnnrnn train needs torch (pip install 'pycnnrnn[torch]')") from None
    from .vqa import run

    run(args)
    return 0
