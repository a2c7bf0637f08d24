"""``python -m pycnnrnn``: the tutorial, run for real on inputs shipped in pycnnrnn/data/.

1. the VGG16 summary (torchsummary's table);
2. VGG16 on the embedded 224x224 image, with per-layer times;
3. the VQA model (VGG16 image encoder sharing those weights, LSTM question encoder) on the
   image and the embedded question, with per-part times;
4. when torch is installed: the same weights in torch, the maximum differences and speed ratios.

No pretrained weights can be downloaded, so the weights are random (seeded, torchvision's
initialisation) unless --weights points at a VGG16 state_dict (.npz, .safetensors, .pt/.pth).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def add_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("demo options (no subcommand)")
    g.add_argument("--seed", type=int, default=0, help="seed for the random weights (default 0)")
    g.add_argument("--weights", metavar="PATH", help="VGG16 state_dict to load (torchvision keys)")
    g.add_argument("--question", metavar="TEXT", help="ask this instead of the embedded question")
    g.add_argument("--threads", type=int, metavar="N", help="kernel threads (default: all available)")
    g.add_argument("--repeat", type=int, default=3, metavar="N", help="timed runs per model (default 3)")
    g.add_argument("--no-torch", action="store_true", help="skip the comparison with torch")
    g.add_argument("--no-summary", action="store_true", help="skip the VGG16 summary")


def load_image() -> np.ndarray:
    """The embedded scene as a normalised [1, 3, 224, 224] float32 batch (ToTensor + Normalize)."""
    img = np.load(DATA / "scene_224.npy")
    x = (img.astype(np.float32) / 255 - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def tokenize(text: str) -> list[str]:
    # tbmoon/basic_vqa text_helper.tokenize
    return [t.strip() for t in re.split(r"(\W+)", text.lower()) if t.strip()]


def encode_question(text: str | None) -> tuple[str, list[str], np.ndarray, int]:
    spec = json.loads((DATA / "question.json").read_text())
    text = spec["question"] if text is None else text
    vocab = {w: i for i, w in enumerate(spec["vocab"])}
    tokens = tokenize(text)[: spec["max_length"]]
    ids = np.zeros((1, spec["max_length"]), dtype=np.int64)  # right-padded with <pad> = 0
    ids[0, : len(tokens)] = [vocab.get(t, vocab["<unk>"]) for t in tokens]
    return text, tokens, ids, len(vocab)


def timed_layers(model, *inputs):
    """Run model once, timing every leaf module. Returns (output, [(name, type, shape, s)])."""
    rows, starts, handles = [], {}, []
    names = {id(m): n for n, m in model.named_modules()}

    def pre(m, args):
        starts[id(m)] = time.perf_counter()

    def post(m, args, out):
        first = out[0] if isinstance(out, tuple) else out
        rows.append((names[id(m)], type(m).__name__, tuple(first.shape), time.perf_counter() - starts[id(m)]))

    for m in model.modules():
        if not m._modules:
            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        out = model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return out, rows


def best_time(fn, repeat: int) -> tuple[object, float]:
    out, best = None, float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def run(args: argparse.Namespace) -> int:
    import pycnnrnn
    from pycnnrnn import io, models
    from pycnnrnn.cli import UserError
    from pycnnrnn.nn import init
    from pycnnrnn.nn.summary import summary

    if args.repeat < 1:
        raise UserError(f"--repeat must be >= 1, got {args.repeat}")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        pycnnrnn.set_num_threads(args.threads)
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            torch = None

    print(f"pycnnrnn {pycnnrnn.__version__}: {pycnnrnn.get_num_threads()} threads, ISA {pycnnrnn.cpu_isa()}")
    init.manual_seed(args.seed)
    vgg = models.vgg16().eval()
    if args.weights:
        vgg.load_state_dict(io.load(args.weights))
        print(f"VGG16 weights: {args.weights}")
    else:
        print(
            f"VGG16 weights: random (seed {args.seed}, torchvision's initialisation). No pretrained weights\n"
            "are downloaded, so predictions are meaningless; the numbers below measure the kernels.\n"
            "Load real ones with --weights vgg16.pth (or .npz / .safetensors)."
        )
    vgg.prepack()  # inference: the Winograd matrices built once, as onnxruntime prepacks a session
    print("VGG16 prepacked for inference (Module.prepack()): eval mode, read-only weights.")
    if not args.no_summary:
        print("\nVGG16 summary, input (3, 224, 224):")
        summary(vgg, (3, 224, 224))

    image = load_image()
    text, tokens, ids, vocab_size = encode_question(args.question)
    print(f"\nimage: pycnnrnn/data/scene_224.npy {image.shape}; question: {text!r} -> {tokens}")

    # ---------------------------------------------------------------- VGG16, per layer
    logits, rows = timed_layers(vgg, image)
    print("\nVGG16 forward on the image, per layer (pycnnrnn kernels):")
    print(f"  {'layer':<14} {'type':<18} {'output':<20} {'ms':>8}")
    for name, kind, shape, s in rows:
        print(f"  {name:<14} {kind:<18} {str(list(shape)):<20} {s * 1e3:8.2f}")
    print(f"  {'total':<54} {sum(r[3] for r in rows) * 1e3:8.2f}")
    top = np.argsort(logits[0])[::-1][:5]
    print(f"  top-5 ImageNet class ids: {top.tolist()}")

    # ---------------------------------------------------------------- VQA
    vqa = models.VqaModel(1024, vocab_size, 1000, 300, 2, 512, backbone=vgg).eval()
    parts = {
        "img_encoder (VGG16 + fc + L2)": lambda: vqa.img_encoder(image),
        "qst_encoder (Embedding + LSTM)": lambda: vqa.qst_encoder(ids),
    }
    print("\nVQA model (tbmoon/basic_vqa, VGG16 backbone) on the image and question:")
    for label, fn in parts.items():
        _, s = best_time(fn, args.repeat)
        print(f"  {label:<40} {s * 1e3:8.2f} ms")
    answer, vqa_s = best_time(lambda: vqa(image, ids), args.repeat)
    print(f"  {'whole model':<40} {vqa_s * 1e3:8.2f} ms")
    print(f"  top-5 answer ids: {np.argsort(answer[0])[::-1][:5].tolist()} (random weights: no real answer)")
    vgg_out, vgg_s = best_time(lambda: vgg(image), args.repeat)

    # ---------------------------------------------------------------- trained small VQA
    from pycnnrnn.train import infer

    print(
        "\nThe small VQA model trained by `python -m pycnnrnn train` (weights shipped in\n"
        "pycnnrnn/data/vqa_small.npz, 90% on held-out questions), numpy only, on a generated scene:"
    )
    print(infer.demo())

    # ---------------------------------------------------------------- torch
    if args.no_torch:
        print("\ntorch comparison skipped (--no-torch).")
        return 0
    if torch is None:
        print("\ntorch is not installed: comparison skipped (pip install torch to see it).")
        return 0
    from pycnnrnn.models import torch_reference as R

    torch.set_num_threads(pycnnrnn.get_num_threads())
    t_vgg = R.twin_of(vgg, lambda: R.vgg("vgg16")).eval()
    t_vqa = R.twin_of(vqa, lambda: R.VqaModel(1024, vocab_size, 1000, 300, 2, 512, backbone="vgg16")).eval()
    t_image, t_ids = torch.from_numpy(image), torch.from_numpy(ids)
    with torch.no_grad():
        t_vgg_out, t_vgg_s = best_time(lambda: t_vgg(t_image).numpy(), args.repeat)
        t_answer, t_vqa_s = best_time(lambda: t_vqa(t_image, t_ids).numpy(), args.repeat)
    print(f"\ntorch {torch.__version__} on the same weights ({torch.get_num_threads()} threads):")
    print(
        f"  {'model':<10} {'max |diff|':>12} {'max |out|':>10} {'pycnnrnn ms':>12} {'torch ms':>10} {'speed-up':>9}"
    )
    for label, ours, theirs, s, ts in (
        ("VGG16", vgg_out, t_vgg_out, vgg_s, t_vgg_s),
        ("VQA", answer, t_answer, vqa_s, t_vqa_s),
    ):
        diff = float(np.max(np.abs(ours - theirs)))
        print(
            f"  {label:<10} {diff:12.3e} {float(np.max(np.abs(theirs))):10.3f} {s * 1e3:12.2f} {ts * 1e3:10.2f} "
            f"{ts / s:8.2f}x"
        )
    print("  (speed-up = torch time / pycnnrnn time, best of --repeat runs; > 1 means pycnnrnn is faster)")
    return 0
