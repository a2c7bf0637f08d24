"""Recurrent layers (numpy in/out): LSTM, GRU, RNN (tanh/relu) and their cells, forward and BPTT.

Semantics are torch's (torch.nn.LSTM/GRU/RNN): gate orders i,f,g,o and r,z,n (b_hn inside
r*(...)), num_layers, bias, batch_first (not applied to h/c), dropout between layers (training
only), bidirectional (h_n ordered layer-major then direction), proj_size (LSTM), unbatched
input, float32/float64. ``lengths=`` gives each batch row's valid length: outputs past it are
zero and the final states are taken at it, in both directions (torch's PackedSequence results).

``params`` is the flat list of weights in torch's order (``module._flat_weights``): for each
layer, for each direction: w_ih, w_hh, [b_ih, b_hh], [w_hr].

Training: ``rnn_forward(..., need_saved=True)`` also returns ``saved``, a list of numpy arrays
(per layer-direction workspaces, then the inputs of layers 1.., then the dropout masks) that
``rnn_backward`` takes back; nothing opaque crosses the boundary.

Inference: ``prepare_rnn_weight(w)`` -> PreparedRnnWeight, accepted in ``params`` in place of a
weight_ih or weight_hh: what the kernels read (the packed step panels; the input projection's
packed operand) is built once and kept (``nn.LSTM.prepack()`` does it for a module).

The C++ side (csrc/cpu/rnn.cpp) runs one layer-direction per call, the whole sequence with the
GIL released.
"""

from __future__ import annotations

import numbers

import numpy as np

from .. import _C
from ._prepared import PreparedWeight
from ._validate import as_float_array, check_int

__all__ = [
    "PreparedRnnWeight",
    "gru",
    "gru_cell",
    "lstm",
    "lstm_cell",
    "prepare_rnn_weight",
    "rnn_backward",
    "rnn_forward",
    "rnn_relu",
    "rnn_relu_cell",
    "rnn_tanh",
    "rnn_tanh_cell",
]

MODES = {"lstm": 0, "gru": 1, "rnn_tanh": 2, "rnn_relu": 3}
GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


class PreparedRnnWeight(PreparedWeight):
    """A recurrent layer's weight (``weight_hh_l*`` or ``weight_ih_l*``) prepared once for many
    forward calls (inference): ``weight`` is a read-only copy of the array it was made from, and
    what the float32 kernels read is packed on the first forward call and kept, as onnxruntime
    packs a session's initializers. Pass it in ``params`` in place of that weight.

    - weight_hh: the gate-interleaved panels the step kernels read (the whole matrix, every
      step). A multi-step float32 forward then runs the packed kernels at every batch size
      (unprepared: from 2 rows, or from 1 where W_hh is at most 3 MiB, where packing on each
      call pays for itself), so at batch 1 with a bigger W_hh the results may differ from the
      unprepared call's in the last bits (float32 rounding; identical otherwise). From 16 rows,
      where W_hh is above 512 KiB (LSTM and RNN), the GEMM engine computes the step's product
      instead, on W_hh packed once for it (built on the first such call; identical to the
      unprepared call, which packs it the same way).
    - weight_ih: the input projection's operand, otherwise packed on every call (identical
      results).

    Changes to the original array are not seen: prepare again after changing weights.
    rnn_backward accepts it too (it reads the snapshot); the cells take plain arrays."""

    __slots__ = ()
    NDIM = 2
    SHAPE_NAMES = "(gates*hidden_size, input_size) or (gates*hidden_size, hidden_size or proj_size)"
    C_TYPE = _C.RnnPrepared


def prepare_rnn_weight(weight) -> PreparedRnnWeight:
    """``PreparedRnnWeight(weight)``: pass the result in ``params`` in place of a weight_ih or
    weight_hh."""
    return PreparedRnnWeight(weight)


def _check_bool(v, name):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} should be of type bool, got: {type(v).__name__}")
    return bool(v)


