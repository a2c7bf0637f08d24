"""The numpy Module base class: torch.nn.Module's bookkeeping without autograd.

Parameters are plain ``np.ndarray`` (float32 by default). Assigning an ndarray to a public
attribute of a Module registers it as a parameter (``self.weight = np.empty(...)``), like
assigning an ``nn.Parameter`` in torch; ``register_parameter(name, None)`` keeps an optional
parameter (e.g. ``bias=False``) in the registry; ``register_buffer`` registers non-trainable
state; names starting with ``_`` are ordinary attributes. Submodules register themselves the
same way. ``state_dict()`` keys follow torch's dotted names, so torch weights load as they are.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Module", "IncompatibleKeys", "RemovableHandle"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class IncompatibleKeys(NamedTuple):
    """What load_state_dict(strict=False) skipped (torch's _IncompatibleKeys)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


class RemovableHandle:
    """Returned by register_forward_hook / register_forward_pre_hook; .remove() unhooks."""

    _ids = itertools.count()

    def __init__(self, hooks: dict):
        self._hooks = hooks
        self.id = next(self._ids)

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def to_numpy(value: Any, name: str) -> np.ndarray:
    """np.asarray that also takes torch tensors needing grad or living on a GPU."""
    if hasattr(value, "detach") and hasattr(value, "cpu") and not isinstance(value, np.ndarray):
        value = value.detach().cpu()
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    try:
        return np.asarray(value)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name}: cannot convert {type(value).__name__} to a numpy array ({e})") from None


def _addindent(s: str, num_spaces: int) -> str:
    lines = s.split("\n")
    if len(lines) == 1:
        return s
    first = lines.pop(0)
    return first + "\n" + "\n".join(num_spaces * " " + line for line in lines)


