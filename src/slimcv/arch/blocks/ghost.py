"""GhostNet's building blocks: the ghost module and the ghost bottleneck.

Feature maps of trained CNNs hold many near-duplicates ("ghosts") of each other. A ghost
module makes only ``ceil(out / ratio)`` channels with a real (1x1) conv and derives the rest
from them with cheap depthwise 3x3 convs, cutting a pointwise conv's MACs by about ``ratio``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from slimcv.arch.kinds import register_block
from slimcv.arch.layers import ConvNormAct, LayerFactory, SqueezeExcite, make_divisible
from slimcv.arch.spec import BlockSpec


class GhostModule(nn.Module):
    """A primary conv for ``ceil(out/ratio)`` channels, cheap depthwise ops for the rest.

    The cheap op is a depthwise ``dw_size`` conv with ``ratio - 1`` filters per primary
    channel; outputs are concatenated and sliced to ``out_channels`` (the ceil can overshoot).

    MACs at output size Ho x Wo, with P = ceil(N/ratio): ``Ho*Wo*K^2*M*P +
    Ho*Wo*dw^2*P*(ratio-1)``, against ``Ho*Wo*K^2*M*N`` for a plain conv.

    Args:
        kernel_size: kernel of the primary conv (1 in GhostNet's bottlenecks).
        ratio: output channels per primary channel.
        dw_size: kernel of the cheap depthwise op.
        use_act: apply ``act_layer`` to both parts; off for the bottleneck's projection,
            which stays linear like MobileNetV2's.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 1,
        stride: int = 1,
        ratio: int = 2,
        dw_size: int = 3,
        use_act: bool = True,
        act_layer: LayerFactory = nn.ReLU,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if ratio < 2:
            raise ValueError(f"ghost ratio must be at least 2, got {ratio}")
        self.in_channels, self.out_channels = in_channels, out_channels
        primary = math.ceil(out_channels / ratio)
        act = act_layer if use_act else None
        self.primary = ConvNormAct(
            in_channels, primary, kernel_size, stride, act_layer=act, norm_layer=norm_layer
        )
        self.cheap = ConvNormAct(
            primary,
            primary * (ratio - 1),
            dw_size,
            groups=primary,
            act_layer=act,
            norm_layer=norm_layer,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        primary = self.primary(x)
        out = torch.cat((primary, self.cheap(primary)), dim=1)
        return out[:, : self.out_channels]


class GhostBottleneck(nn.Module):
    """Ghost expand, optional depthwise stride-2, optional SE, linear ghost project (GhostNet).

    The shortcut is the identity when shapes match, otherwise a depthwise KxK (carrying the
    stride) followed by a 1x1 conv, both without activation, so the block always has a
    residual path.

    Args:
        expansion: hidden width as a multiple of ``in_channels`` (rounded to 8).
        se_ratio: SE bottleneck width as a fraction of the *hidden* width (GhostNet's rule);
            0 disables SE.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        expansion: float = 3.0,
        se_ratio: float = 0.0,
        act_layer: LayerFactory = nn.ReLU,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        hidden = make_divisible(in_channels * expansion)
        self.hidden_channels = hidden
        self.ghost1 = GhostModule(in_channels, hidden, act_layer=act_layer, norm_layer=norm_layer)
        self.depthwise = (
            ConvNormAct(
                hidden,
                hidden,
                kernel_size,
                stride,
                groups=hidden,
                act_layer=None,
                norm_layer=norm_layer,
            )
            if stride > 1
            else nn.Identity()
        )
        self.se = (
            SqueezeExcite(hidden, max(1, int(hidden * se_ratio)), act_layer=act_layer)
            if se_ratio > 0
            else nn.Identity()
        )
        self.ghost2 = GhostModule(
            hidden, out_channels, use_act=False, act_layer=act_layer, norm_layer=norm_layer
        )
        self.shortcut: nn.Module
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                ConvNormAct(
                    in_channels,
                    in_channels,
                    kernel_size,
                    stride,
                    groups=in_channels,
                    act_layer=None,
                    norm_layer=norm_layer,
                ),
                ConvNormAct(in_channels, out_channels, 1, act_layer=None, norm_layer=norm_layer),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.ghost2(self.se(self.depthwise(self.ghost1(x))))
        return out + self.shortcut(x)


@register_block("ghost", "k e se", "ghost bottleneck (GhostNet): cheap depthwise feature maps")
def _ghost(
    cin: int, spec: BlockSpec, stride: int, act: LayerFactory, norm: LayerFactory
) -> nn.Module:
    return GhostBottleneck(
        cin,
        spec.out_channels,
        kernel_size=spec.kernel_size or 3,
        stride=stride,
        expansion=spec.expansion if spec.expansion is not None else 3.0,
        se_ratio=spec.se_ratio,
        act_layer=act,
        norm_layer=norm,
    )
