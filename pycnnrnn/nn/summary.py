"""Model summaries: torchsummary's table (same layout and numbers) and a torchinfo-style tree.

    >>> s = pycnnrnn.summary(vgg16(), (3, 224, 224))            # prints, and returns the summary
    >>> s.total_params, s.trainable_params, s.mult_adds
    >>> s = pycnnrnn.summary(vqa, [(3, 224, 224), (30,)], dtypes=[np.float32, np.int64], mode="tree")

Runs one real forward on a batch of 2 (like torchsummary), with random floats in [0, 1) and
zeros for integer inputs (valid ids for any Embedding), and records every module call through
forward hooks. Unlike torchsummary it handles tuple outputs (LSTM), integer inputs and several
inputs, counts every parameter (not just .weight/.bias) and counts shared parameters once;
a module called again shows "(recursive)" instead of its parameters a second time.

Table numbers follow torchsummary: sizes in MB of 2**20 bytes; "Forward/backward pass size" is
2 x the bytes of every listed output; batch dims print as batch_size (-1) and count as one
sample unless batch_size is given. Bytes use each array's real itemsize (4 for float32).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .container import ModuleList, Sequential
from .module import Module

__all__ = ["LayerCall", "ModelSummary", "summary"]

_RUN_BATCH = 2
_TABLE_WIDTH = 64


@dataclass
class LayerCall:
    """One module invocation seen during the summary's forward pass."""

    module: Module
    name: str  # qualified name in the model ("" for the root)
    class_name: str
    depth: int
    parent: LayerCall | None
    start_order: int
    end_order: int = -1
    index: int = 0  # 1-based among the calls at this depth (torchinfo's depth-idx)
    output_shapes: list[list[int]] = field(default_factory=list)
    output_bytes: int = 0  # with batch dims counted as |batch_size|
    params: int = 0  # own parameters not counted by an earlier call
    recursive: bool = False  # module already called earlier
    mult_adds: int = 0  # per |batch_size| samples
    seconds: float = 0.0
    children: list[LayerCall] = field(default_factory=list)

    @property
    def in_table(self) -> bool:
        # torchsummary hooks every module except containers and the model itself.
        return self.parent is not None and not isinstance(self.module, (Sequential, ModuleList))

    def shape_str(self) -> str:
        return str(self.output_shapes[0]) if len(self.output_shapes) == 1 else str(self.output_shapes)

    def params_str(self, empty: str = "0") -> str:
        if self.recursive and self.params == 0 and _own_param_count(self.module):
            return "(recursive)"
        return f"{self.params:,}" if self.params else empty


@dataclass
class ModelSummary:
    """What summary() measured; str() gives the table (mode="table") or the tree."""

    model_name: str
    calls: list[LayerCall]  # in start order
    total_params: int
    trainable_params: int
    input_bytes: int
    params_bytes: int
    batch_size: int
    mode: str = "table"
    show_mult_adds: bool = False
    depth: int | None = None  # tree: deepest level shown (torchinfo's default is 3)

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def totals(self) -> tuple[int, int]:
        """(total params, trainable params), like torchsummary.summary_string's second value."""
        return self.total_params, self.trainable_params

    @property
    def rows(self) -> list[LayerCall]:
        """torchsummary's rows: leaf-or-custom module calls in completion order."""
        return sorted((c for c in self.calls if c.in_table), key=lambda c: c.end_order)

    @property
    def mult_adds(self) -> int:
        """Multiply-adds of conv, linear and recurrent layers for |batch_size| samples."""
        return sum(c.mult_adds for c in self.calls)

    @property
    def pass_bytes(self) -> int:
        return 2 * sum(c.output_bytes for c in self.rows)

    @staticmethod
    def _mb(n: int) -> float:
        return n / 2**20

    def size_lines(self) -> list[str]:
        total = self.input_bytes + self.pass_bytes + self.params_bytes
        return [
            f"Input size (MB): {self._mb(self.input_bytes):0.2f}",
            f"Forward/backward pass size (MB): {self._mb(self.pass_bytes):0.2f}",
            f"Params size (MB): {self._mb(self.params_bytes):0.2f}",
            f"Estimated Total Size (MB): {self._mb(total):0.2f}",
        ]

    def param_lines(self) -> list[str]:
        return [
            f"Total params: {self.total_params:,}",
            f"Trainable params: {self.trainable_params:,}",
            f"Non-trainable params: {self.non_trainable_params:,}",
        ]

    def table(self) -> str:
        """torchsummary's table, character for character."""
        dash, eq = "-" * _TABLE_WIDTH, "=" * _TABLE_WIDTH
        lines = [dash, "{:>20}  {:>25} {:>15}".format("Layer (type)", "Output Shape", "Param #"), eq]
        for i, c in enumerate(self.rows, 1):
            lines.append("{:>20}  {:>25} {:>15}".format(f"{c.class_name}-{i}", c.shape_str(), c.params_str()))
        lines += [eq, *self.param_lines(), dash, *self.size_lines(), dash]
        return "\n".join(lines)

    def tree(self) -> str:
        """torchinfo-style nested view (depth-idx, output shape, params, optional mult-adds)."""
        cols = ["Output Shape", "Param #"] + (["Mult-Adds"] if self.show_mult_adds else [])
        width = 40 + 25 * len(cols)
        lines = [
            "=" * width,
            f"{'Layer (type:depth-idx)':<40}" + "".join(f"{c:<25}" for c in cols),
            "=" * width,
        ]
        for c in self.calls:
            if self.depth is not None and c.depth > self.depth:
                continue
            if c.parent is None:
                label = c.class_name
            else:
                label = (
                    "│    " * (c.depth - 1)
                    + ("├─" if c.depth == 1 else "└─")
                    + f"{c.class_name}: {c.depth}-{c.index}"
                )
            shape = str(c.output_shapes[0]) if c.output_shapes else "--"  # torchinfo: first output
            folded = self.depth is not None and c.depth == self.depth and c.children
            params = f"{_subtree_params(c):,}" if folded and _subtree_params(c) else c.params_str("--")
            row = f"{label:<39} {shape:<24} {params:<24} "
            if self.show_mult_adds:
                row += f"{(f'{c.mult_adds:,}' if c.mult_adds else '--'):<24}"
            lines.append(row.rstrip())
        madds = self.mult_adds
        unit, div = ("G", 1e9) if madds >= 1e9 else ("M", 1e6)
        lines += [
            "=" * width,
            *self.param_lines(),
            f"Total mult-adds ({unit}): {madds / div:0.2f}",
            "=" * width,
        ]
        lines += [*self.size_lines(), "=" * width]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.tree() if self.mode == "tree" else self.table()

    def __repr__(self) -> str:
        return str(self)


