"""pycnnrnn.summary against torchsummary's algorithm run on the torch twin, hand-computed
counts (VGG, the VQA model with its LSTM), and the fixes over torchsummary's bugs."""

# ruff: noqa: UP030, UP031, UP032  (torchsummary's code is kept verbatim below)
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

import pycnnrnn
from pycnnrnn import models, nn
from pycnnrnn.nn.summary import summary

torch = pytest.importorskip("torch")
R = pytest.importorskip("pycnnrnn.models.torch_reference")

pytestmark = pytest.mark.torch


def torchsummary_string(model, input_size, batch_size=-1) -> str:
    """sksq96/pytorch-summary's summary_string (@345d898), on CPU, single float input."""
    summary_ = OrderedDict()
    hooks = []

    def register_hook(module):
        def hook(module, input, output):
            class_name = str(module.__class__).split(".")[-1].split("'")[0]
            m_key = "%s-%i" % (class_name, len(summary_) + 1)
            summary_[m_key] = OrderedDict()
            summary_[m_key]["output_shape"] = list(output.size())
            summary_[m_key]["output_shape"][0] = batch_size
            params = 0
            if hasattr(module, "weight") and hasattr(module.weight, "size"):
                params += int(torch.prod(torch.LongTensor(list(module.weight.size()))))
                summary_[m_key]["trainable"] = module.weight.requires_grad
            if hasattr(module, "bias") and hasattr(module.bias, "size"):
                params += int(torch.prod(torch.LongTensor(list(module.bias.size()))))
            summary_[m_key]["nb_params"] = params

        if not isinstance(module, (torch.nn.Sequential, torch.nn.ModuleList)) and module is not model:
            hooks.append(module.register_forward_hook(hook))

    model.apply(register_hook)
    with torch.no_grad():
        model(torch.rand(2, *input_size))
    for h in hooks:
        h.remove()
    out = ["-" * 64, "{:>20}  {:>25} {:>15}".format("Layer (type)", "Output Shape", "Param #"), "=" * 64]
    total_params = total_output = trainable_params = 0
    for layer in summary_:
        out.append(
            "{:>20}  {:>25} {:>15}".format(
                layer, str(summary_[layer]["output_shape"]), "{0:,}".format(summary_[layer]["nb_params"])
            )
        )
        total_params += summary_[layer]["nb_params"]
        total_output += np.prod(summary_[layer]["output_shape"])
        if summary_[layer].get("trainable"):
            trainable_params += summary_[layer]["nb_params"]
    total_input_size = abs(np.prod(input_size) * batch_size * 4.0 / (1024**2.0))
    total_output_size = abs(2.0 * total_output * 4.0 / (1024**2.0))
    total_params_size = abs(total_params * 4.0 / (1024**2.0))
    total_size = total_params_size + total_output_size + total_input_size
    out += [
        "=" * 64,
        "Total params: {0:,}".format(total_params),
        "Trainable params: {0:,}".format(trainable_params),
        "Non-trainable params: {0:,}".format(total_params - trainable_params),
        "-" * 64,
        "Input size (MB): %0.2f" % total_input_size,
        "Forward/backward pass size (MB): %0.2f" % total_output_size,
        "Params size (MB): %0.2f" % total_params_size,
        "Estimated Total Size (MB): %0.2f" % total_size,
        "-" * 64,
    ]
    return "\n".join(out)


@pytest.fixture(scope="module")
def vgg16_pair():
    nn.init.manual_seed(0)
    ours = models.vgg16().eval()
    return ours, R.twin_of(ours, lambda: R.vgg("vgg16")).eval()


def test_vgg16_table_equals_torchsummary(vgg16_pair, capsys):
    ours, theirs = vgg16_pair
    s = summary(ours, (3, 224, 224))
    printed = capsys.readouterr().out
    assert printed == str(s) + "\n"
    assert str(s) == torchsummary_string(theirs, (3, 224, 224))
    text = str(s)
    # torchsummary README's VGG16 numbers (its older VGG lacks the AdaptiveAvgPool2d row, which
    # adds 2 x 25088 x 4 bytes = 0.19 MB to the pass size)
    for line in (
        "            Conv2d-1         [-1, 64, 224, 224]           1,792",
        "Total params: 138,357,544",
        "Input size (MB): 0.57",
        "Params size (MB): 527.79",
        "Forward/backward pass size (MB): 218.78",
        "Estimated Total Size (MB): 747.15",
        "AdaptiveAvgPool2d-32            [-1, 512, 7, 7]               0",
    ):
        assert line in text.splitlines(), line
    assert len(s.rows) == 39 and s.totals == (138_357_544, 138_357_544)


