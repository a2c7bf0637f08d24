"""pycnnrnn.io: .npz / .safetensors round trips without torch, torch .pt/.pth interop."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from helpers import run_python

from pycnnrnn import io as pio
from pycnnrnn import nn


def _state(rng):
    return {
        "features.0.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "features.0.bias": rng.standard_normal(4).astype(np.float32),
        "lstm.weight_ih_l0": rng.standard_normal((8, 5)),  # float64
        "embed.ids": rng.integers(-5, 5, size=(3, 2)).astype(np.int64),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "mask": np.array([True, False]),
    }


@pytest.mark.parametrize("ext", [".npz", ".safetensors"])
def test_round_trip(tmp_path, rng, ext):
    sd = _state(rng)
    path = tmp_path / f"w{ext}"
    pio.save(sd, path)
    back = pio.load(path)
    assert list(back) == list(sd)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype, k
        assert back[k].shape == v.shape, k
        np.testing.assert_array_equal(back[k], v, err_msg=k)


def test_safetensors_layout_and_metadata(tmp_path, rng):
    path = tmp_path / "w.safetensors"
    sd = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64)}
    pio.save_safetensors(sd, path, metadata={"format": "pt"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8 : 8 + n])
    assert header["__metadata__"] == {"format": "pt"}
    assert header["a"] == {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}
    assert header["b"] == {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]}
    assert raw[8 + n :] == sd["a"].tobytes() + sd["b"].tobytes()


def test_safetensors_bf16_is_widened(tmp_path):
    values = np.array([1.0, -2.5, 0.15625], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2")
    header = json.dumps({"x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    path = tmp_path / "bf.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bf16.tobytes())
    np.testing.assert_array_equal(pio.load(path)["x"], values)


def _st(entry: dict, data: bytes = b"\0" * 8) -> bytes:
    header = json.dumps({"x": entry}).encode()
    return struct.pack("<Q", len(header)) + header + data


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"\x01\x00", "shorter than"),
        (struct.pack("<Q", 1000) + b"{}", "exceeds the file"),
        (struct.pack("<Q", 4) + b"nope", "not JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (_st({"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}), "outside"),
        (_st({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}), "bytes for"),
        (_st({"dtype": "Q99", "shape": [2], "data_offsets": [0, 8]}), "unsupported dtype"),
        (_st({"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}), "shape"),
        (_st({"shape": [2], "data_offsets": [0, 8]}), "lacks"),
    ],
    ids=[
        "short",
        "header-too-long",
        "not-json",
        "not-object",
        "outside",
        "size",
        "dtype",
        "neg-shape",
        "lacks",
    ],
)
def test_safetensors_rejects_corrupt_files(tmp_path, payload, match):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=match):
        pio.load(path)


def test_bad_paths_and_formats(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        pio.load(tmp_path / "missing.npz")
    p = tmp_path / "w.h5"
    p.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"unknown weights format '\.h5'"):
        pio.load(p)
    with pytest.raises(ValueError, match="unknown weights format"):
        pio.save({"a": np.zeros(1)}, tmp_path / "w.txt")
    with pytest.raises(TypeError, match="mapping"):
        pio.save([np.zeros(1)], tmp_path / "w.npz")


def test_module_round_trip_through_files(tmp_path):
    nn.init.manual_seed(0)
    a = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Linear(4, 2))
    b = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Linear(4, 2))
    for ext in (".npz", ".safetensors"):
        pio.save(a.state_dict(), tmp_path / f"m{ext}")
        b.load_state_dict(pio.load(tmp_path / f"m{ext}"))
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert ka == kb
            np.testing.assert_array_equal(va, vb)


def test_npz_and_safetensors_without_torch(tmp_path):
    path = tmp_path / "w.safetensors"
    code = f"""
import sys; sys.modules['torch'] = None
import numpy as np
from pycnnrnn import io
io.save({{'w': np.arange(3, dtype=np.float32)}}, {str(path)!r})
io.save({{'w': np.arange(3, dtype=np.float32)}}, {str(path.with_suffix(".npz"))!r})
assert io.load({str(path)!r})['w'].tolist() == [0, 1, 2]
assert io.load({str(path.with_suffix(".npz"))!r})['w'].tolist() == [0, 1, 2]
try:
    io.load({str(path)!r}.replace('.safetensors', '.pt'))
except FileNotFoundError:
    pass
open({str(tmp_path / "x.pt")!r}, 'wb').write(b'x')
try:
    io.load({str(tmp_path / "x.pt")!r})
except ImportError as e:
    assert 'needs torch' in str(e)
    print('ok')
"""
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


@pytest.mark.torch
def test_torch_checkpoints(tmp_path, rng):
    torch = pytest.importorskip("torch")
    tm = torch.nn.LSTM(5, 7, 2)
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": tm.state_dict()}, path)
    sd = pio.load(path)
    assert list(sd) == list(tm.state_dict())
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(sd[k], v.numpy())
    with pytest.raises(ValueError, match="not a tensor"):
        pio.load(path, unwrap=False)
    # writing .pt from numpy, read back by torch
    sd2 = {"w": rng.standard_normal((2, 3)).astype(np.float32)}
    pio.save(sd2, tmp_path / "w.pt")
    back = torch.load(tmp_path / "w.pt", weights_only=True)
    np.testing.assert_array_equal(back["w"].numpy(), sd2["w"])
    # a torch model's state_dict straight into safetensors, read by pycnnrnn
    pio.save(tm.state_dict(), tmp_path / "lstm.safetensors")
    np.testing.assert_array_equal(
        pio.load(tmp_path / "lstm.safetensors")["weight_hh_l1"], tm.weight_hh_l1.detach()
    )
