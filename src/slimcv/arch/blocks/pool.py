"""Max pooling as a block kind, for the stems of ShuffleNet and ResNet (conv, then 3x3/2 max).

Pooling halves the map for free (no parameters, no MACs) where the network is widest in
pixels; a spec writes it as ``maxpool_k3_s2_c24`` right after ``stem_c24_s2``.
"""

from __future__ import annotations

import torch
from torch import nn

from slimcv.arch.kinds import register_block
from slimcv.arch.layers import ConvNormAct, LayerFactory
from slimcv.arch.spec import BlockSpec


class MaxPoolBlock(nn.Module):
    """KxK max pooling (padding K//2, so stride 2 halves the map rounding up), then a 1x1
    conv + norm + activation only when ``out_channels`` differs from ``in_channels``.

    The projection keeps the kind usable anywhere in a spec; a stem pool keeps the width and
    has none.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 2,
        act_layer: LayerFactory = nn.ReLU,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.pool = nn.MaxPool2d(kernel_size, stride, kernel_size // 2)
        self.project = (
            ConvNormAct(in_channels, out_channels, 1, act_layer=act_layer, norm_layer=norm_layer)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.pool(x))


@register_block("maxpool", "k", "KxK max pooling (ShuffleNet/ResNet stems); 1x1 conv if c changes")
def _maxpool(
    cin: int, spec: BlockSpec, stride: int, act: LayerFactory, norm: LayerFactory
) -> nn.Module:
    return MaxPoolBlock(
        cin,
        spec.out_channels,
        kernel_size=spec.kernel_size or 3,
        stride=stride,
        act_layer=act,
        norm_layer=norm,
    )
