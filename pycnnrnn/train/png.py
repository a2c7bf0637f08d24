"""Tiny PNG output without matplotlib: write RGB arrays and draw simple line charts (numpy + zlib).

Used by ``python -m pycnnrnn train`` to plot the training curves when matplotlib is absent."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write a uint8 (H, W, 3) array as an 8-bit RGB PNG."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must have shape (H, W, 3), got {rgb.shape}")
    h, w, _ = rgb.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9))
    png += chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def _line(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour, width: int = 2) -> None:
    n = int(max(abs(x1 - x0), abs(y1 - y0)) * 2) + 1
    xs = np.linspace(x0, x1, n)
    ys = np.linspace(y0, y1, n)
    h, w, _ = img.shape
    for dx in range(-(width // 2), width - width // 2):
        for dy in range(-(width // 2), width - width // 2):
            xi = np.clip(np.round(xs).astype(int) + dx, 0, w - 1)
            yi = np.clip(np.round(ys).astype(int) + dy, 0, h - 1)
            img[yi, xi] = colour


def line_chart(
    path: str | Path,
    series: dict[str, list[float]],
    *,
    ylim: tuple[float, float] = (0.0, 1.0),
    size: tuple[int, int] = (360, 640),
    colours=((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)),
) -> None:
    """Plot each series (values at x = 1..len) as a polyline on a white canvas with a light
    grid at every 0.1 of ``ylim`` and one vertical grid line per epoch. No text: the caller
    prints the legend (series name -> colour) next to the file name."""
    h, w = size
    img = np.full((h, w, 3), 255, dtype=np.uint8)
    left, right, top, bottom = 30, w - 15, 15, h - 25
    n = max((len(v) for v in series.values()), default=1)
    lo, hi = ylim

    def px(i: float, v: float) -> tuple[float, float]:
        x = left + (right - left) * (i / max(n - 1, 1))
        y = bottom - (bottom - top) * (min(max(v, lo), hi) - lo) / (hi - lo)
        return x, y

    for k in range(11):
        y = bottom - (bottom - top) * k / 10
        img[int(round(y)), left:right] = (200, 200, 200) if k not in (0, 9, 10) else (120, 120, 120)
    for i in range(n):
        x = int(round(px(i, lo)[0]))
        img[top:bottom, x] = (225, 225, 225)
    img[top:bottom, left] = 0
    img[bottom, left:right] = 0
    for c, (_name, vals) in zip(colours, series.items()):
        pts = [px(i, v) for i, v in enumerate(vals)]
        for (xa, ya), (xb, yb) in zip(pts, pts[1:]):
            _line(img, xa, ya, xb, yb, c)
        for x, y in pts:
            _line(img, x - 2, y, x + 2, y, c, width=5)
    write_png(path, img)
