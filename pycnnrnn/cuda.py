"""CUDA entry points: torch CUDA tensors in, torch CUDA tensors out.

The torch layer (``pycnnrnn.torch``) dispatches CUDA tensors here. Each function validates
its tensors (CUDA, same device, float32/float64, matching dtypes and shapes), makes them
contiguous (inputs are never modified), allocates every output and workspace with
``torch.empty`` on the input's device, and launches the hand-written kernels on torch's
current stream (``torch.cuda.current_stream().cuda_stream``) — so ordering with surrounding
torch work, CUDA graphs and event timing all hold. No function synchronises.

torch is imported lazily: importing pycnnrnn never needs torch or a GPU.
"""

from __future__ import annotations

__all__ = [
    "available",
    "conv2d",
    "conv2d_backward",
    "gemm",
    "gru_backward",
    "gru_forward",
    "lstm_backward",
    "lstm_forward",
    "matmul",
    "max_pool2d",
    "max_pool2d_backward",
]


def _torch():
    import torch

    return torch


def _core():
    from . import _C

    if not hasattr(_C, "cuda_gemm"):
        raise RuntimeError("pycnnrnn was built without the CUDA backend (rebuild with PYCNNRNN_CUDA=ON)")
    return _C


def available() -> bool:
    """True when the CUDA backend is built, a GPU is usable and torch sees it."""
    try:
        from . import cuda_available

        if not cuda_available():
            return False
        return bool(_torch().cuda.is_available())
    except Exception:
        return False


def _dtype_code(t) -> int:
    torch = _torch()
    if t.dtype == torch.float32:
        return 0
    if t.dtype == torch.float64:
        return 1
    raise TypeError(f"expected a float32 or float64 tensor, got {t.dtype}")


def _check(t, name: str, ref=None, ndim: tuple[int, ...] | int | None = None):
    """Validate one tensor and return it contiguous."""
    torch = _torch()
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_cuda:
        raise ValueError(f"{name} must be a CUDA tensor, got device {t.device}")
    if ref is not None:
        if t.device != ref.device:
            raise ValueError(f"{name} must be on {ref.device}, got {t.device}")
        if t.dtype != ref.dtype:
            raise TypeError(f"{name} must have dtype {ref.dtype} (like the input), got {t.dtype}")
    else:
        _dtype_code(t)
    if ndim is not None:
        dims = (ndim,) if isinstance(ndim, int) else ndim
        if t.dim() not in dims:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, dims))} dims, got shape {tuple(t.shape)}"
            )
    return t.detach().contiguous()


def _opt(t, name, ref, shape):
    if t is None:
        return None
    t = _check(t, name, ref)
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    return t


def _ptr(t) -> int:
    return 0 if t is None else t.data_ptr()


def _stream(t) -> int:
    return _torch().cuda.current_stream(t.device).cuda_stream


def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got bool")
    if isinstance(v, int):
        return (v, v)
    try:
        a, b = v
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}") from None
    return (int(a), int(b))


# ---------------------------------------------------------------------------------------------
# max_pool2d


