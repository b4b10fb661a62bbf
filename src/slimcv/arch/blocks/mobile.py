"""MobileNet's building blocks: the depthwise separable conv and the inverted residual.

A standard KxK conv from M to N channels on a DxHxW output costs D*H*W*K^2*M*N MACs (D the
batch, 1 here). Splitting it into a depthwise KxK conv (one filter per channel) and a 1x1
pointwise conv costs D*H*W*K^2*M + D*H*W*M*N, about K^2 = 9x less for 3x3 kernels and wide
layers (MobileNetV1).
"""

from __future__ import annotations

import torch
from torch import nn

from slimcv.arch.kinds import register_block
from slimcv.arch.layers import ConvNormAct, LayerFactory, SqueezeExcite, make_divisible
from slimcv.arch.spec import BlockSpec


class DepthwiseSeparable(nn.Module):
    """Depthwise KxK conv + (optional SE) + pointwise 1x1 conv (MobileNetV1).

    A residual connection is added when the shapes allow it and ``skip`` is on (EfficientNet's
    first block does this).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        se_ratio: float = 0.0,
        skip: bool = False,
        pw_act: bool = True,
        act_layer: LayerFactory = nn.ReLU,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.depthwise = ConvNormAct(
            in_channels,
            in_channels,
            kernel_size,
            stride,
            groups=in_channels,
            act_layer=act_layer,
            norm_layer=norm_layer,
        )
        self.se = (
            SqueezeExcite(in_channels, max(1, int(in_channels * se_ratio)), act_layer=act_layer)
            if se_ratio > 0
            else nn.Identity()
        )
        self.pointwise = ConvNormAct(
            in_channels,
            out_channels,
            1,
            act_layer=act_layer if pw_act else None,
            norm_layer=norm_layer,
        )
        self.has_skip = skip and stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pointwise(self.se(self.depthwise(x)))
        return out + x if self.has_skip else out


class InvertedResidual(nn.Module):
    """Expand 1x1, depthwise KxK, (SE), project 1x1 with no activation (MobileNetV2).

    The projection is linear because a ReLU on the narrow bottleneck destroys information; the
    skip connects bottlenecks only (stride 1, same width), never the wide expanded tensors.
    With ``expansion == 1`` the expand conv is omitted, as in MobileNetV2's first block.

    Args:
        se_ratio: SE bottleneck width as a fraction of ``in_channels`` (EfficientNet's rule);
            0 disables SE.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        expansion: float = 6.0,
        se_ratio: float = 0.0,
        act_layer: LayerFactory = nn.ReLU6,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        hidden = make_divisible(in_channels * expansion) if expansion != 1 else in_channels
        self.hidden_channels = hidden
        self.expand = (
            ConvNormAct(in_channels, hidden, 1, act_layer=act_layer, norm_layer=norm_layer)
            if expansion != 1
            else nn.Identity()
        )
        self.depthwise = ConvNormAct(
            hidden,
            hidden,
            kernel_size,
            stride,
            groups=hidden,
            act_layer=act_layer,
            norm_layer=norm_layer,
        )
        self.se = (
            SqueezeExcite(hidden, max(1, int(in_channels * se_ratio)), act_layer=act_layer)
            if se_ratio > 0
            else nn.Identity()
        )
        self.project = ConvNormAct(hidden, out_channels, 1, act_layer=None, norm_layer=norm_layer)
        self.has_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return out + x if self.has_skip else out


@register_block("conv", "k", "a plain KxK conv + norm + activation")
def _conv(
    cin: int, spec: BlockSpec, stride: int, act: LayerFactory, norm: LayerFactory
) -> nn.Module:
    return ConvNormAct(
        cin, spec.out_channels, spec.kernel_size or 3, stride, act_layer=act, norm_layer=norm
    )


@register_block("ds", "k se", "depthwise separable conv (MobileNetV1), skip when shapes match")
def _ds(cin: int, spec: BlockSpec, stride: int, act: LayerFactory, norm: LayerFactory) -> nn.Module:
    return DepthwiseSeparable(
        cin,
        spec.out_channels,
        kernel_size=spec.kernel_size or 3,
        stride=stride,
        se_ratio=spec.se_ratio,
        skip=True,
        act_layer=act,
        norm_layer=norm,
    )


@register_block("ir", "k e se", "inverted residual with linear bottleneck (MobileNetV2)")
def _ir(cin: int, spec: BlockSpec, stride: int, act: LayerFactory, norm: LayerFactory) -> nn.Module:
    return InvertedResidual(
        cin,
        spec.out_channels,
        kernel_size=spec.kernel_size or 3,
        stride=stride,
        expansion=spec.expansion if spec.expansion is not None else 6.0,
        se_ratio=spec.se_ratio,
        act_layer=act,
        norm_layer=norm,
    )
