"""Window attention (Swin-style): self-attention inside non-overlapping w x w windows.

Global self-attention over an H x W map costs ``(H*W)^2`` per channel; restricting it to windows
makes the cost linear in the number of pixels (``H*W*w^2``), which is what lets attention run at
the high resolutions of a CNN's early stages. This block leaves out Swin's shifted windows and
relative position bias: windows exchange information through the convolutional downsampling
between stages, and the graph stays plain MatMul/Softmax/Reshape for every runtime.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from slimcv.arch.blocks.transformer import SelfAttention
from slimcv.arch.kinds import register_block
from slimcv.arch.layers import ConvNormAct, LayerFactory, make_act
from slimcv.arch.spec import BlockSpec


class WindowLayer(nn.Module):
    """Pre-norm transformer layer whose attention is confined to w x w windows.

    Takes channels-last ``(B, H, W, C)``. The window is ``min(window, H, W)`` so a small map is
    one window rather than a mostly padded one; when H or W is not a multiple of it, the
    normalised map is zero-padded at the bottom/right before partitioning (as Swin does) and
    cropped after, so padded tokens take part in attention as keys but never reach the output.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        window: int,
        *,
        mlp_ratio: float = 4.0,
        act_layer: LayerFactory = nn.GELU,
        norm_layer: LayerFactory = nn.LayerNorm,
    ) -> None:
        super().__init__()
        if window < 1:
            raise ValueError(f"window size must be positive, got {window}")
        self.window = window
        hidden = max(1, round(dim * mlp_ratio))
        self.hidden_features = hidden
        self.norm1 = norm_layer(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = norm_layer(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), make_act(act_layer), nn.Linear(hidden, dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, dim = x.shape
        w = min(self.window, height, width)
        padded_h, padded_w = math.ceil(height / w) * w, math.ceil(width / w) * w
        y = self.norm1(x)
        if (padded_h, padded_w) != (height, width):
            y = F.pad(y, (0, 0, 0, padded_w - width, 0, padded_h - height))
        # (B, Hp, Wp, C) -> (B, windows, w*w, C)
        y = y.reshape(batch, padded_h // w, w, padded_w // w, w, dim).permute(0, 1, 3, 2, 4, 5)
        y = self.attn(y.reshape(batch, -1, w * w, dim))
        y = y.reshape(batch, padded_h // w, padded_w // w, w, w, dim).permute(0, 1, 3, 2, 4, 5)
        y = y.reshape(batch, padded_h, padded_w, dim)[:, :height, :width]
        x = x + y
        return x + self.mlp(self.norm2(x))


class WindowAttentionBlock(nn.Module):
    """A conv downsample when needed, then ``depth`` window-attention layers.

    Stride 2 uses a 3x3 stride-2 ConvNormAct from ``in_channels`` to ``out_channels`` (patch
    merging as a convolution, which also sees across window borders); a width change at stride
    1 uses a 1x1 ConvNormAct. The layers run channels-last with LayerNorm.

    MACs with C = out channels, H x W the attended map, w' = min(w, H, W), T = Hp*Wp the padded
    token count: ``depth*(4*T*C^2 + 2*T*w'^2*C + 2*H*W*C*hidden)`` plus the downsample conv.

    Args:
        expansion: MLP ratio.
        depth: number of window-attention layers.
        heads: attention heads; ``out_channels`` must be a multiple.
        window: window side ``w``.
        token_norm_layer: normalisation of the tokens (``norm_layer`` is for the convs).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        expansion: float = 4.0,
        depth: int = 2,
        heads: int = 4,
        window: int = 4,
        act_layer: LayerFactory = nn.GELU,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        token_norm_layer: LayerFactory = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.downsample: nn.Module = nn.Identity()
        if stride > 1 or in_channels != out_channels:
            kernel = 3 if stride > 1 else 1
            self.downsample = ConvNormAct(
                in_channels,
                out_channels,
                kernel,
                stride,
                act_layer=act_layer,
                norm_layer=norm_layer,
            )
        self.layers = nn.Sequential(
            *(
                WindowLayer(
                    out_channels,
                    heads,
                    window,
                    mlp_ratio=expansion,
                    act_layer=act_layer,
                    norm_layer=token_norm_layer,
                )
                for _ in range(depth)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x).permute(0, 2, 3, 1)
        return self.layers(x).permute(0, 3, 1, 2)


@register_block("win", "e d h w", "window self-attention layers (Swin-style, no shift)")
def _win(
    cin: int, spec: BlockSpec, stride: int, act: LayerFactory, norm: LayerFactory
) -> nn.Module:
    return WindowAttentionBlock(
        cin,
        spec.out_channels,
        stride=stride,
        expansion=spec.expansion if spec.expansion is not None else 4.0,
        depth=spec.depth or 2,
        heads=spec.heads or 4,
        window=spec.window or 4,
        act_layer=act,
        norm_layer=norm,
    )
