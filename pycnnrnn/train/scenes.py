"""Procedural VQA data: small scenes of coloured shapes and questions about them (numpy only).

A scene is a ``size x size`` RGB image with 1-4 objects, each a square, circle or triangle in
one of six colours, placed in distinct cells of a 3x3 grid (with a pixel of jitter). Colours are
distinct within a scene, so "the red object" always names one object. Questions come from five
families, each with a single correct answer:

========== ================================================== =========================
family     example                                            answers
========== ================================================== =========================
colour     what color is the circle?   (shape unique in scene) red, green, ...
shape      what shape is the blue object?                     square, circle, triangle
count      how many triangles are there? / how many objects... zero .. four
exist      is there a yellow square?                          yes, no (balanced)
relation   is the red object left of the green object?        yes, no
========== ================================================== =========================

Everything is deterministic for a given seed. Questions are tokenised like the VQA tutorial
(lowercase, split on non-word characters), mapped through a fixed vocabulary with
``<pad>`` = 0 and ``<unk>`` = 1, and right-padded to ``MAX_LEN``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 240),
    "yellow": (235, 215, 40),
    "purple": (160, 60, 210),
    "cyan": (40, 210, 220),
}
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")
NUMBERS: tuple[str, ...] = ("zero", "one", "two", "three", "four")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
FAMILIES: tuple[str, ...] = ("colour", "shape", "count", "exist", "relation")

ANSWERS: tuple[str, ...] = (*COLOURS, *SHAPES, *NUMBERS, "yes", "no")
MAX_LEN = 10
GRID = 3
MAX_OBJECTS = 4

_TEMPLATE_TEXT = (
    "what color is the {shape} ? what shape is the {colour} object ? how many {shape}s are there ? "
    "how many objects are there ? is there a {colour} {shape} ? is the {colour} object {relation} "
    "the {colour} object ?"
)


def tokenize(question: str) -> list[str]:
    """The tutorial's tokenizer: lowercase, split on runs of non-word characters, drop empties."""
    return [t for t in re.split(r"\W+", question.lower()) if t.strip()]


def _build_vocab() -> tuple[str, ...]:
    words: set[str] = set()
    fill = {
        "shape": list(SHAPES),
        "colour": list(COLOURS),
        "relation": list(RELATIONS),
    }
    for template in _TEMPLATE_TEXT.split("?"):
        toks = template.split()
        for tok in toks:
            m = re.fullmatch(r"\{(\w+)\}(s?)", tok)
            if m:
                for v in fill[m.group(1)]:
                    words.update(tokenize(v + m.group(2)))
            else:
                words.update(tokenize(tok))
    return ("<pad>", "<unk>", *sorted(words))


VOCAB: tuple[str, ...] = _build_vocab()
WORD_INDEX: dict[str, int] = {w: i for i, w in enumerate(VOCAB)}
ANSWER_INDEX: dict[str, int] = {a: i for i, a in enumerate(ANSWERS)}


def encode_question(question: str, max_len: int = MAX_LEN) -> np.ndarray:
    """Token ids (int64, right-padded with <pad>=0); unknown words map to <unk>=1."""
    ids = [WORD_INDEX.get(t, 1) for t in tokenize(question)][:max_len]
    out = np.zeros(max_len, dtype=np.int64)
    out[: len(ids)] = ids
    return out


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    row: int
    col: int


def _shape_mask(shape: str, size: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    if shape == "square":
        return (np.abs(dy) <= r - 0.5) & (np.abs(dx) <= r - 0.5)
    if shape == "circle":
        return dy * dy + dx * dx <= r * r
    if shape == "triangle":  # pointing up: apex at top, base at the bottom
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) * 0.5 + 0.25)
    raise ValueError(f"unknown shape {shape!r}")


def render(objects: list[SceneObject], size: int = 32, rng: np.random.Generator | None = None) -> np.ndarray:
    """Draw objects into a uint8 image of shape (3, size, size) on a dark, slightly noisy background."""
    rng = rng if rng is not None else np.random.default_rng(0)
    img = np.empty((size, size, 3), dtype=np.float32)
    img[...] = rng.uniform(10, 40)
    img += rng.normal(0.0, 4.0, size=img.shape)
    cell = size / GRID
    r = cell * 0.38
    for o in objects:
        cy = (o.row + 0.5) * cell + rng.uniform(-1.0, 1.0)
        cx = (o.col + 0.5) * cell + rng.uniform(-1.0, 1.0)
        m = _shape_mask(o.shape, size, cy, cx, r)
        colour = np.asarray(COLOURS[o.colour], dtype=np.float32) + rng.normal(0.0, 8.0, size=3)
        img[m] = colour
    return np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1).copy()


