"""Sequential and ModuleList containers."""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Iterable, Iterator

from .activation import ReLU
from .conv import Conv2d
from .module import Module
from .pooling import MaxPool2d

__all__ = ["ModuleList", "Sequential"]


class _IndexedContainer(Module):
    def _abs_index(self, idx) -> int:
        n = len(self._modules)
        i = operator.index(idx)
        if not -n <= i < n:
            raise IndexError(f"index {idx} is out of range for {self._get_name()} of length {n}")
        return i % n

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            items = list(self._modules.items())[idx]
            return self._from_items(items)
        return list(self._modules.values())[self._abs_index(idx)]

    def __setitem__(self, idx, module: Module) -> None:
        key = list(self._modules.keys())[self._abs_index(idx)]
        self.add_module(key, module)

    def __delitem__(self, idx) -> None:
        keys = list(self._modules.keys())
        doomed = keys[idx] if isinstance(idx, slice) else [keys[self._abs_index(idx)]]
        for k in doomed:
            del self._modules[k]
        # torch renumbers the remaining children 0..n-1 when they were numbered.
        if all(k.isdigit() for k in self._modules):
            mods = list(self._modules.values())
            self._modules.clear()
            for i, m in enumerate(mods):
                self._modules[str(i)] = m

    def append(self, module: Module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]):
        for m in modules:
            self.append(m)
        return self


class Sequential(_IndexedContainer):
    """Chain of modules: Sequential(m0, m1, ...) or Sequential(OrderedDict(name=module))."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for key, module in args[0].items():
                self.add_module(key, module)
        else:
            for idx, module in enumerate(args):
                self.add_module(str(idx), module)

    def _from_items(self, items):
        return type(self)(OrderedDict(items))

    def forward(self, input):
        modules = list(self._modules.values())
        i = 0
        while i < len(modules):
            if (
                i + 2 < len(modules)
                and _fusable_conv_relu(modules[i], modules[i + 1])
                and _fusable_max_pool2x2(modules[i + 2])
            ):
                pooled = modules[i]._forward_relu_max_pool2x2(input)  # Conv2d -> ReLU -> MaxPool2d(2)
                if pooled is not None:  # (None: an output below 2x2, left to MaxPool2d to report)
                    input = pooled
                    i += 3
                    continue
            if i + 1 < len(modules) and _fusable_conv_relu(modules[i], modules[i + 1]):
                input = modules[i].forward_relu(input)  # Conv2d -> ReLU in one pass
                i += 2
                continue
            input = modules[i](input)
            i += 1
        return input


def _fusable_max_pool2x2(pool) -> bool:
    """A MaxPool2d of a 2x2 window, stride 2, no padding or dilation, floor, without indices,
    subclassed forward or hooks: pooled in the convolution's output stage (the same array)."""

    def as_pair(v):
        return (v, v) if isinstance(v, int) else tuple(v)

    return (
        isinstance(pool, MaxPool2d)
        and type(pool).forward is MaxPool2d.forward
        and not (pool._forward_hooks or pool._forward_pre_hooks)
        and as_pair(pool.kernel_size) == (2, 2)
        and as_pair(pool.stride) == (2, 2)
        and as_pair(pool.padding) == (0, 0)
        and as_pair(pool.dilation) == (1, 1)
        and not pool.ceil_mode
        and not pool.return_indices
    )


def _fusable_conv_relu(first, second) -> bool:
    """A Conv2d followed by a ReLU, neither with a subclassed forward nor hooks: running them
    fused gives the same array (the conv output is not observable in between)."""
    return (
        isinstance(first, Conv2d)
        and type(first).forward is Conv2d.forward
        and isinstance(second, ReLU)
        and type(second).forward is ReLU.forward
        and not (first._forward_hooks or first._forward_pre_hooks)
        and not (second._forward_hooks or second._forward_pre_hooks)
    )


class ModuleList(_IndexedContainer):
    def __init__(self, modules: Iterable[Module] | None = None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def _from_items(self, items):
        return type(self)(m for _, m in items)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward(); iterate over it instead")