def _pool_args(kernel_size, stride, padding, dilation):
    kH, kW = _pair(kernel_size, "kernel_size")
    if stride is None or (not isinstance(stride, int) and len(stride) == 0):
        sH, sW = kH, kW
    else:
        sH, sW = _pair(stride, "stride")
    pH, pW = _pair(padding, "padding")
    dH, dW = _pair(dilation, "dilation")
    if kH <= 0 or kW <= 0:
        raise ValueError(f"kernel_size must be greater than zero, got ({kH}, {kW})")
    if sH <= 0 or sW <= 0:
        raise ValueError(f"stride must be greater than zero, got ({sH}, {sW})")
    if dH <= 0 or dW <= 0:
        raise ValueError(f"dilation must be greater than zero, got ({dH}, {dW})")
    if pH < 0 or pW < 0 or pH > kH // 2 or pW > kW // 2:
        raise ValueError(
            f"pad should be at most half of effective kernel size, got padding ({pH}, {pW}), "
            f"kernel_size ({kH}, {kW})"
        )
    return kH, kW, sH, sW, pH, pW, dH, dW


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """torch.nn.functional.max_pool2d on a CUDA tensor (NCHW or CHW); indices are int64,
    flat per (n, c) plane like torch's."""
    torch = _torch()
    C_ = _core()
    x = _check(x, "input", ndim=(3, 4))
    kH, kW, sH, sW, pH, pW, dH, dW = _pool_args(kernel_size, stride, padding, dilation)
    H, W = x.shape[-2], x.shape[-1]
    if H == 0 or W == 0 or (x.dim() == 4 and x.shape[1] == 0) or (x.dim() == 3 and x.shape[0] == 0):
        raise ValueError(f"input must have non-zero C, H, W, got shape {tuple(x.shape)}")
    OH = C_.cuda_pool_output_size(H, kH, sH, pH, dH, bool(ceil_mode))
    OW = C_.cuda_pool_output_size(W, kW, sW, pW, dW, bool(ceil_mode))
    if OH < 1 or OW < 1:
        raise ValueError(f"Output size is too small: input {tuple(x.shape)} gives ({OH}, {OW})")
    lead = tuple(x.shape[:-2])
    planes = 1
    for d in lead:
        planes *= d
    y = torch.empty(lead + (OH, OW), dtype=x.dtype, device=x.device)
    idx = torch.empty(lead + (OH, OW), dtype=torch.int64, device=x.device) if return_indices else None
    if planes > 0:
        with torch.cuda.device(x.device):
            geometry = (planes, H, W, kH, kW, sH, sW, pH, pW, dH, dW, bool(ceil_mode))
            C_.cuda_max_pool2d_fwd(
                _dtype_code(x), x.data_ptr(), y.data_ptr(), _ptr(idx), *geometry, _stream(x)
            )
    return (y, idx) if return_indices else y


def max_pool2d_backward(
    grad_output, indices, input_size, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False
):
    """Gradient of max_pool2d w.r.t. its input (deterministic gather; fully written)."""
    torch = _torch()
    C_ = _core()
    gy = _check(grad_output, "grad_output", ndim=(3, 4))
    idx = indices
    if not isinstance(idx, torch.Tensor) or idx.dtype != torch.int64 or not idx.is_cuda:
        raise TypeError("indices must be an int64 CUDA tensor (from max_pool2d(..., return_indices=True))")
    idx = idx.contiguous()
    if idx.shape != gy.shape or idx.device != gy.device:
        raise ValueError(f"indices shape {tuple(idx.shape)} must match grad_output {tuple(gy.shape)}")
    input_size = tuple(int(s) for s in input_size)
    if len(input_size) != gy.dim() or input_size[:-2] != tuple(gy.shape[:-2]):
        raise ValueError(f"input_size {input_size} does not match grad_output {tuple(gy.shape)}")
    kH, kW, sH, sW, pH, pW, dH, dW = _pool_args(kernel_size, stride, padding, dilation)
    H, W = input_size[-2:]
    OH = C_.cuda_pool_output_size(H, kH, sH, pH, dH, bool(ceil_mode))
    OW = C_.cuda_pool_output_size(W, kW, sW, pW, dW, bool(ceil_mode))
    if tuple(gy.shape[-2:]) != (OH, OW):
        raise ValueError(f"grad_output spatial size {tuple(gy.shape[-2:])} != expected ({OH}, {OW})")
    planes = 1
    for d in input_size[:-2]:
        planes *= d
    gx = torch.empty(input_size, dtype=gy.dtype, device=gy.device)
    if planes > 0:
        with torch.cuda.device(gy.device):
            geometry = (planes, H, W, kH, kW, sH, sW, pH, pW, dH, dW, bool(ceil_mode))
            C_.cuda_max_pool2d_bwd(
                _dtype_code(gy), gy.data_ptr(), idx.data_ptr(), gx.data_ptr(), *geometry, _stream(gy)
            )
    return gx


# ---------------------------------------------------------------------------------------------
# GEMM