def test_vgg16_without_last_linear(vgg16_pair):
    ours, _ = vgg16_pair
    enc = models.ImgEncoder(1024, backbone=ours)
    s = summary(enc.model, (3, 224, 224), verbose=False)
    assert s.total_params == 134_260_544  # the tutorial's figure


@pytest.mark.parametrize("name", ["vgg11", "vgg19"])
def test_small_input_tables_equal_torchsummary(name):
    nn.init.manual_seed(1)
    ours = getattr(models, name)(num_classes=7).eval()
    theirs = R.twin_of(ours, lambda: R.vgg(name, num_classes=7)).eval()
    for batch_size in (-1, 4):
        assert str(summary(ours, (3, 32, 48), batch_size=batch_size, verbose=False)) == torchsummary_string(
            theirs, (3, 32, 48), batch_size=batch_size
        )


def test_vqa_summary_counts_lstm_and_handles_long_input():
    nn.init.manual_seed(2)
    vocab = 1000
    m = models.VqaModel(1024, vocab, backbone="vgg19").eval()
    s = summary(m, [(3, 64, 64), (30,)], dtypes=[np.float32, torch.long], verbose=False)
    # semantics.md §5: 151,658,064 + 300 V in all (the LSTM's 3,768,320 included)
    assert s.total_params == 151_658_064 + 300 * vocab
    rows = {c.class_name: c for c in s.rows}
    lstm = rows["LSTM"]
    assert lstm.params == 3_768_320
    assert lstm.output_shapes == [[30, -1, 512], [2, -1, 512], [2, -1, 512]]
    assert rows["Embedding"].output_shapes == [[-1, 30, 300]]
    tanh_rows = [c for c in s.rows if c.class_name == "Tanh"]
    assert len(tanh_rows) == 4  # qst_encoder.tanh twice, the head's tanh twice
    assert str(s).count("Tanh-") == 4
    # integer input bytes use int64's 8 bytes; image 3*64*64 float32
    assert s.input_bytes == 3 * 64 * 64 * 4 + 30 * 8
    assert s.mult_adds >= 30 * (4 * 512 * (300 + 512) + 4 * 512 * (512 + 512))


def test_mult_adds_match_hand_count():
    nn.init.manual_seed(3)
    m = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, groups=2),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 10),
    )
    s = summary(m, (3, 8, 8), mode="tree", mult_adds=True, verbose=False)
    expected = 8 * 8 * 8 * 3 * 9 + 8 * 6 * 6 * 4 * 9 + 10 * 288
    assert s.mult_adds == expected
    text = str(s)
    assert "├─Conv2d: 1-1" in text and "Mult-Adds" in text and f"{8 * 8 * 8 * 3 * 9:,}" in text
    assert f"Total mult-adds (M): {expected / 1e6:0.2f}" in text
    lstm = nn.LSTM(5, 7, 2)
    s = summary(lstm, (4, 5), verbose=False)  # input (N=2, 4, 5) read as (L=2, N=4, 5): seq-first
    assert s.mult_adds == 2 * 4 * (4 * 7 * (5 + 7) + 4 * 7 * (7 + 7)) // 2  # per sample of the batch of 2


def test_shared_module_counted_once_and_frozen_params():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.act = nn.Tanh()
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            return self.out(self.act(self.fc(self.act(self.fc(x)))))

    m = Tied()
    m.fc.requires_grad_(False)
    s = summary(m, (4,), verbose=False)
    assert s.total_params == 20 + 10
    assert s.trainable_params == 10 and s.non_trainable_params == 20
    fc_rows = [c for c in s.rows if c.class_name == "Linear"]
    assert [c.params_str() for c in fc_rows] == ["20", "(recursive)", "10"]
    assert "Non-trainable params: 20" in str(s)


