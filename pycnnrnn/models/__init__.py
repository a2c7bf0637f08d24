"""Models built from pycnnrnn.nn: torchvision's VGG and the tbmoon/basic_vqa VQA model.

``pycnnrnn.models.torch_reference`` holds the same models in plain torch (for comparisons)."""

from __future__ import annotations

from .vgg import VGG, vgg11, vgg13, vgg16, vgg19
from .vqa import ImgEncoder, QstEncoder, VqaModel

__all__ = ["VGG", "ImgEncoder", "QstEncoder", "VqaModel", "vgg11", "vgg13", "vgg16", "vgg19"]