def gemm(a, b, trans_a: bool = False, trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0, out=None):
    """out = alpha * op(a) @ op(b) + beta * out for 2-D row-major tensors; op(t) = t.T when
    trans_*. The hand-written SGEMM (float32, NN/NT/TN); float64 uses a simple tiled kernel."""
    torch = _torch()
    C_ = _core()
    a = _check(a, "a", ndim=2)
    b = _check(b, "b", a, ndim=2)
    M, K = (a.shape[1], a.shape[0]) if trans_a else (a.shape[0], a.shape[1])
    Kb, N = (b.shape[1], b.shape[0]) if trans_b else (b.shape[0], b.shape[1])
    if Kb != K:
        raise ValueError(f"gemm: inner dimensions differ: op(a) is {M}x{K}, op(b) is {Kb}x{N}")
    if out is None:
        if beta != 0:
            raise ValueError("gemm: beta != 0 needs out")
        out = torch.empty((M, N), dtype=a.dtype, device=a.device)
    else:
        if not isinstance(out, torch.Tensor) or out.dtype != a.dtype or out.device != a.device:
            raise TypeError("gemm: out must be a tensor with the inputs' dtype and device")
        if tuple(out.shape) != (M, N) or not out.is_contiguous():
            raise ValueError(f"gemm: out must be a contiguous ({M}, {N}) tensor, got {tuple(out.shape)}")
    with torch.cuda.device(a.device):
        C_.cuda_gemm(
            _dtype_code(a),
            bool(trans_a),
            bool(trans_b),
            M,
            N,
            K,
            float(alpha),
            a.data_ptr(),
            max(a.shape[1], 1),
            b.data_ptr(),
            max(b.shape[1], 1),
            float(beta),
            out.data_ptr(),
            max(N, 1),
            _stream(a),
        )
    return out


def matmul(a, b):
    """a @ b for 2-D CUDA tensors through the hand-written SGEMM."""
    return gemm(a, b)


# ---------------------------------------------------------------------------------------------
# LSTM (one layer, one direction, seq-first)


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, training: bool = False):
    """One LSTM layer like torch.nn.LSTM (gate order i, f, g, o).

    x [T, B, I]; h0, c0 [B, H] or None (zeros); w_ih [4H, I]; w_hh [4H, H]; b_ih, b_hh [4H] or None.
    Returns (y [T, B, H], h_n [B, H], c_n [B, H], saved) where saved = (gates [T, B, 4H]
    activated, c_all [T, B, H]) when training else None — pass it to lstm_backward."""
    torch = _torch()
    C_ = _core()
    x = _check(x, "input", ndim=3)
    T, B, I = x.shape
    w_ih = _check(w_ih, "weight_ih", x, ndim=2)
    H4 = w_ih.shape[0]
    if H4 % 4 != 0 or H4 == 0 or w_ih.shape[1] != I:
        raise ValueError(f"weight_ih must have shape (4*hidden_size, {I}), got {tuple(w_ih.shape)}")
    H = H4 // 4
    w_hh = _opt(w_hh, "weight_hh", x, (H4, H))
    b_ih = _opt(b_ih, "bias_ih", x, (H4,))
    b_hh = _opt(b_hh, "bias_hh", x, (H4,))
    h0 = _opt(h0, "h0", x, (B, H))
    c0 = _opt(c0, "c0", x, (B, H))
    if T == 0 or B == 0:
        raise ValueError(f"input must have non-zero sequence length and batch, got {tuple(x.shape)}")
    y = torch.empty((T, B, H), dtype=x.dtype, device=x.device)
    c_all = torch.empty((T, B, H), dtype=x.dtype, device=x.device)
    gates = torch.empty((T, B, H4), dtype=x.dtype, device=x.device) if training else None
    xproj = torch.empty((T, B, H4), dtype=x.dtype, device=x.device)
    with torch.cuda.device(x.device):
        C_.cuda_lstm_fwd(
            _dtype_code(x),
            T,
            B,
            I,
            H,
            x.data_ptr(),
            _ptr(h0),
            _ptr(c0),
            w_ih.data_ptr(),
            w_hh.data_ptr(),
            _ptr(b_ih),
            _ptr(b_hh),
            y.data_ptr(),
            c_all.data_ptr(),
            _ptr(gates),
            xproj.data_ptr(),
            _stream(x),
        )
    h_n = y[T - 1].clone()
    c_n = c_all[T - 1].clone()
    return y, h_n, c_n, ((gates, c_all) if training else None)


