"""``convert(model)``: swap torch.nn layers for the pycnnrnn drop-ins, in place.

The swap changes each module's class to the pycnnrnn subclass of the same torch class, so
parameters (and their identity: optimizers, DDP buckets and hooks keep working), buffers,
hooks and the state_dict are untouched. Only modules whose type is exactly the torch class are
swapped (a user subclass may override forward); modules on devices or dtypes the kernels do not
serve are left alone and listed with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from . import nn as pnn

SWAPS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv2d: pnn.Conv2d,
    nn.MaxPool2d: pnn.MaxPool2d,
    nn.MaxUnpool2d: pnn.MaxUnpool2d,
    nn.Linear: pnn.Linear,
    nn.LSTM: pnn.LSTM,
    nn.GRU: pnn.GRU,
    nn.RNN: pnn.RNN,
    nn.LSTMCell: pnn.LSTMCell,
    nn.GRUCell: pnn.GRUCell,
    nn.RNNCell: pnn.RNNCell,
}


@dataclass
class ConvertReport:
    swapped: list[tuple[str, str]] = field(default_factory=list)  # (qualified name, torch class)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (name, class, reason)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, cls in self.swapped:
            out[cls] = out.get(cls, 0) + 1
        return out

    def __str__(self) -> str:
        counts = ", ".join(f"{n} {c}" for c, n in self.counts().items()) or "nothing"
        lines = [f"pycnnrnn.torch.convert: swapped {len(self.swapped)} modules ({counts})"]
        lines += [f"  {name or '<root>'}: {cls} -> pycnnrnn.torch.nn.{cls}" for name, cls in self.swapped]
        lines += [f"  kept {name or '<root>'} ({cls}): {why}" for name, cls, why in self.skipped]
        return "\n".join(lines)


def _unsupported(m: nn.Module) -> str | None:
    for p in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
        if p.device.type != "cpu":
            return f"on {p.device} (the pycnnrnn torch ops run on CPU tensors)"
        if p.dtype not in (torch.float32, torch.float64):
            return f"dtype {p.dtype} (the kernels take float32 and float64)"
    return None


def convert(model: nn.Module) -> tuple[nn.Module, ConvertReport]:
    """Swap every nn.Conv2d, MaxPool2d, MaxUnpool2d, Linear, LSTM, GRU, RNN and cell in ``model``
    (including ``model`` itself) for its pycnnrnn drop-in, in place. Returns (model, report)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert expects a torch.nn.Module, got {type(model).__name__}")
    report = ConvertReport()
    for name, m in model.named_modules():
        target = SWAPS.get(type(m))
        if target is None:
            continue
        why = _unsupported(m)
        if why is not None:
            report.skipped.append((name, type(m).__name__, why))
            continue
        cls = type(m).__name__
        m.__class__ = target
        report.swapped.append((name, cls))
    return model, report