class _Config:
    """Sizes and options of one call, validated once (shared by forward and backward)."""

    def __init__(self, mode, input, params, num_layers, bias, bidirectional, batch_first, proj_size, lengths):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
        self.mode = mode
        self.num_layers = check_int(num_layers, "num_layers", min_value=1)
        self.bias = _check_bool(bias, "bias")
        self.bidirectional = _check_bool(bidirectional, "bidirectional")
        self.batch_first = _check_bool(batch_first, "batch_first")
        self.proj_size = check_int(proj_size, "proj_size", min_value=0)
        if self.proj_size and mode != "lstm":
            raise ValueError(f"proj_size argument is only supported for LSTM, not {mode.upper()}")
        self.D = 2 if self.bidirectional else 1
        x = as_float_array(input, "input")
        if x.ndim not in (2, 3):
            raise ValueError(
                f"input must be 2-D (unbatched: L, H_in) or 3-D (batched), got {x.ndim}-D with shape {x.shape}"
            )
        self.dtype = x.dtype
        self.batched = x.ndim == 3
        if not self.batched:
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        self.x = np.ascontiguousarray(x)  # (T, B, I), time-major
        self.T, self.B, self.I = self.x.shape
        if self.T == 0:
            raise ValueError(f"input must have at least one time step, got shape {x.shape}")
        self.layers = self._split_params(params)
        self.H = self.layers[0][0][1].shape[0] // GATES[mode]
        self.K = self.proj_size or self.H
        self.lengths = self._lengths(lengths)

    def _split_params(self, params):
        if isinstance(params, np.ndarray) or not isinstance(params, (list, tuple)):
            raise TypeError(
                f"params must be a list of arrays (torch's flat weight order), got {type(params).__name__}"
            )
        per = 2 + (2 if self.bias else 0) + (1 if self.proj_size else 0)
        want = per * self.num_layers * self.D
        if len(params) != want:
            raise ValueError(
                f"params must hold {want} arrays for num_layers={self.num_layers}, bidirectional={self.bidirectional}, "
                f"bias={self.bias}, proj_size={self.proj_size}; got {len(params)}"
            )
        G = GATES[self.mode]
        w_hh0 = params[1].weight if isinstance(params[1], PreparedRnnWeight) else params[1]
        w_hh0 = as_float_array(w_hh0, "params[1] (weight_hh_l0)")
        if w_hh0.ndim != 2 or w_hh0.shape[0] % G or w_hh0.shape[0] == 0:
            raise ValueError(f"weight_hh_l0 must be ({G}*hidden_size, hidden_size), got shape {w_hh0.shape}")
        H = w_hh0.shape[0] // G
        if self.proj_size >= H:
            raise ValueError(
                f"proj_size has to be smaller than hidden_size, got proj_size={self.proj_size}, hidden_size={H}"
            )
        K = self.proj_size or H
        layers, i = [], 0
        for layer in range(self.num_layers):
            dirs = []
            in_size = self.I if layer == 0 else self.D * K
            for d in range(self.D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                names = ["weight_ih" + sfx, "weight_hh" + sfx]
                shapes = [(G * H, in_size), (G * H, K)]
                if self.bias:
                    names += ["bias_ih" + sfx, "bias_hh" + sfx]
                    shapes += [(G * H,), (G * H,)]
                if self.proj_size:
                    names.append("weight_hr" + sfx)
                    shapes.append((self.proj_size, H))
                arrs, prepared = {}, {}
                for name, shape in zip(names, shapes):
                    a = params[i]
                    if isinstance(a, PreparedRnnWeight):
                        if not name.startswith(("weight_ih", "weight_hh")):
                            raise TypeError(
                                f"params[{i}] ({name}): only a weight_ih or weight_hh may be a PreparedRnnWeight"
                            )
                        a, prepared[name.split("_l")[0]] = a.weight, a._c
                    a = as_float_array(a, f"params[{i}] ({name})", self.dtype)
                    if a.shape != shape:
                        if (
                            name.startswith("weight_ih")
                            and a.ndim == 2
                            and a.shape[0] == shape[0]
                            and layer == 0
                        ):
                            raise ValueError(
                                f"input.size(-1) must be equal to input_size. Expected {a.shape[1]}, got {in_size}"
                            )
                        raise ValueError(f"params[{i}] ({name}) must have shape {shape}, got {a.shape}")
                    arrs[name.split("_l")[0]] = a
                    i += 1
                dirs.append((arrs["weight_ih"], arrs["weight_hh"], arrs.get("bias_ih"), arrs.get("bias_hh"),
                             arrs.get("weight_hr"), prepared.get("weight_hh"), prepared.get("weight_ih")))  # fmt: skip
            layers.append(dirs)
        return layers

    def _lengths(self, lengths):
        if lengths is None:
            return None
        if hasattr(lengths, "detach") and hasattr(lengths, "cpu"):  # a CPU torch tensor, as torch allows
            lengths = lengths.detach().cpu().numpy()
        arr = np.asarray(lengths)
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise TypeError(
                f"lengths must be a 1-D sequence of ints, got dtype {arr.dtype} with shape {arr.shape}"
            )
        if arr.shape[0] != self.B:
            raise ValueError(f"lengths must have one entry per batch row ({self.B}), got {arr.shape[0]}")
        if arr.size and (arr.min() < 1 or arr.max() > self.T):
            raise ValueError(
                f"lengths must be in [1, {self.T}] (the sequence length), got min {arr.min()}, max {arr.max()}"
            )
        return np.ascontiguousarray(arr, dtype=np.int64)

    def state(self, h, name, width):
        """hx entry -> (L*D, B, width) contiguous, or None."""
        if h is None:
            return None
        h = as_float_array(h, name, self.dtype)
        LD = self.num_layers * self.D
        want = (LD, self.B, width) if self.batched else (LD, width)
        if not self.batched and h.ndim != 2:
            raise ValueError(f"For unbatched 2-D input, {name} should also be 2-D but got {h.ndim}-D tensor")
        if self.batched and h.ndim != 3:
            raise ValueError(f"For batched 3-D input, {name} should also be 3-D but got {h.ndim}-D tensor")
        if h.shape != want:
            raise ValueError(f"Expected {name} size {want}, got {h.shape}")
        return np.ascontiguousarray(h if self.batched else h[:, None, :])

    def hidden(self, hx):
        if self.mode == "lstm":
            if hx is None:
                return None, None
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"hx for LSTM must be a tuple (h_0, c_0), got {type(hx).__name__}")
            return self.state(hx[0], "h_0", self.K), self.state(hx[1], "c_0", self.H)
        if isinstance(hx, (tuple, list)):
            raise TypeError(f"hx for {self.mode.upper()} must be an array, got {type(hx).__name__}")
        return self.state(hx, "h_0", self.K), None

    def to_user(self, y):
        """(T, B, F) time-major -> the caller's layout."""
        if not self.batched:
            return y[:, 0, :]
        return np.ascontiguousarray(y.transpose(1, 0, 2)) if self.batch_first else y

    def state_to_user(self, h):
        return None if h is None else (h if self.batched else h[:, 0, :])

    def from_user(self, g, name, shape_tb):
        """A gradient in the caller's layout -> (T, B, F) time-major contiguous."""
        g = as_float_array(g, name, self.dtype)
        T, B, F = shape_tb
        want = (T, B, F) if not self.batch_first else (B, T, F)
        if not self.batched:
            want = (T, F)
        if g.shape != want:
            raise ValueError(f"{name} must have shape {want}, got {g.shape}")
        if not self.batched:
            g = g[:, None, :]
        elif self.batch_first:
            g = g.transpose(1, 0, 2)
        return np.ascontiguousarray(g)