def lstm_backward(
    x,
    h0,
    c0,
    w_ih,
    w_hh,
    y,
    saved,
    grad_y=None,
    grad_h_n=None,
    grad_c_n=None,
    need_input_grad: bool = True,
    has_bias: bool = True,
):
    """Backward of lstm_forward(..., training=True).

    Returns (dx or None, dh0, dc0, dw_ih, dw_hh, db_ih or None, db_hh or None); db_ih == db_hh."""
    torch = _torch()
    C_ = _core()
    x = _check(x, "input", ndim=3)
    T, B, I = x.shape
    w_ih = _check(w_ih, "weight_ih", x, ndim=2)
    H4 = w_ih.shape[0]
    H = H4 // 4
    w_hh = _opt(w_hh, "weight_hh", x, (H4, H))
    h0 = _opt(h0, "h0", x, (B, H))
    c0 = _opt(c0, "c0", x, (B, H))
    y = _opt(y, "output", x, (T, B, H))
    if saved is None:
        raise ValueError("lstm_backward needs the saved tensors of lstm_forward(..., training=True)")
    gates, c_all = saved
    gates = _opt(gates, "gates", x, (T, B, H4))
    c_all = _opt(c_all, "c_all", x, (T, B, H))
    dy = _opt(grad_y, "grad_output", x, (T, B, H))
    dh = (
        _opt(grad_h_n, "grad_h_n", x, (B, H)).clone()
        if grad_h_n is not None
        else torch.zeros((B, H), dtype=x.dtype, device=x.device)
    )
    dc = (
        _opt(grad_c_n, "grad_c_n", x, (B, H)).clone()
        if grad_c_n is not None
        else torch.zeros((B, H), dtype=x.dtype, device=x.device)
    )
    dx = torch.empty((T, B, I), dtype=x.dtype, device=x.device) if need_input_grad else None
    dw_ih = torch.empty((H4, I), dtype=x.dtype, device=x.device)
    dw_hh = torch.empty((H4, H), dtype=x.dtype, device=x.device)
    db = torch.empty((H4,), dtype=x.dtype, device=x.device) if has_bias else None
    dz = torch.empty((T, B, H4), dtype=x.dtype, device=x.device)
    with torch.cuda.device(x.device):
        C_.cuda_lstm_bwd(
            _dtype_code(x),
            T,
            B,
            I,
            H,
            x.data_ptr(),
            _ptr(h0),
            _ptr(c0),
            w_ih.data_ptr(),
            w_hh.data_ptr(),
            y.data_ptr(),
            c_all.data_ptr(),
            gates.data_ptr(),
            _ptr(dy),
            dh.data_ptr(),
            dc.data_ptr(),
            _ptr(dx),
            dw_ih.data_ptr(),
            dw_hh.data_ptr(),
            _ptr(db),
            dz.data_ptr(),
            _stream(x),
        )
    db2 = db.clone() if db is not None else None
    return dx, dh, dc, dw_ih, dw_hh, db, db2


# ---------------------------------------------------------------------------------------------
# GRU (one layer, one direction, seq-first)


