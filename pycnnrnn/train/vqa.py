"""``python -m pycnnrnn train``: train the small VQA model on pycnnrnn kernels, then on plain torch.

The same model (pycnnrnn.train.model.VqaModel), the same initial weights, the same batches:
once with every Conv2d, MaxPool2d, Linear and LSTM swapped for pycnnrnn's (all conv, pool,
LSTM and linear work runs in pycnnrnn's C++ kernels through torch autograd), once on plain
torch.nn for comparison. Prints a progress bar, the held-out accuracy per epoch (overall and per
question family), the wall-clock ratio, writes a PNG of the curves and (optionally) the trained
weights as the .npz that pycnnrnn.train.infer answers questions with (numpy only).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import scenes
from .cli import add_arguments
from .model import VqaConfig, VqaModel

__all__ = ["add_arguments", "build_model", "evaluate", "main", "run", "save_weights", "train"]


# ---- progress bar: tqdm when installed, else a plain one ------------------------------------------
class _Bar:
    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.n, self.t0, self.postfix = total, desc, 0, time.perf_counter(), ""
        self.tty = sys.stderr.isatty()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.tty or self.n == self.total:
            self._draw()

    def set_postfix_str(self, s: str) -> None:
        self.postfix = s

    def _draw(self) -> None:
        width = 30
        done = int(width * self.n / max(self.total, 1))
        dt = time.perf_counter() - self.t0
        line = f"{self.desc} |{'#' * done}{'.' * (width - done)}| {self.n}/{self.total} [{dt:5.1f}s] {self.postfix}"
        sys.stderr.write(
            ("\r" if self.tty else "") + line + ("" if self.tty and self.n < self.total else "\n")
        )
        sys.stderr.flush()

    def close(self) -> None:
        pass


def progress(total: int, desc: str):
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
    except ImportError:
        return _Bar(total, desc)


# ---- data -----------------------------------------------------------------------------------------
@dataclass
class Split:
    images: torch.Tensor  # float32 (S, 3, H, W), normalised
    data: scenes.VqaData

    @classmethod
    def make(cls, n_scenes: int, seed: int, size: int = 32) -> Split:
        d = scenes.make_dataset(n_scenes, seed=seed, size=size)
        return cls(torch.from_numpy(scenes.normalize_images(d.images)), d)

    def batch(self, idx: np.ndarray):
        d = self.data
        return (
            self.images[torch.from_numpy(d.scene[idx])],
            torch.from_numpy(d.questions[idx]),
            torch.from_numpy(d.answers[idx]),
        )


@dataclass
class History:
    backend: str
    accuracy: list[float] = field(default_factory=list)
    family_accuracy: list[dict[str, float]] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)

    @property
    def train_seconds(self) -> float:
        return float(sum(self.epoch_seconds))


def build_model(backend: str, cfg: VqaConfig | None = None, seed: int = 0) -> nn.Module:
    """The VQA model on plain torch ("torch") or with pycnnrnn's modules swapped in ("pycnnrnn")."""
    torch.manual_seed(seed)
    model = VqaModel(cfg)
    if backend == "pycnnrnn":
        from .. import torch as pt

        pt.convert(model, fuse=True)
    elif backend != "torch":
        raise ValueError(f"backend must be 'pycnnrnn' or 'torch', got {backend!r}")
    return model


def make_optimizer(params, lr: float) -> torch.optim.Optimizer:
    """The training loop's optimizer, the same for every backend: Adam as torch's fused CPU
    kernel (one pass over all parameters per step). The default per-tensor loop took 2.3-2.6 ms
    a step on the 456k parameters (fused: 0.28 ms), about a tenth of a training step whichever
    modules run the model."""
    return torch.optim.Adam(params, lr=lr, fused=True)


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 500) -> tuple[float, dict[str, float]]:
    model.eval()
    n = len(split.data)
    pred = np.empty(n, dtype=np.int64)
    for i in range(0, n, batch_size):
        idx = np.arange(i, min(i + batch_size, n))
        img, q, _ = split.batch(idx)
        pred[idx] = model(img, q).argmax(1).numpy()
    ok = pred == split.data.answers
    fam = {f: float(ok[split.data.family == k].mean()) for k, f in enumerate(scenes.FAMILIES)}
    return float(ok.mean()), fam


