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
    fused: list[tuple[str, ...]] = field(default_factory=list)  # (conv, relu[, pool]) names

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
        lines += [f"  fused {' + '.join(names)} (the rest became nn.Identity)" for names in self.fused]
        return "\n".join(lines)


def _unsupported(m: nn.Module) -> str | None:
    for p in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False)):
        if p.device.type != "cpu":
            return f"on {p.device} (the pycnnrnn torch ops run on CPU tensors)"
        if p.dtype not in (torch.float32, torch.float64):
            return f"dtype {p.dtype} (the kernels take float32 and float64)"
    return None


def convert(model: nn.Module, fuse: bool = False) -> tuple[nn.Module, ConvertReport]:
    """Swap every nn.Conv2d, MaxPool2d, MaxUnpool2d, Linear, LSTM, GRU, RNN and cell in ``model``
    (including ``model`` itself) for its pycnnrnn drop-in, in place. Returns (model, report).

    fuse=True also fuses, inside every nn.Sequential, each Conv2d directly followed by a ReLU
    (and then a MaxPool2d without return_indices) into the Conv2d, like
    torch.ao.quantization.fuse_modules: the ReLU and the pooling are replaced by nn.Identity (the
    state_dict keys do not change: they have no parameters), the Conv2d returns their output,
    forward and backward bit-identical to the unfused modules. Modules with hooks are not fused."""
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
    if fuse:
        _fuse_conv_relu_pool(model, report)
    return model, report


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks)


def _fuse_conv_relu_pool(model: nn.Module, report: ConvertReport) -> None:
    for seq_name, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        keys = list(seq._modules)
        i = 0
        while i + 1 < len(keys):
            conv, relu = seq._modules[keys[i]], seq._modules[keys[i + 1]]
            if not (
                type(conv) is pnn.Conv2d
                and not conv.fused_relu
                and type(relu) is nn.ReLU
                and not _hooked(conv)
                and not _hooked(relu)
            ):
                i += 1
                continue
            run = [keys[i], keys[i + 1]]
            pool = seq._modules[keys[i + 2]] if i + 2 < len(keys) else None
            conv.fused_relu = True
            if type(pool) is pnn.MaxPool2d and not pool.return_indices and not _hooked(pool):
                conv.fused_pool = (pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode)
                run.append(keys[i + 2])
            for k in run[1:]:
                seq._modules[k] = nn.Identity()
            prefix = f"{seq_name}." if seq_name else ""
            report.fused.append(tuple(prefix + k for k in run))
            i += len(run)