def gru_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, training: bool = False):
    """One GRU layer like torch.nn.GRU (gate order r, z, n; n uses r * (W_hn h + b_hn)).

    x [T, B, I]; h0 [B, H] or None; w_ih [3H, I]; w_hh [3H, H]; b_ih, b_hh [3H] or None.
    Returns (y [T, B, H], h_n [B, H], saved) where saved = [T, B, 4H] (r, z, n, W_hn h + b_hn)
    when training else None — pass it to gru_backward."""
    torch = _torch()
    C_ = _core()
    x = _check(x, "input", ndim=3)
    T, B, I = x.shape
    w_ih = _check(w_ih, "weight_ih", x, ndim=2)
    H3 = w_ih.shape[0]
    if H3 % 3 != 0 or H3 == 0 or w_ih.shape[1] != I:
        raise ValueError(f"weight_ih must have shape (3*hidden_size, {I}), got {tuple(w_ih.shape)}")
    H = H3 // 3
    w_hh = _opt(w_hh, "weight_hh", x, (H3, H))
    b_ih = _opt(b_ih, "bias_ih", x, (H3,))
    b_hh = _opt(b_hh, "bias_hh", x, (H3,))
    h0 = _opt(h0, "h0", x, (B, H))
    if T == 0 or B == 0:
        raise ValueError(f"input must have non-zero sequence length and batch, got {tuple(x.shape)}")
    y = torch.empty((T, B, H), dtype=x.dtype, device=x.device)
    saved = torch.empty((T, B, 4 * H), dtype=x.dtype, device=x.device) if training else None
    xproj = torch.empty((T, B, H3), dtype=x.dtype, device=x.device)
    with torch.cuda.device(x.device):
        C_.cuda_gru_fwd(
            _dtype_code(x),
            T,
            B,
            I,
            H,
            x.data_ptr(),
            _ptr(h0),
            w_ih.data_ptr(),
            w_hh.data_ptr(),
            _ptr(b_ih),
            _ptr(b_hh),
            y.data_ptr(),
            _ptr(saved),
            xproj.data_ptr(),
            _stream(x),
        )
    return y, y[T - 1].clone(), saved


def gru_backward(
    x,
    h0,
    w_ih,
    w_hh,
    y,
    saved,
    grad_y=None,
    grad_h_n=None,
    need_input_grad: bool = True,
    has_bias: bool = True,
):
    """Backward of gru_forward(..., training=True).

    Returns (dx or None, dh0, dw_ih, dw_hh, db_ih or None, db_hh or None)."""
    torch = _torch()
    C_ = _core()
    x = _check(x, "input", ndim=3)
    T, B, I = x.shape
    w_ih = _check(w_ih, "weight_ih", x, ndim=2)
    H3 = w_ih.shape[0]
    H = H3 // 3
    w_hh = _opt(w_hh, "weight_hh", x, (H3, H))
    h0 = _opt(h0, "h0", x, (B, H))
    y = _opt(y, "output", x, (T, B, H))
    if saved is None:
        raise ValueError("gru_backward needs the saved tensor of gru_forward(..., training=True)")
    saved = _opt(saved, "saved", x, (T, B, 4 * H))
    dy = _opt(grad_y, "grad_output", x, (T, B, H))
    dh = (
        _opt(grad_h_n, "grad_h_n", x, (B, H)).clone()
        if grad_h_n is not None
        else torch.zeros((B, H), dtype=x.dtype, device=x.device)
    )
    dx = torch.empty((T, B, I), dtype=x.dtype, device=x.device) if need_input_grad else None
    dw_ih = torch.empty((H3, I), dtype=x.dtype, device=x.device)
    dw_hh = torch.empty((H3, H), dtype=x.dtype, device=x.device)
    db_ih = torch.empty((H3,), dtype=x.dtype, device=x.device) if has_bias else None
    db_hh = torch.empty((H3,), dtype=x.dtype, device=x.device) if has_bias else None
    dxg = torch.empty((T, B, H3), dtype=x.dtype, device=x.device)
    dhg = torch.empty((T, B, H3), dtype=x.dtype, device=x.device)
    dhd = torch.empty((B, H), dtype=x.dtype, device=x.device)
    with torch.cuda.device(x.device):
        C_.cuda_gru_bwd(
            _dtype_code(x),
            T,
            B,
            I,
            H,
            x.data_ptr(),
            _ptr(h0),
            w_ih.data_ptr(),
            w_hh.data_ptr(),
            y.data_ptr(),
            saved.data_ptr(),
            _ptr(dy),
            dh.data_ptr(),
            _ptr(dx),
            dw_ih.data_ptr(),
            dw_hh.data_ptr(),
            _ptr(db_ih),
            _ptr(db_hh),
            dxg.data_ptr(),
            dhg.data_ptr(),
            dhd.data_ptr(),
            _stream(x),
        )
    return dx, dh, dw_ih, dw_hh, db_ih, db_hh


# ---------------------------------------------------------------------------------------------
# conv2d (NCHW, implicit GEMM)