def _subtree_params(call: LayerCall) -> int:
    """Parameters first counted in this call or any call below it (rows folded by depth)."""
    return call.params + sum(_subtree_params(c) for c in call.children)


def _own_param_count(module: Module) -> int:
    return sum(p.size for p in module._parameters.values() if p is not None)


def _arrays(obj) -> list[np.ndarray]:
    """Every ndarray in a (nested) tuple/list/dict output, in order."""
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [a for o in obj for a in _arrays(o)]
    if isinstance(obj, dict):
        return [a for o in obj.values() for a in _arrays(o)]
    return []


def _batch_dim(module: Module, position: int, arr: np.ndarray) -> int:
    # Recurrent layers: output (L, N, H) unless batch_first; h_n / c_n (layers, N, H).
    if hasattr(module, "batch_first") and hasattr(module, "hidden_size") and arr.ndim == 3:
        return 0 if (position == 0 and module.batch_first) else 1
    return 0


def _mult_adds(module: Module, inputs: tuple, arrays: list[np.ndarray]) -> int:
    """Multiply-adds of one call (bias additions not counted)."""
    name = type(module).__name__
    if not arrays:
        return 0
    out = arrays[0]
    if name == "Conv2d":
        w = module.weight
        return int(out.size) * int(np.prod(w.shape[1:]))
    if name == "Linear":
        return int(out.size) * int(module.weight.shape[1])
    if name in ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"):
        # every weight matrix is applied once per (step, batch element)
        steps = int(np.prod(out.shape[:-1]))  # (L, N) or (N,) for cells / unbatched
        per_step = sum(p.size for n, p in module.named_parameters() if "weight" in n)
        directions = 2 if getattr(module, "bidirectional", False) else 1
        return steps * per_step // directions
    return 0


def _make_inputs(input_size, dtypes, rng: np.random.Generator) -> list[np.ndarray]:
    if isinstance(input_size, Sequence) and input_size and all(isinstance(s, Sequence) for s in input_size):
        sizes = [tuple(s) for s in input_size]
    elif isinstance(input_size, Sequence):
        sizes = [tuple(input_size)]
    else:
        raise TypeError(f"input_size must be a tuple of ints or a list of such tuples, got {input_size!r}")
    for s in sizes:
        if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in s):
            raise ValueError(f"input_size entries must be tuples of positive ints (no batch dim), got {s!r}")
    if dtypes is None:
        dtypes = [np.float32] * len(sizes)
    if not isinstance(dtypes, Sequence) or isinstance(dtypes, str):
        dtypes = [dtypes]
    if len(dtypes) != len(sizes):
        raise ValueError(f"dtypes must give one dtype per input ({len(sizes)}), got {len(dtypes)}")
    inputs = []
    for s, dt in zip(sizes, dtypes, strict=True):
        dt = np.dtype(str(dt)[len("torch.") :] if str(dt).startswith("torch.") else dt)  # torch.int64 too
        shape = (_RUN_BATCH, *s)
        if dt.kind == "f":
            inputs.append(rng.random(shape, dtype=np.float64).astype(dt))
        elif dt.kind in "iu":
            inputs.append(np.zeros(shape, dtype=dt))  # id 0 is valid for every Embedding
        else:
            raise TypeError(f"dtypes: inputs must be float or integer, got {dt}")
    return inputs