class Module:
    """Base class of every pycnnrnn.nn layer; subclasses define forward()."""

    training: bool

    def __init__(self) -> None:
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent_buffers", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "_forward_pre_hooks", OrderedDict())
        object.__setattr__(self, "_frozen", False)

    # ------------------------------------------------------------------ registration
    def register_parameter(self, name: str, param: np.ndarray | None) -> None:
        """Register ``param`` (an ndarray, or None for an absent optional one) as ``name``."""
        self._check_name(name, "parameter")
        if param is not None and not isinstance(param, np.ndarray):
            raise TypeError(f"parameter {name!r} must be a numpy array or None, got {type(param).__name__}")
        if name in self._parameters:  # a new value keeps its place in state_dict(), as in torch
            self._parameters[name] = param
            return
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: np.ndarray | None, persistent: bool = True) -> None:
        """Register non-trainable state (in state_dict unless persistent=False)."""
        self._check_name(name, "buffer")
        if tensor is not None and not isinstance(tensor, np.ndarray):
            raise TypeError(f"buffer {name!r} must be a numpy array or None, got {type(tensor).__name__}")
        self._forget(name)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent_buffers.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register a child module (torch's add_module / register_module)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(
                f"module {name!r} must be a pycnnrnn.nn.Module or None, got {type(module).__name__}"
            )
        self._check_name(name, "module")
        self._forget(name)
        self._modules[name] = module

    register_module = add_module

    def _check_name(self, name: str, kind: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {kind} before Module.__init__() call")
        if not isinstance(name, str):
            raise TypeError(f"{kind} name must be a str, got {type(name).__name__}")
        if name == "" or "." in name:
            raise KeyError(f"{kind} name can't be empty or contain '.', got {name!r}")

    def _forget(self, name: str) -> None:
        for d in (self._parameters, self._buffers, self._modules):
            d.pop(name, None)
        self._non_persistent_buffers.discard(name)
        self.__dict__.pop(name, None)

    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__ and not name.startswith("_"):
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() call")
        if name.startswith("_") or name == "training":
            object.__setattr__(self, name, value)
        elif isinstance(value, Module):
            self.add_module(name, value)
        elif name in self._buffers:
            self.register_buffer(name, value, name not in self._non_persistent_buffers)
        elif isinstance(value, np.ndarray) or (value is None and name in self._parameters):
            self.register_parameter(name, value)
        elif value is None and name in self._modules:
            self._modules[name] = None
        else:
            for d in (self._parameters, self._modules):
                d.pop(name, None)
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: look in the registries.
        d = self.__dict__
        for reg in ("_parameters", "_buffers", "_modules"):
            if reg in d and name in d[reg]:
                return d[reg][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        for reg in (self._parameters, self._buffers, self._modules):
            if name in reg:
                del reg[name]
                self._non_persistent_buffers.discard(name)
                return
        object.__delattr__(self, name)

    def __dir__(self):
        return sorted(
            set(super().__dir__()) | set(self._parameters) | set(self._buffers) | set(self._modules)
        )

    # ------------------------------------------------------------------ traversal
    def named_modules(self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True):
        """Yield (dotted name, module) for self and every descendant, each module once."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, module in self._modules.items():
            if module is None:
                continue
            sub = prefix + ("." if prefix else "") + name
            yield from module.named_modules(memo, sub, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen = set()
        for name, module in self._modules.items():
            if module is not None and id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry: str, prefix: str, recurse: bool, remove_duplicate: bool):
        mods = (
            self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
            if recurse
            else [(prefix, self)]
        )
        seen: set[int] = set()
        for mod_prefix, module in mods:
            for name, value in getattr(module, registry).items():
                if value is None:
                    continue
                if remove_duplicate:
                    if id(value) in seen:
                        continue
                    seen.add(id(value))
                yield mod_prefix + ("." if mod_prefix else "") + name, value

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        """Yield (dotted name, array); a parameter shared by several modules comes once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[np.ndarray]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[np.ndarray]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def named_trainable_parameters(self):
        """(name, array) of the parameters not frozen by requires_grad_(False)."""
        frozen = {id(p) for m in self.modules() if m._frozen for p in m._parameters.values() if p is not None}
        for name, p in self.named_parameters():
            if id(p) not in frozen:
                yield name, p

    def get_submodule(self, target: str) -> Module:
        mod: Module = self
        for item in target.split(".") if target else []:
            if item not in mod._modules or mod._modules[item] is None:
                raise AttributeError(f"{mod._get_name()} has no submodule {item!r} (looking up {target!r})")
            mod = mod._modules[item]
        return mod

    def apply(self, fn: Callable[[Module], None]) -> Module:
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ state
    def state_dict(self, destination=None, prefix: str = "", keep_vars: bool = False) -> OrderedDict:
        """OrderedDict of parameters and persistent buffers by torch's dotted key names.
        Values are the module's own arrays (like torch's detached tensors: shared storage)."""
        if destination is None:
            destination = OrderedDict()
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers:
                destination[prefix + name] = b
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination, prefix + name + ".", keep_vars)
        return destination

    def _state_slots(self) -> OrderedDict:
        """key -> (module, registry dict, local name) for every state_dict entry."""
        slots: OrderedDict = OrderedDict()
        for mod_prefix, module in self.named_modules(remove_duplicate=False):
            pre = mod_prefix + ("." if mod_prefix else "")
            for name, p in module._parameters.items():
                if p is not None:
                    slots[pre + name] = (module, module._parameters, name)
            for name, b in module._buffers.items():
                if b is not None and name not in module._non_persistent_buffers:
                    slots[pre + name] = (module, module._buffers, name)
        return slots

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> IncompatibleKeys:
        """Copy values (anything np.asarray reads, incl. CPU torch tensors) into the
        parameters and buffers, in place and cast to each one's dtype.

        strict=True: missing or unexpected keys raise KeyError; a shape mismatch always raises
        ValueError. Nothing is modified unless every entry checks out."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping of str to arrays, got {type(state_dict).__name__}")
        slots = self._state_slots()
        missing = [k for k in slots if k not in state_dict]
        unexpected = [k for k in state_dict if k not in slots]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: {', '.join(map(repr, missing))}")
            if unexpected:
                parts.append(f"unexpected keys: {', '.join(map(repr, unexpected))}")
            raise KeyError(f"Error(s) in loading state_dict for {self._get_name()}: " + "; ".join(parts))
        updates = []
        errors = []
        for key, (_module, registry, name) in slots.items():
            if key not in state_dict:
                continue
            value = to_numpy(state_dict[key], key)
            target = registry[name]
            if value.shape != target.shape:
                errors.append(f"{key}: expected shape {target.shape}, got {value.shape}")
                continue
            if value.dtype.kind not in "biuf":
                errors.append(f"{key}: expected a numeric array, got dtype {value.dtype}")
                continue
            updates.append((registry, name, target, value))
        if errors:
            raise ValueError(f"Error(s) in loading state_dict for {self._get_name()}: " + "; ".join(errors))
        for registry, name, target, value in updates:
            if target.flags.writeable:
                np.copyto(target, value, casting="unsafe")
            else:  # a prepack() snapshot: the loaded values become a new (writable) array
                registry[name] = value.astype(target.dtype, copy=True)
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ modes and dtypes
    def train(self, mode: bool = True) -> Module:
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode): mode must be a bool, got {type(mode).__name__}")
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def prepack(self) -> Module:
        """Prepare every layer for inference: eval mode, and each Conv2d's weight (and each
        recurrent layer's weight_ih and weight_hh) replaced by a read-only snapshot whose derived
        forms (the Winograd transform; the packed operands) are built on the first forward call and
        reused by every later one, as onnxruntime does for a session's initializers. In-place
        writes to a snapshot raise; assigning a new weight array or load_state_dict() drops the
        prepared form (the layer then runs on the new array as before). Outputs are
        bit-identical to the unprepared model's (recurrent layers at batch 1 with a W_hh over 3
        MiB: equal to float32 rounding, see ops.rnn.PreparedRnnWeight). Returns self."""
        self.eval()
        for m in self.modules():
            if hasattr(m, "_prepack"):
                m._prepack()
        return self

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Mark parameters trainable or frozen (only reported by summary: numpy has no autograd)."""
        for m in self.modules():
            object.__setattr__(m, "_frozen", not requires_grad)
        return self

    def to(self, dtype) -> Module:
        """Cast every floating parameter and buffer to float32 or float64 (shared ones stay shared)."""
        dt = np.dtype(dtype)
        if dt not in _FLOAT_DTYPES:
            raise TypeError(f"to(dtype): dtype must be float32 or float64, got {dt}")
        converted: dict[int, np.ndarray] = {}
        for m in self.modules():
            for reg in (m._parameters, m._buffers):
                for name, v in reg.items():
                    if v is None or v.dtype.kind != "f" or v.dtype == dt:
                        continue
                    if id(v) not in converted:
                        converted[id(v)] = v.astype(dt)
                    reg[name] = converted[id(v)]
        return self

    def float(self) -> Module:
        return self.to(np.float32)

    def double(self) -> Module:
        return self.to(np.float64)

    # ------------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(
            f'Module [{type(self).__name__}] is missing the required "forward" function'
        )

    def register_forward_hook(self, hook: Callable) -> RemovableHandle:
        """hook(module, args, output) runs after forward; a non-None result replaces output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_forward_pre_hook(self, hook: Callable) -> RemovableHandle:
        """hook(module, args) runs before forward; a non-None result replaces args."""
        handle = RemovableHandle(self._forward_pre_hooks)
        self._forward_pre_hooks[handle.id] = hook
        return handle

    def __call__(self, *args, **kwargs):
        for hook in list(self._forward_pre_hooks.values()):
            result = hook(self, args)
            if result is not None:
                args = result if isinstance(result, tuple) else (result,)
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    # ------------------------------------------------------------------ printing
    def _get_name(self) -> str:
        return type(self).__name__

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        # torch.nn.Module.__repr__, line for line.
        extra_lines = self.extra_repr().split("\n") if self.extra_repr() else []
        child_lines = [f"({key}): {_addindent(repr(module), 2)}" for key, module in self._modules.items()]
        lines = extra_lines + child_lines
        main_str = self._get_name() + "("
        if lines:
            if len(extra_lines) == 1 and not child_lines:
                main_str += extra_lines[0]
            else:
                main_str += "\n  " + "\n  ".join(lines) + "\n"
        return main_str + ")"