def _conv_geo(x, w, stride, padding, dilation, groups):
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    if isinstance(padding, str):
        if padding == "valid":
            ph = pw = 0
        elif padding == "same":
            if (sh, sw) != (1, 1):
                raise ValueError("padding='same' is not supported for strided convolutions")
            th, tw = dh * (w.shape[2] - 1), dw * (w.shape[3] - 1)
            if th % 2 or tw % 2:
                raise NotImplementedError(
                    "padding='same' with an even effective kernel (asymmetric padding) "
                    "is not supported by the CUDA backend"
                )
            ph, pw = th // 2, tw // 2
        else:
            raise ValueError(f"padding must be 'same', 'valid', an int or a pair, got {padding!r}")
    else:
        ph, pw = _pair(padding, "padding")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups <= 0:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    if min(sh, sw, dh, dw) <= 0 or min(ph, pw) < 0:
        raise ValueError(
            f"stride/dilation must be positive and padding non-negative, got stride={stride}, "
            f"padding={padding}, dilation={dilation}"
        )
    N, C, H, W = x.shape
    K, Cg, R, S = w.shape
    if C % groups or K % groups or Cg * groups != C:
        raise ValueError(f"weight {tuple(w.shape)} does not fit input channels {C} with groups={groups}")
    return (N, C, H, W, K, R, S, sh, sw, ph, pw, dh, dw, groups)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d for CUDA NCHW tensors (zeros padding)."""
    torch = _torch()
    C_ = _core()
    x = _check(x, "input", ndim=(3, 4))
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    w = _check(weight, "weight", x, ndim=4)
    b = _opt(bias, "bias", x, (w.shape[0],))
    geo = _conv_geo(x, w, stride, padding, dilation, groups)
    P, Q = C_.cuda_conv2d_out_hw(geo)
    y = torch.empty((x.shape[0], w.shape[0], P, Q), dtype=x.dtype, device=x.device)
    with torch.cuda.device(x.device):
        C_.cuda_conv2d_fwd(_dtype_code(x), geo, x.data_ptr(), w.data_ptr(), _ptr(b), y.data_ptr(), _stream(x))
    return y.squeeze(0) if unbatched else y


def conv2d_backward(
    grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1, output_mask=(True, True, True)
):
    """(grad_input, grad_weight, grad_bias) of conv2d; entries not in output_mask are None.
    grad_weight uses split-K with a fixed-order reduction: deterministic."""
    torch = _torch()
    C_ = _core()
    x = _check(x, "input", ndim=(3, 4))
    unbatched = x.dim() == 3
    if unbatched:
        x = x.unsqueeze(0)
    w = _check(weight, "weight", x, ndim=4)
    gy = _check(grad_output, "grad_output", x, ndim=(3, 4))
    if unbatched:
        gy = gy.unsqueeze(0)
    geo = _conv_geo(x, w, stride, padding, dilation, groups)
    P, Q = C_.cuda_conv2d_out_hw(geo)
    if tuple(gy.shape) != (x.shape[0], w.shape[0], P, Q):
        raise ValueError(
            f"grad_output must have shape {(x.shape[0], w.shape[0], P, Q)}, got {tuple(gy.shape)}"
        )
    dt, st = _dtype_code(x), _stream(x)
    dx = dw = db = None
    with torch.cuda.device(x.device):
        if output_mask[0]:
            dx = torch.empty_like(x)
            C_.cuda_conv2d_bwd_data(dt, geo, gy.data_ptr(), w.data_ptr(), dx.data_ptr(), st)
            if unbatched:
                dx = dx.squeeze(0)
        if output_mask[1]:
            dw = torch.empty_like(w)
            splits = C_.cuda_conv2d_wgrad_splits(geo)
            ws = (
                torch.empty((splits,) + tuple(w.shape), dtype=w.dtype, device=w.device)
                if splits > 1
                else None
            )
            C_.cuda_conv2d_bwd_weight(
                dt, geo, gy.data_ptr(), x.data_ptr(), dw.data_ptr(), _ptr(ws), splits, st
            )
        if len(output_mask) > 2 and output_mask[2]:
            db = torch.empty((w.shape[0],), dtype=x.dtype, device=x.device)
            C_.cuda_conv2d_bwd_bias(dt, geo, gy.data_ptr(), db.data_ptr(), st)
    return dx, dw, db
