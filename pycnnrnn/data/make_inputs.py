"""How the demo's embedded inputs were made (run ``python -m pycnnrnn.data.make_inputs`` to
regenerate them): a procedurally drawn 224x224 RGB scene, a house under a sky with a sun and
grass, stored as uint8 HWC (.npy); and a question with its small vocabulary (.json), tokenised
like tbmoon/basic_vqa (lowercase, split on non-word runs, <pad>=0, <unk>=1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
IMAGE = HERE / "scene_224.npy"
QUESTION = HERE / "question.json"


def draw_scene(size: int = 224, seed: int = 2024) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / (size - 1)
    img = np.zeros((size, size, 3))
    sky = y < 0.62
    img[sky] = np.stack([0.35 + 0.3 * y, 0.6 + 0.25 * y, 0.95 - 0.1 * y], -1)[sky]
    grass = ~sky
    img[grass] = np.stack([0.15 + 0.1 * x, 0.55 - 0.2 * (y - 0.62), 0.12 + 0 * x], -1)[grass]
    sun = (x - 0.8) ** 2 + (y - 0.18) ** 2 < 0.09**2
    img[sun] = (1.0, 0.88, 0.3)
    wall = (x > 0.2) & (x < 0.5) & (y > 0.45) & (y < 0.78)
    img[wall] = (0.78, 0.16, 0.12)
    roof = (y < 0.45) & (y > 0.3) & (np.abs(x - 0.35) < (y - 0.3) * 1.2)
    img[roof] = (0.35, 0.2, 0.12)
    door = (x > 0.31) & (x < 0.39) & (y > 0.62) & (y < 0.78)
    img[door] = (0.3, 0.18, 0.08)
    img += rng.normal(0, 0.02, img.shape)  # a little texture
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def main() -> None:
    np.save(IMAGE, draw_scene())
    question = "What color is the house under the blue sky?"
    words = ["<pad>", "<unk>"] + sorted(
        {
            "what",
            "color",
            "is",
            "the",
            "house",
            "under",
            "blue",
            "sky",
            "?",
            "how",
            "many",
            "are",
            "there",
            "sun",
            "door",
            "red",
            "green",
            "grass",
            "a",
            "of",
            "in",
            "picture",
            "where",
        }
    )
    QUESTION.write_text(json.dumps({"question": question, "max_length": 30, "vocab": words}, indent=1) + "\n")


if __name__ == "__main__":
    main()