def _dropout_mask(shape, p, dtype, rng):
    if p >= 1.0:
        return np.zeros(shape, dtype)
    return ((rng.random(shape) >= p) / (1.0 - p)).astype(dtype)


def rnn_forward(
    mode,
    input,
    hx,
    params,
    num_layers=1,
    bias=True,
    dropout=0.0,
    training=False,
    bidirectional=False,
    batch_first=False,
    proj_size=0,
    lengths=None,
    dropout_masks=None,
    dropout_seed=None,
    need_saved=False,
):
    """The whole stack. Returns (output, h_n, c_n, saved): c_n None unless LSTM, saved None
    unless need_saved. dropout_masks: optional list of num_layers-1 arrays shaped like each
    layer's output (time-major), used instead of drawing masks (seeded by dropout_seed)."""
    cfg = _Config(mode, input, params, num_layers, bias, bidirectional, batch_first, proj_size, lengths)
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout <= 1:
        raise ValueError(
            f"dropout should be a number in range [0, 1] representing the probability of an element being zeroed, got {dropout!r}"
        )
    training = _check_bool(training, "training")
    h0, c0 = cfg.hidden(hx)
    T, B, D, K, H, L = cfg.T, cfg.B, cfg.D, cfg.K, cfg.H, cfg.num_layers
    lstm = mode == "lstm"
    h_n = _C.empty((L * D, B, K), cfg.dtype)
    c_n = _C.empty((L * D, B, H), cfg.dtype) if lstm else None
    use_dropout = training and dropout > 0 and L > 1
    rng = np.random.default_rng(dropout_seed) if use_dropout and dropout_masks is None else None
    ws_list, inputs, masks = [], [], []
    layer_in = cfg.x
    for layer in range(L):
        out = _C.empty((T, B, D * K), cfg.dtype)
        for d in range(D):
            w_ih, w_hh, b_ih, b_hh, w_hr, prepared_hh, prepared_ih = cfg.layers[layer][d]
            idx = layer * D + d
            ws = (
                _C.empty((_C.rnn_workspace_size(MODES[mode], T, B, H, cfg.proj_size),), cfg.dtype)
                if need_saved
                else None
            )
            _C.rnn_layer_forward(
                MODES[mode], d == 1, layer_in,
                None if h0 is None else h0[idx], None if c0 is None else c0[idx],
                w_ih, w_hh, b_ih, b_hh, w_hr, cfg.lengths,
                out, d * K, h_n[idx], c_n[idx] if lstm else None, ws, False, prepared_hh, prepared_ih,
            )  # fmt: skip
            ws_list.append(ws)
        layer_in = out
        if layer < L - 1:
            if use_dropout:
                if dropout_masks is not None:
                    m = as_float_array(dropout_masks[layer], f"dropout_masks[{layer}]", cfg.dtype)
                    if m.shape != out.shape:
                        raise ValueError(f"dropout_masks[{layer}] must have shape {out.shape}, got {m.shape}")
                else:
                    m = _dropout_mask(out.shape, float(dropout), cfg.dtype, rng)
                masks.append(m)
                layer_in = out * m
            if need_saved:
                inputs.append(layer_in)
    saved = [*ws_list, *inputs, *masks] if need_saved else None
    return cfg.to_user(layer_in), cfg.state_to_user(h_n), cfg.state_to_user(c_n), saved


