"""Small student networks for distillation, usable as model sources.

``slimcv.distillation.students:small_cnn`` is a three-stage CNN: at 32x32 it costs 2.8 M MACs
(``width=16``), 1/13 of resnet18's 37 M at the same size, so it is a student a resnet18 teacher
has something to teach. Layers are named (``stem``, ``stage1``, ``stage2``, ``fc``) so feature
pairs and exits can refer to them.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def small_cnn(num_classes: int = 10, width: int = 16) -> nn.Module:
    """Conv-BN-ReLU stages of ``width``, ``2*width`` and ``4*width`` channels (strides 1, 2,
    2), global average pooling and a linear classifier."""
    return nn.Sequential(
        OrderedDict(
            stem=_conv_bn(3, width, 1),
            stage1=_conv_bn(width, 2 * width, 2),
            stage2=_conv_bn(2 * width, 4 * width, 2),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(4 * width, num_classes),
        )
    )


def tiny_cnn(num_classes: int = 10) -> nn.Module:
    """:func:`small_cnn` at width 8 (0.7 M MACs at 32x32): for quick tests."""
    return small_cnn(num_classes, width=8)
