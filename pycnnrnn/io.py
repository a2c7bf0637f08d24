"""Weights in and out: .npz and .safetensors without torch, .pt/.pth through torch when installed.

    sd = pycnnrnn.io.load("vgg16.safetensors")       # OrderedDict[str, np.ndarray]
    model.load_state_dict(sd)
    pycnnrnn.io.save(model.state_dict(), "vgg16.npz")

The safetensors reader/writer is self-contained: an 8-byte little-endian header length, a JSON
header {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then
the raw little-endian tensor bytes (offsets relative to the end of the header).
"""

from __future__ import annotations

import json
import os
import struct
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from .nn.module import to_numpy

__all__ = ["load", "load_safetensors", "save", "save_safetensors"]

_ST_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_ST_NAMES = {dt.newbyteorder("<") if dt.itemsize > 1 else dt: name for name, dt in _ST_DTYPES.items()}
_MAX_HEADER = 100 << 20
_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def _suffix(path) -> str:
    return os.path.splitext(os.fspath(path))[1].lower()


def load(path, *, unwrap: bool = True) -> OrderedDict:
    """Read a state_dict from .npz, .safetensors or (with torch) .pt/.pth/.bin/.ckpt.

    unwrap: a torch checkpoint dict holding the weights under "state_dict" or "model" (e.g.
    tbmoon/basic_vqa's {'epoch', 'state_dict'}) yields just those weights."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    ext = _suffix(path)
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return OrderedDict((k, z[k]) for k in z.files)
    if ext == ".safetensors":
        return load_safetensors(path)
    if ext in _TORCH_SUFFIXES:
        return _load_torch(path, unwrap)
    raise ValueError(
        f"unknown weights format {ext!r} for {path}: expected .npz, .safetensors or one of {_TORCH_SUFFIXES}"
    )


def save(state_dict: Mapping, path, *, metadata: Mapping[str, str] | None = None) -> None:
    """Write a state_dict (arrays or CPU torch tensors) to .npz, .safetensors or (with torch) .pt/.pth."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of str to arrays, got {type(state_dict).__name__}")
    path = os.fspath(path)
    ext = _suffix(path)
    arrays = OrderedDict((str(k), to_numpy(v, str(k))) for k, v in state_dict.items())
    if ext == ".npz":
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    elif ext == ".safetensors":
        save_safetensors(arrays, path, metadata=metadata)
    elif ext in _TORCH_SUFFIXES:
        torch = _import_torch(path)
        torch.save(
            OrderedDict(
                (k, torch.from_numpy(np.ascontiguousarray(v if v.flags.writeable else v.copy())))
                for k, v in arrays.items()
            ),
            path,
        )
    else:
        raise ValueError(
            f"unknown weights format {ext!r} for {path}: expected .npz, .safetensors or one of {_TORCH_SUFFIXES}"
        )


# --------------------------------------------------------------------------- safetensors
def save_safetensors(state_dict: Mapping, path, *, metadata: Mapping[str, str] | None = None) -> None:
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, value in state_dict.items():
        a = to_numpy(value, name)
        dt = a.dtype.newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype
        if dt not in _ST_NAMES:
            raise TypeError(f"{name}: dtype {a.dtype} cannot be stored in safetensors")
        data = np.ascontiguousarray(a, dtype=dt).tobytes()
        header[name] = {
            "dtype": _ST_NAMES[dt],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # pad so the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def load_safetensors(path) -> OrderedDict:
    """Read every tensor of a .safetensors file (BF16 is widened to float32)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()

    def bad(why: str) -> ValueError:
        return ValueError(f"{path} is not a valid safetensors file: {why}")

    if len(data) < 8:
        raise bad(f"{len(data)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(_MAX_HEADER, len(data) - 8):
        raise bad(f"header length {n} exceeds the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad(f"header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    body = memoryview(data)[8 + n :]
    out: OrderedDict = OrderedDict()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype_name, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise bad(f"entry {name!r} lacks dtype/shape/data_offsets") from None
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise bad(f"entry {name!r} has shape {shape}")
        if not (isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end <= len(body)):
            raise bad(f"entry {name!r} has data_offsets {[begin, end]} outside the {len(body)}-byte data")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if dtype_name == "BF16":
            if end - begin != 2 * count:
                raise bad(f"entry {name!r}: {end - begin} bytes for {count} BF16 values")
            bits = np.frombuffer(body[begin:end], dtype="<u2").astype(np.uint32) << 16
            out[name] = bits.view(np.float32).reshape(shape)
            continue
        if dtype_name not in _ST_DTYPES:
            raise bad(f"entry {name!r} has unsupported dtype {dtype_name!r}")
        dt = _ST_DTYPES[dtype_name]
        if end - begin != dt.itemsize * count:
            raise bad(f"entry {name!r}: {end - begin} bytes for shape {shape} of {dtype_name}")
        out[name] = np.frombuffer(body[begin:end], dtype=dt).reshape(shape).astype(dt.newbyteorder("="))
    return out


# --------------------------------------------------------------------------- torch
def _import_torch(path: str):
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None:
        raise ImportError(
            f"reading or writing {path} needs torch (pip install torch); .npz and .safetensors work without it"
        )
    return torch


def _load_torch(path: str, unwrap: bool) -> OrderedDict:
    torch = _import_torch(path)
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if unwrap and isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{path} holds a {type(obj).__name__}, not a state_dict (a mapping of names to tensors)"
        )
    out: OrderedDict = OrderedDict()
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            out[str(k)] = to_numpy(v, str(k))
        elif not unwrap:
            raise ValueError(f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor")
    return out