def rnn_backward(
    mode,
    grad_output,
    grad_h_n,
    grad_c_n,
    input,
    hx,
    params,
    saved,
    num_layers=1,
    bias=True,
    bidirectional=False,
    batch_first=False,
    proj_size=0,
    lengths=None,
):
    """BPTT through the stack run by rnn_forward(..., need_saved=True) with the same arguments.
    grad_output / grad_h_n / grad_c_n may be None (zero). Returns (grad_input, grad_h0,
    grad_c0, grad_params): grad_c0 None unless LSTM, grad_params in the order of params."""
    cfg = _Config(mode, input, params, num_layers, bias, bidirectional, batch_first, proj_size, lengths)
    cfg.hidden(hx)  # validates hx like the forward did (the states themselves are in saved)
    T, B, D, K, H, L = cfg.T, cfg.B, cfg.D, cfg.K, cfg.H, cfg.num_layers
    lstm = mode == "lstm"
    n_ws = L * D
    if not isinstance(saved, (list, tuple)) or len(saved) < n_ws + (L - 1):
        raise ValueError(
            f"saved must be the list returned by rnn_forward(..., need_saved=True), got {type(saved).__name__}"
        )
    ws_list = [as_float_array(w, f"saved[{i}]", cfg.dtype) for i, w in enumerate(saved[:n_ws])]
    inputs = list(saved[n_ws : n_ws + L - 1])
    masks = list(saved[n_ws + L - 1 :])
    if masks and len(masks) != L - 1:
        raise ValueError(f"saved holds {len(masks)} dropout masks, expected 0 or {L - 1}")
    dy = None if grad_output is None else cfg.from_user(grad_output, "grad_output", (T, B, D * K))
    dhn = None if grad_h_n is None else cfg.state(grad_h_n, "grad_h_n", K)
    dcn = None if (grad_c_n is None or not lstm) else cfg.state(grad_c_n, "grad_c_n", H)
    dh0 = _C.empty((L * D, B, K), cfg.dtype)
    dc0 = _C.empty((L * D, B, H), cfg.dtype) if lstm else None
    grads = [None] * (len(params))
    per = 2 + (2 if cfg.bias else 0) + (1 if cfg.proj_size else 0)
    for layer in reversed(range(L)):
        layer_in = (
            cfg.x
            if layer == 0
            else as_float_array(inputs[layer - 1], f"saved input of layer {layer}", cfg.dtype)
        )
        dx = _C.empty(layer_in.shape, cfg.dtype)
        for d in range(D):
            w_ih, w_hh, b_ih, b_hh, w_hr, _, _ = cfg.layers[layer][d]
            idx = layer * D + d
            g = [_C.empty(w_ih.shape, cfg.dtype), _C.empty(w_hh.shape, cfg.dtype)]
            if cfg.bias:
                g += [_C.empty(b_ih.shape, cfg.dtype), _C.empty(b_hh.shape, cfg.dtype)]
            if cfg.proj_size:
                g.append(_C.empty(w_hr.shape, cfg.dtype))
            _C.rnn_layer_backward(
                MODES[mode], d == 1, layer_in, w_ih, w_hh, w_hr, cfg.lengths, ws_list[idx],
                dy, d * K, None if dhn is None else dhn[idx], None if dcn is None else dcn[idx],
                dx, d > 0, g[0], g[1], g[2] if cfg.bias else None, g[3] if cfg.bias else None,
                g[-1] if cfg.proj_size else None, dh0[idx], dc0[idx] if lstm else None,
            )  # fmt: skip
            grads[idx * per : (idx + 1) * per] = g
        dy = dx * masks[layer - 1] if (layer > 0 and masks) else dx
    return cfg.to_user(dy), cfg.state_to_user(dh0), cfg.state_to_user(dc0), grads