def train(
    backend: str,
    train_split: Split,
    test_split: Split,
    *,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    cfg: VqaConfig | None = None,
    target: float | None = None,
    checkpoint: str | Path | None = None,
    log=print,
) -> tuple[nn.Module, History]:
    """Adam (make_optimizer) + cross-entropy over shuffled batches (the same order for every
    backend); held-out accuracy after each epoch. Stops early once ``target`` accuracy is reached. ``checkpoint``:
    an .npz path rewritten whenever the held-out accuracy improves."""
    model = build_model(backend, cfg, seed)
    opt = make_optimizer(model.parameters(), lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(epochs // 2, 1), gamma=0.3)
    hist = History(backend)
    n = len(train_split.data)
    steps = n // batch_size
    for epoch in range(epochs):
        model.train()
        perm = np.random.default_rng(seed * 1000 + epoch).permutation(n)
        torch.manual_seed(seed * 1000 + epoch)  # dropout masks: identical across backends
        bar = progress(steps, f"{backend:>8} epoch {epoch + 1}/{epochs}")
        t0 = time.perf_counter()
        total = 0.0
        for s in range(steps):
            img, q, a = train_split.batch(perm[s * batch_size : (s + 1) * batch_size])
            loss = nn.functional.cross_entropy(model(img, q), a)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            bar.update(1)
            if s % 20 == 0:
                bar.set_postfix_str(f"loss {total / (s + 1):.3f}")
        bar.close()
        sched.step()
        hist.epoch_seconds.append(time.perf_counter() - t0)
        acc, fam = evaluate(model, test_split)
        hist.loss.append(total / max(steps, 1))
        hist.accuracy.append(acc)
        hist.family_accuracy.append(fam)
        fams = " ".join(f"{k} {v:.2f}" for k, v in fam.items())
        log(
            f"[{backend}] epoch {epoch + 1}: loss {hist.loss[-1]:.3f}, held-out accuracy {acc:.3f} "
            f"({fams}), {hist.epoch_seconds[-1]:.1f} s"
        )
        if checkpoint is not None and acc >= max(hist.accuracy):
            save_weights(model, checkpoint, model.cfg, acc)
        if target is not None and acc >= target:
            log(f"[{backend}] reached {target:.0%} held-out accuracy after {epoch + 1} epochs")
            break
    return model, hist


# ---- outputs -------------------------------------------------------------------------------------
def save_weights(model: nn.Module, path: str | Path, cfg: VqaConfig, accuracy: float) -> Path:
    """The state_dict as float32 arrays plus the config, vocabulary and answers (numpy .npz)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    meta = {
        "config": cfg.to_dict(),
        "vocab": list(scenes.VOCAB),
        "answers": list(scenes.ANSWERS),
        "max_len": scenes.MAX_LEN,
        "held_out_accuracy": accuracy,
    }
    np.savez_compressed(path, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return path


def plot(histories: list[History], path: str | Path, log=print) -> Path | None:
    path = Path(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from .png import line_chart

        series = {f"{h.backend} accuracy": h.accuracy for h in histories}
        series.update({f"{h.backend} loss/2": [v / 2 for v in h.loss] for h in histories})
        line_chart(path, series)
        names = ["blue", "orange", "green", "red"]
        legend = ", ".join(f"{names[i]} = {k}" for i, k in enumerate(series))
        log(f"matplotlib is not installed: wrote a plain chart to {path} (x: epoch, y: 0..1; {legend})")
        return path
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for h in histories:
        ep = range(1, len(h.accuracy) + 1)
        ax[0].plot(ep, h.accuracy, marker="o", label=h.backend)
        ax[1].plot(ep, h.loss, marker="o", label=h.backend)
    ax[0].set(xlabel="epoch", ylabel="held-out accuracy", ylim=(0, 1))
    ax[1].set(xlabel="epoch", ylabel="training loss")
    for a in ax:
        a.legend()
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    log(f"wrote {path}")
    return path


def run(args: argparse.Namespace, log=print) -> dict:
    import pycnnrnn

    if args.threads:
        pycnnrnn.set_num_threads(args.threads)
    torch.set_num_threads(pycnnrnn.get_num_threads())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = VqaConfig(fusion=args.fusion)
    t0 = time.perf_counter()
    train_split = Split.make(args.scenes, seed=args.seed * 2 + 1, size=cfg.image_size)
    test_split = Split.make(args.test_scenes, seed=args.seed * 2 + 2, size=cfg.image_size)
    log(
        f"data: {len(train_split.data)} training and {len(test_split.data)} held-out questions about "
        f"{args.scenes} + {args.test_scenes} generated scenes ({time.perf_counter() - t0:.1f} s); "
        f"{pycnnrnn.get_num_threads()} threads, ISA {pycnnrnn.cpu_isa()}"
    )
    kw = dict(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        cfg=cfg,
        target=args.target,
    )
    model, hist = train("pycnnrnn", train_split, test_split, log=log, checkpoint=out / "best.npz", **kw)
    histories = [hist]
    result = {"pycnnrnn": {"accuracy": hist.accuracy[-1], "seconds": hist.train_seconds}}
    log(f"pycnnrnn: held-out accuracy {hist.accuracy[-1]:.3f} after {hist.train_seconds:.1f} s of training")
    weights = out / "vqa_small.npz"
    save_weights(model, weights, cfg, hist.accuracy[-1])
    if args.save_weights:
        save_weights(model, args.save_weights, cfg, hist.accuracy[-1])
        log(f"wrote {args.save_weights}")
    if not args.no_compare:
        _, th = train("torch", train_split, test_split, log=log, **kw)
        histories.append(th)
        per_epoch = [a / b for a, b in zip(th.epoch_seconds, hist.epoch_seconds)]
        ratio = th.train_seconds / hist.train_seconds
        log(
            f"torch:    held-out accuracy {th.accuracy[-1]:.3f} after {th.train_seconds:.1f} s of training\n"
            f"accuracy difference pycnnrnn - torch: {hist.accuracy[-1] - th.accuracy[-1]:+.3f}\n"
            f"wall-clock ratio torch / pycnnrnn: {ratio:.2f}x (per epoch: "
            + ", ".join(f"{r:.2f}" for r in per_epoch)
            + ")"
        )
        result["torch"] = {"accuracy": th.accuracy[-1], "seconds": th.train_seconds}
        result["speedup"] = ratio
    plot(histories, out / "vqa_curves.png", log=log)
    (out / "history.json").write_text(json.dumps([h.__dict__ for h in histories], indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pycnnrnn train", description=__doc__.split("\n")[0])
    add_arguments(p)
    run(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