def test_tree_mode_structure():
    nn.init.manual_seed(4)
    m = models.vgg11(num_classes=5)
    s = summary(m, (3, 32, 32), mode="tree", verbose=False)
    lines = str(s).splitlines()
    assert lines[1].startswith("Layer (type:depth-idx)")
    assert lines[3].startswith("VGG ")
    assert lines[4].startswith("├─Sequential: 1-1")
    assert lines[5].startswith("│    └─Conv2d: 2-1") and "1,792" in lines[5]
    assert any(line.startswith("├─AdaptiveAvgPool2d: 1-2") for line in lines)
    assert f"Total params: {sum(p.size for p in m.parameters()):,}" in lines


def test_input_data_and_errors(capsys):
    m = nn.Sequential(nn.Linear(3, 2))
    s = summary(m, input_data=np.ones((5, 3), dtype=np.float32), verbose=False)
    assert s.rows[0].output_shapes == [[-1, 2]]
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="mode must be 'table' or 'tree', got 'graph'"):
        summary(m, (3,), mode="graph")
    with pytest.raises(TypeError, match="model must be a pycnnrnn.nn.Module"):
        summary(torch.nn.Linear(3, 2), (3,))
    with pytest.raises(ValueError, match="positive ints"):
        summary(m, (0, 3))
    with pytest.raises(ValueError, match="one dtype per input"):
        summary(m, [(3,), (3,)], dtypes=[np.float32])
    with pytest.raises(ValueError, match="needs input_size"):
        summary(m)
    with pytest.raises(ValueError, match="batch_size"):
        summary(m, (3,), batch_size=0)
    assert pycnnrnn.summary is summary


def _tree_rows(text: str) -> list[tuple[str, str, str]]:
    """(layer label, output shape, Param #) of each tree row: fixed columns of 40, 25, 25."""
    lines = text.splitlines()
    body = lines[3 : lines.index(lines[0], 3)]  # between the header rule and the next rule
    return [(ln[:40].rstrip(), ln[40:65].strip(), ln[65:90].strip()) for ln in body]


@pytest.mark.parametrize("which", ["qst_encoder", "vgg11", "vqa"])
def test_tree_equals_torchinfo(which):
    torchinfo = pytest.importorskip("torchinfo")
    nn.init.manual_seed(5)
    if which == "qst_encoder":
        ours = models.QstEncoder(100, 16, 32, 2, 8)
        theirs = R.twin_of(ours, lambda: R.QstEncoder(100, 16, 32, 2, 8))
        sizes, dtypes = [(30,)], [np.int64]
    elif which == "vgg11":
        ours = models.vgg11(num_classes=10)
        theirs = R.twin_of(ours, lambda: R.vgg("vgg11", num_classes=10))
        sizes, dtypes = [(3, 32, 32)], [np.float32]
    else:
        cfg = dict(embed_size=32, qst_vocab_size=50, ans_vocab_size=20, word_embed_size=16, hidden_size=8)
        ours = models.VqaModel(**cfg, backbone="vgg16")
        theirs = R.twin_of(ours, lambda: R.VqaModel(**cfg))
        sizes, dtypes = [(3, 32, 32), (30,)], [np.float32, np.int64]
    mine = summary(ours, sizes, dtypes, batch_size=2, mode="tree", depth=3, verbose=False)
    t_dtypes = [torch.float32 if np.dtype(d).kind == "f" else torch.long for d in dtypes]
    ref = torchinfo.summary(theirs, input_size=[(2, *s) for s in sizes], dtypes=t_dtypes, verbose=0, depth=3)
    assert mine.total_params == ref.total_params and mine.trainable_params == ref.trainable_params
    # labels (type:depth-idx), output shapes (torchinfo prints the real batch, as batch_size=2
    # does; first output of a tuple) and parameter counts, row for row
    rows = _tree_rows(str(mine))
    assert rows == _tree_rows(str(ref))
    assert len(rows) == sum(1 for c in mine.calls if c.depth <= 3)