def _run(mode, input, hx, params, num_layers, bias, dropout, training, bidirectional, batch_first, proj_size=0,
         lengths=None, dropout_seed=None):  # fmt: skip
    out, h_n, c_n, _ = rnn_forward(mode, input, hx, params, num_layers, bias, dropout, training, bidirectional,
                                   batch_first, proj_size, lengths, dropout_seed=dropout_seed)  # fmt: skip
    return out, h_n, c_n


def lstm(input, hx, params, num_layers=1, bias=True, dropout=0.0, training=False, bidirectional=False,
         batch_first=False, proj_size=0, lengths=None, dropout_seed=None):  # fmt: skip
    """torch.nn.LSTM's forward: returns (output, (h_n, c_n)). hx: (h_0, c_0) or None."""
    out, h_n, c_n = _run("lstm", input, hx, params, num_layers, bias, dropout, training, bidirectional, batch_first,
                         proj_size, lengths, dropout_seed)  # fmt: skip
    return out, (h_n, c_n)


def gru(input, hx, params, num_layers=1, bias=True, dropout=0.0, training=False, bidirectional=False,
        batch_first=False, lengths=None, dropout_seed=None):  # fmt: skip
    """torch.nn.GRU's forward: returns (output, h_n)."""
    out, h_n, _ = _run("gru", input, hx, params, num_layers, bias, dropout, training, bidirectional, batch_first, 0,
                       lengths, dropout_seed)  # fmt: skip
    return out, h_n


def rnn_tanh(input, hx, params, num_layers=1, bias=True, dropout=0.0, training=False, bidirectional=False,
             batch_first=False, lengths=None, dropout_seed=None):  # fmt: skip
    """torch.nn.RNN(nonlinearity='tanh')'s forward: returns (output, h_n)."""
    out, h_n, _ = _run("rnn_tanh", input, hx, params, num_layers, bias, dropout, training, bidirectional,
                       batch_first, 0, lengths, dropout_seed)  # fmt: skip
    return out, h_n


def rnn_relu(input, hx, params, num_layers=1, bias=True, dropout=0.0, training=False, bidirectional=False,
             batch_first=False, lengths=None, dropout_seed=None):  # fmt: skip
    """torch.nn.RNN(nonlinearity='relu')'s forward: returns (output, h_n)."""
    out, h_n, _ = _run("rnn_relu", input, hx, params, num_layers, bias, dropout, training, bidirectional,
                       batch_first, 0, lengths, dropout_seed)  # fmt: skip
    return out, h_n