def random_scene(rng: np.random.Generator) -> list[SceneObject]:
    n = int(rng.integers(1, MAX_OBJECTS + 1))
    cells = rng.choice(GRID * GRID, size=n, replace=False)
    colours = rng.choice(len(COLOURS), size=n, replace=False)
    names = list(COLOURS)
    return [
        SceneObject(SHAPES[int(rng.integers(len(SHAPES)))], names[int(c)], int(p) // GRID, int(p) % GRID)
        for p, c in zip(cells, colours)
    ]


def _relation_holds(a: SceneObject, rel: str, b: SceneObject) -> bool:
    return {
        "left of": a.col < b.col,
        "right of": a.col > b.col,
        "above": a.row < b.row,
        "below": a.row > b.row,
    }[rel]


def ask(objects: list[SceneObject], family: str, rng: np.random.Generator) -> tuple[str, str] | None:
    """One (question, answer) of the given family about the scene, or None if the family has no
    unambiguous question for it (e.g. colour questions need a shape that occurs exactly once)."""
    shapes = [o.shape for o in objects]
    if family == "colour":
        unique = [o for o in objects if shapes.count(o.shape) == 1]
        if not unique:
            return None
        o = unique[int(rng.integers(len(unique)))]
        return f"what color is the {o.shape}?", o.colour
    if family == "shape":
        o = objects[int(rng.integers(len(objects)))]
        return f"what shape is the {o.colour} object?", o.shape
    if family == "count":
        if rng.random() < 0.25:
            return "how many objects are there?", NUMBERS[len(objects)]
        s = SHAPES[int(rng.integers(len(SHAPES)))]
        return f"how many {s}s are there?", NUMBERS[shapes.count(s)]
    if family == "exist":
        present = {(o.colour, o.shape) for o in objects}
        if rng.random() < 0.5:
            c, s = sorted(present)[int(rng.integers(len(present)))]
            return f"is there a {c} {s}?", "yes"
        # a near miss half of the time: a colour that is present with a shape it doesn't have
        colours_present = sorted({o.colour for o in objects})
        for _ in range(100):
            pool = colours_present if rng.random() < 0.5 else list(COLOURS)
            c = pool[int(rng.integers(len(pool)))]
            s = SHAPES[int(rng.integers(len(SHAPES)))]
            if (c, s) not in present:
                return f"is there a {c} {s}?", "no"
        return None
    if family == "relation":
        if len(objects) < 2:
            return None
        i, j = rng.choice(len(objects), size=2, replace=False)
        a, b = objects[int(i)], objects[int(j)]
        rel = RELATIONS[int(rng.integers(len(RELATIONS)))]
        ans = "yes" if _relation_holds(a, rel, b) else "no"
        return f"is the {a.colour} object {rel} the {b.colour} object?", ans
    raise ValueError(f"unknown question family {family!r}")


@dataclass
class VqaData:
    """Samples share images: sample k asks ``questions[k]`` about ``images[scene[k]]``."""

    images: np.ndarray  # uint8 (S, 3, size, size)
    scene: np.ndarray  # int64 (N,)
    questions: np.ndarray  # int64 (N, MAX_LEN)
    answers: np.ndarray  # int64 (N,)
    family: np.ndarray  # int64 (N,) index into FAMILIES
    texts: list[str]

    def __len__(self) -> int:
        return len(self.answers)


def make_dataset(n_scenes: int, questions_per_scene: int = 5, size: int = 32, seed: int = 0) -> VqaData:
    """Generate ``n_scenes`` scenes and ``questions_per_scene`` questions each (cycling through
    the families so they are balanced), deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    images = np.empty((n_scenes, 3, size, size), dtype=np.uint8)
    scene, qs, ans, fam, texts = [], [], [], [], []
    k = 0
    for s in range(n_scenes):
        objs = random_scene(rng)
        images[s] = render(objs, size, rng)
        got = 0
        tries = 0
        while got < questions_per_scene and tries < 4 * questions_per_scene:
            f = FAMILIES[k % len(FAMILIES)]
            k += 1
            tries += 1
            qa = ask(objs, f, rng)
            if qa is None:
                continue
            scene.append(s)
            qs.append(encode_question(qa[0]))
            ans.append(ANSWER_INDEX[qa[1]])
            fam.append(FAMILIES.index(f))
            texts.append(qa[0])
            got += 1
    return VqaData(
        images=images,
        scene=np.asarray(scene, dtype=np.int64),
        questions=np.stack(qs).astype(np.int64),
        answers=np.asarray(ans, dtype=np.int64),
        family=np.asarray(fam, dtype=np.int64),
        texts=texts,
    )


def normalize_images(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 3, H, W) -> float32 in [-1, 1] (the model's input convention)."""
    return (images.astype(np.float32) - 127.5) / 127.5


def demo_scene(seed: int = 7, size: int = 32) -> tuple[np.ndarray, list[SceneObject], list[tuple[str, str]]]:
    """A fixed scene with one question per family and its true answer, for demos."""
    rng = np.random.default_rng(seed)
    while True:
        objs = random_scene(rng)
        if len(objs) >= 3 and any([o.shape for o in objs].count(o.shape) == 1 for o in objs):
            break
    img = render(objs, size, rng)
    qa = [q for q in (ask(objs, f, rng) for f in FAMILIES) if q is not None]
    return img, objs, qa


def describe(objects: list[SceneObject]) -> str:
    rows = ("top", "middle", "bottom")
    cols = ("left", "centre", "right")
    return ", ".join(f"{o.colour} {o.shape} ({rows[o.row]} {cols[o.col]})" for o in objects)
