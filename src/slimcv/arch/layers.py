"""The small layers every efficient block is made of.

Blocks take ``act_layer`` and ``norm_layer`` as classes (``nn.ReLU``, ``nn.BatchNorm2d``) so a
family can swap activations (ReLU6 for MobileNetV2, SiLU for EfficientNet, Hardswish for
MobileNetV3) or normalisation without touching block code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

LayerFactory = Callable[..., nn.Module]


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Rounds a channel count to a multiple of ``divisor`` without losing more than 10%.

    Channel counts that are multiples of 8 keep SIMD lanes full on CPUs and tensor cores busy
    on GPUs; the 10% guard is the rule MobileNet and EfficientNet use when scaling widths.
    """
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def make_act(act_layer: LayerFactory | None) -> nn.Module:
    """An activation instance, or identity for ``None`` (the linear bottleneck)."""
    if act_layer is None:
        return nn.Identity()
    try:
        return act_layer(inplace=True)
    except TypeError:
        return act_layer()


class ConvNormAct(nn.Sequential):
    """Convolution, normalisation and activation, the unit export and fusion treat as one.

    ``padding`` is ``kernel // 2`` so a stride-1 layer keeps the spatial size and a stride-2
    layer halves it (rounding up), whatever the kernel.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        *,
        act_layer: LayerFactory | None = nn.ReLU,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                kernel_size // 2,
                groups=groups,
                bias=False,
            ),
            norm_layer(out_channels),
            make_act(act_layer),
        )
        self.in_channels = in_channels
        self.out_channels = out_channels


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global pooling, a bottleneck MLP, and a sigmoid channel gate.

    Args:
        channels: channels of the tensor being gated.
        reduced: width of the bottleneck (EfficientNet uses a quarter of the block's *input*
            channels, so callers pass it explicitly).
        gate_layer: ``nn.Sigmoid`` or ``nn.Hardsigmoid`` (MobileNetV3).
    """

    def __init__(
        self,
        channels: int,
        reduced: int,
        *,
        act_layer: LayerFactory = nn.ReLU,
        gate_layer: LayerFactory = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = make_act(act_layer)
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.expand(self.act(self.reduce(self.pool(x)))))
        return x * scale


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleaves channels across ``groups`` so the next grouped conv sees every group.

    Written as reshape/transpose/reshape, which exports to ONNX as Reshape+Transpose and runs
    on every runtime.
    """
    batch, channels, height, width = x.shape
    x = x.reshape(batch, groups, channels // groups, height, width)
    return x.transpose(1, 2).reshape(batch, channels, height, width)