# ---- cells: one step, torch.nn.LSTMCell / GRUCell / RNNCell -------------------------------------
def _cell(mode, input, hx, w_ih, w_hh, b_ih, b_hh):
    x = as_float_array(input, "input")
    if x.ndim not in (1, 2):
        raise ValueError(f"{mode.upper()}Cell: Expected input to be 1D or 2D, got {x.ndim}D instead")
    w_ih = as_float_array(w_ih, "w_ih", x.dtype)
    w_hh = as_float_array(w_hh, "w_hh", x.dtype)
    G = GATES[mode]
    if w_ih.ndim != 2 or w_ih.shape[0] % G or w_ih.shape[0] == 0:
        raise ValueError(f"w_ih must be ({G}*hidden_size, input_size), got shape {w_ih.shape}")
    H = w_ih.shape[0] // G
    if w_hh.shape != (G * H, H):
        raise ValueError(f"w_hh must have shape {(G * H, H)}, got {w_hh.shape}")
    if x.shape[-1] != w_ih.shape[1]:
        raise ValueError(f"input has inconsistent input_size: got {x.shape[-1]} expected {w_ih.shape[1]}")
    if (b_ih is None) != (b_hh is None):
        raise ValueError("b_ih and b_hh must both be given or both be None")
    if b_ih is not None:
        b_ih = as_float_array(b_ih, "b_ih", x.dtype)
        b_hh = as_float_array(b_hh, "b_hh", x.dtype)
        for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
            if b.shape != (G * H,):
                raise ValueError(f"{name} must have shape {(G * H,)}, got {b.shape}")
    batched = x.ndim == 2
    B = x.shape[0] if batched else 1
    states = []
    names = ("hx", "cx") if mode == "lstm" else ("hx",)
    if mode == "lstm" and hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
        raise TypeError(f"hx for LSTMCell must be a tuple (h, c) or None, got {type(hx).__name__}")
    for i, name in enumerate(names):
        h = None if hx is None else (hx[i] if mode == "lstm" else hx)
        if h is not None:
            h = as_float_array(h, name, x.dtype)
            if h.ndim != x.ndim:
                raise ValueError(f"Expected {name} to be {x.ndim}D like the input, got {h.ndim}D instead")
            if batched and h.shape[0] != B:
                raise ValueError(f"Input batch size {B} doesn't match hidden{i} batch size {h.shape[0]}")
            if h.shape[-1] != H:
                raise ValueError(f"hidden{i} has inconsistent hidden_size: got {h.shape[-1]}, expected {H}")
            h = h.reshape(B, H)  # contiguous: as_float_array made it so
        states.append(h)
    # everything is checked: one step of the layer kernel, straight (rnn_forward would check again)
    h_1 = _C.empty((B, H), x.dtype)
    c_1 = _C.empty((B, H), x.dtype) if mode == "lstm" else None
    _C.rnn_layer_forward(
        MODES[mode], False, x.reshape(1, B, x.shape[-1]), states[0], states[1] if mode == "lstm" else None,
        w_ih, w_hh, b_ih, b_hh, None, None, _C.empty((1, B, H), x.dtype), 0, h_1, c_1, None,
    )  # fmt: skip
    if not batched:
        h_1 = h_1.reshape(H)
        c_1 = None if c_1 is None else c_1.reshape(H)
    return (h_1, c_1) if mode == "lstm" else h_1


def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """torch.nn.LSTMCell's forward: returns (h_1, c_1); hx (h_0, c_0) or None (zeros)."""
    return _cell("lstm", input, hx, w_ih, w_hh, b_ih, b_hh)


def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """torch.nn.GRUCell's forward: returns h_1."""
    return _cell("gru", input, hx, w_ih, w_hh, b_ih, b_hh)


def rnn_tanh_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """torch.nn.RNNCell(nonlinearity='tanh')'s forward: returns h_1."""
    return _cell("rnn_tanh", input, hx, w_ih, w_hh, b_ih, b_hh)


def rnn_relu_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """torch.nn.RNNCell(nonlinearity='relu')'s forward: returns h_1."""
    return _cell("rnn_relu", input, hx, w_ih, w_hh, b_ih, b_hh)