def summary(
    model: Module,
    input_size=None,
    dtypes=None,
    batch_size: int = -1,
    mode: str = "table",
    *,
    input_data: Sequence[np.ndarray] | np.ndarray | None = None,
    mult_adds: bool = False,
    depth: int | None = None,
    verbose: bool = True,
    seed: int = 0,
) -> ModelSummary:
    """Summarise ``model`` by running it once on random inputs of ``input_size`` (no batch dim;
    a list of sizes for several inputs, with ``dtypes`` one per input, e.g. [np.float32,
    np.int64]) or on ``input_data`` (arrays with a batch dim). mode: "table" (torchsummary) or
    "tree" (torchinfo-style; mult_adds=True adds a Mult-Adds column, depth limits the levels shown). Prints the result unless
    verbose=False, and returns it (str() gives the text)."""
    if not isinstance(model, Module):
        raise TypeError(f"model must be a pycnnrnn.nn.Module, got {type(model).__name__}")
    if mode not in ("table", "tree"):
        raise ValueError(f"mode must be 'table' or 'tree', got {mode!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size == 0:
        raise ValueError(
            f"batch_size must be a non-zero int (-1 prints the batch dim as -1), got {batch_size!r}"
        )
    if input_data is not None:
        inputs = [input_data] if isinstance(input_data, np.ndarray) else list(input_data)
        run_batch = inputs[0].shape[0]
    elif input_size is not None:
        inputs = _make_inputs(input_size, dtypes, np.random.default_rng(seed))
        run_batch = _RUN_BATCH
    else:
        raise ValueError("summary needs input_size (shape without the batch dim) or input_data")
    samples = abs(int(batch_size))

    names = {}
    for name, m in model.named_modules(remove_duplicate=False):
        names.setdefault(id(m), name)
    calls: list[LayerCall] = []
    stack: list[LayerCall] = []
    counted: set[int] = set()
    depth_counts: dict[int, int] = {}
    seen_modules: set[int] = set()
    order = iter(range(1 << 62))

    def pre_hook(module, args):
        parent = stack[-1] if stack else None
        call = LayerCall(
            module, names.get(id(module), "?"), type(module).__name__, len(stack), parent, next(order)
        )
        if parent is not None:
            parent.children.append(call)
            # numbered per depth across the whole model, like torchinfo's depth-idx
            depth_counts[call.depth] = call.index = depth_counts.get(call.depth, 0) + 1
        call.recursive = id(module) in seen_modules
        seen_modules.add(id(module))
        for p in module._parameters.values():
            if p is not None and id(p) not in counted:
                counted.add(id(p))
                call.params += p.size
        calls.append(call)
        stack.append(call)
        call.seconds = time.perf_counter()

    def post_hook(module, args, output):
        call = stack.pop()
        call.seconds = time.perf_counter() - call.seconds
        call.end_order = next(order)
        arrays = _arrays(output)
        for pos, a in enumerate(arrays):
            shape = list(a.shape)
            bd = _batch_dim(module, pos, a)
            per_sample = a.size
            if a.ndim > bd and shape[bd] == run_batch:
                shape[bd] = batch_size
                per_sample = a.size // run_batch * samples
            call.output_shapes.append(shape)
            call.output_bytes += per_sample * a.itemsize
        call.mult_adds = _mult_adds(module, args, arrays) // run_batch * samples

    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre_hook))
        handles.append(m.register_forward_hook(post_hook))
    try:
        model(*inputs)
    finally:
        for h in handles:
            h.remove()

    params = list(model.named_parameters())
    trainable = {id(p) for _, p in model.named_trainable_parameters()}
    result = ModelSummary(
        model_name=type(model).__name__,
        calls=calls,
        total_params=sum(p.size for _, p in params),
        trainable_params=sum(p.size for _, p in params if id(p) in trainable),
        input_bytes=sum(int(np.prod(x.shape[1:])) * samples * x.itemsize for x in inputs),
        params_bytes=sum(p.nbytes for _, p in params),
        batch_size=int(batch_size),
        mode=mode,
        show_mult_adds=mult_adds,
        depth=depth,
    )
    if verbose:
        print(result)
    return result
