"""The command line: ``python -m pycnnrnn`` (the demo) and its subcommands.

Subcommands live in one registry, so adding one is a small, additive edit: write
``add_args(parser)`` and ``run(args) -> int`` (import heavy modules inside run) and add a
``Command`` to ``COMMANDS`` below (or call ``register`` from a module imported here).

Exit codes: 0 success; 1 a runtime error the user can fix (bad file, bad value, missing
optional package), printed as one line without a traceback; 2 bad command-line usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass


class UserError(Exception):
    """An error caused by the user's input: reported on one line, exit code 1."""


@dataclass(frozen=True)
class Command:
    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str = ""


COMMANDS: dict[str, Command] = {}


def register(name: str, command: Command) -> None:
    if name in COMMANDS:
        raise ValueError(f"CLI subcommand {name!r} is already registered")
    COMMANDS[name] = command


# --------------------------------------------------------------------------- summary
def _summary_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", choices=["vgg11", "vgg13", "vgg16", "vgg19", "vqa"], help="model to summarise")
    p.add_argument(
        "--mode",
        choices=["table", "tree"],
        default="table",
        help="torchsummary table (default) or torchinfo-style tree",
    )
    p.add_argument("--mult-adds", action="store_true", help="tree mode: add a Mult-Adds column")
    p.add_argument("--batch-size", type=int, default=-1, help="batch size to print and count (default -1)")
    p.add_argument(
        "--image-size", type=int, default=224, metavar="N", help="input images are 3xNxN (default 224)"
    )
    p.add_argument("--num-classes", type=int, default=1000, help="VGG classes (default 1000)")
    p.add_argument(
        "--vocab-size",
        type=int,
        default=10000,
        help="VQA question vocabulary size (dataset-dependent; default 10000)",
    )
    p.add_argument("--backbone", choices=["vgg16", "vgg19"], default="vgg16", help="VQA image backbone")


def _summary_run(args: argparse.Namespace) -> int:
    import numpy as np

    from . import models
    from .nn import init
    from .nn.summary import summary

    for name in ("batch_size", "image_size", "num_classes", "vocab_size"):
        v = getattr(args, name)
        if v == 0 or (v < 0 and name != "batch_size"):
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {v}")
    if args.image_size < 32:
        raise UserError(f"--image-size must be at least 32 (five 2x2 poolings), got {args.image_size}")
    init.manual_seed(0)
    image = (3, args.image_size, args.image_size)
    if args.model == "vqa":
        model = models.VqaModel(1024, args.vocab_size, backbone=args.backbone)
        size, dtypes = [image, (30,)], [np.float32, np.int64]
    else:
        model = getattr(models, args.model)(num_classes=args.num_classes)
        size, dtypes = image, None
    summary(model, size, dtypes, batch_size=args.batch_size, mode=args.mode, mult_adds=args.mult_adds)
    return 0


register(
    "summary",
    Command(
        "print a model summary (torchsummary table or torchinfo-style tree)",
        _summary_args,
        _summary_run,
        "Runs one forward pass of the model on random inputs and prints each layer's output shape\n"
        "and parameter count, the totals and the memory estimate.\n"
        "examples:\n  python -m pycnnrnn summary vgg16\n  python -m pycnnrnn summary vqa --mode tree --mult-adds",
    ),
)


def _lazy(module: str, add_args: str, run: str):
    """(add_args, run) for a subcommand whose code lives in ``module`` (relative to pycnnrnn),
    imported only when the subcommand is used."""
    import importlib

    def load(name: str):
        return getattr(importlib.import_module(module, __package__), name)

    return (lambda p: load(add_args)(p)), (lambda args: load(run)(args))


# --------------------------------------------------------------------------- conformance
register(
    "conformance",
    Command(
        "write and print the conformance matrix against torch (needs torch)",
        *_lazy(".conformance", "add_args", "run"),
        "For each op, parameter class, dtype and ISA path (each path in its own interpreter with\n"
        "PYCNNRNN_ISA): the number of seeded cases, pycnnrnn's max error against float64, torch's,\n"
        "and pass/fail under the error gate. Writes conformance.json and conformance.md into --out.\n"
        "examples:\n  python -m pycnnrnn conformance\n  python -m pycnnrnn conformance --out docs --isa avx2",
    ),
)


# --------------------------------------------------------------------------- train
register(
    "train",
    Command(
        "train the small VQA model on generated scenes with pycnnrnn kernels, then plain torch (needs torch)",
        *_lazy(".train.cli", "add_arguments", "run_command"),
        "Generates scenes of coloured shapes and questions about them (colour, shape, count,\n"
        "existence, relations), trains the small VQA model (CNN + LSTM, the basic_vqa structure\n"
        "scaled down) with pycnnrnn's conv, pool, LSTM and linear kernels under torch autograd,\n"
        "then the same model on plain torch; prints held-out accuracy per epoch and the\n"
        "wall-clock ratio, writes the curves (PNG) and the weights (.npz) into --out.\n"
        "examples:\n  python -m pycnnrnn train\n  python -m pycnnrnn train --epochs 3 --no-compare",
    ),
)


# --------------------------------------------------------------------------- bench
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-k", dest="select", metavar="EXPR", help="only the cases matching this pytest -k expression"
    )
    p.add_argument("--quick", action="store_true", help="3 rounds per case, skip the slow cases")
    p.add_argument("--json", dest="json_out", metavar="PATH", help="write the ratio table as JSON here")
    p.add_argument(
        "--dir", dest="bench_dir", metavar="PATH", help="the bench/ directory (default: the checkout's)"
    )


def _bench_run(args: argparse.Namespace) -> int:
    from . import benchmarks

    return benchmarks.run(args.bench_dir, args.select, args.quick, args.json_out)


register(
    "bench",
    Command(
        "run the benchmarks against torch and onnxruntime (from a source checkout)",
        _bench_args,
        _bench_run,
        "Runs bench/ with pytest-benchmark (one line per case as it goes), then prints each\n"
        "peer's median, its ratio to pycnnrnn and the fraction of this machine's FMA peak or\n"
        "copy bandwidth, and writes the ratio table (bench/results/ratios.json by default).\n"
        "examples:\n  python -m pycnnrnn bench --quick\n  python -m pycnnrnn bench -k 'gemm and 2048'",
    ),
)


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    from . import demo

    parser = argparse.ArgumentParser(
        prog="python -m pycnnrnn",
        description=(
            "pycnnrnn: hand-written C++ kernels for conv2d, max pooling and recurrent layers.\n\n"
            "Without a subcommand: run the demo. It prints the VGG16 summary, runs VGG16 and the\n"
            "VQA model (VGG16 image encoder + LSTM question encoder) on an image and a question\n"
            "shipped with the package, prints per-layer times and, when torch is installed,\n"
            "compares with torch on the same weights (max difference and speed ratio)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'python -m pycnnrnn COMMAND --help' for a subcommand's options.",
    )
    demo.add_args(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="subcommands")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=cmd.help,
            description=cmd.description or cmd.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_args(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    from . import demo

    parser = build_parser()
    args = parser.parse_args(argv)
    run = COMMANDS[args.command].run if args.command else demo.run
    try:
        return int(run(args) or 0)
    except (UserError, FileNotFoundError, ValueError, KeyError, ImportError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e  # KeyError's str() adds quotes
        print(f"pycnnrnn: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pycnnrnn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head
        return 0
