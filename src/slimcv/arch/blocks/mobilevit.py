"""MobileViT's block: convolutions for local features, a transformer over patches for global ones.

The block unfolds a feature map into non-overlapping ``p x p`` patches and runs the
transformer across patches, separately for each of the ``p*p`` pixel positions inside a patch
(MobileViT, Mehta & Rastegari 2022). Every pixel already holds a KxK neighbourhood from the local
conv, so attention among same-offset pixels of all patches gives each output a global receptive
field at ``1/p^2`` of the cost of attention over all pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from slimcv.arch.blocks.mobile import InvertedResidual
from slimcv.arch.blocks.transformer import TransformerLayer
from slimcv.arch.kinds import register_block
from slimcv.arch.layers import ConvNormAct, LayerFactory
from slimcv.arch.spec import BlockSpec


class MobileViTBlock(nn.Module):
    """Local KxK conv + 1x1 to ``dim``, unfold, transformer, fold, 1x1 back, concat, KxK fusion.

    With stride 2 a stride-2 inverted residual (expansion ``downsample_expansion``) from
    ``in_channels`` to ``out_channels`` comes first, as in MobileViT's stages, and the block
    proper runs at ``out_channels``. With stride 1 the fusion conv maps the concatenation of
    input and global features to ``out_channels``.

    Sizes not divisible by ``patch_size`` are handled by interpolation, as in MobileViT's
    reference code: the ``dim``-channel map is resized bilinearly up to the next multiple of
    ``patch_size`` before unfolding and back to its own size after folding, so the block takes
    any input size (the transformer then runs on the resized token count).

    MACs with C the block's working width, H x W its map, T = Hp*Wp tokens after resizing and
    N = T/p^2 patches: ``H*W*(K^2*C*C + C*dim) + depth*(4*T*dim^2 + 2*T*N*dim +
    2*T*dim*hidden) + H*W*dim*C + H*W*K^2*2C*out`` (plus the inverted residual when striding).

    Args:
        expansion: MLP ratio of the transformer layers.
        depth: number of transformer layers.
        heads: attention heads; ``dim`` must be a multiple.
        patch_size: side ``p`` of the patches.
        dim: transformer width; defaults to ``out_channels``.
        token_norm_layer: normalisation of the tokens (``norm_layer`` is for the convs).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        expansion: float = 2.0,
        depth: int = 2,
        heads: int = 4,
        patch_size: int = 2,
        dim: int | None = None,
        downsample_expansion: float = 4.0,
        act_layer: LayerFactory = nn.SiLU,
        norm_layer: LayerFactory = nn.BatchNorm2d,
        token_norm_layer: LayerFactory = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.patch_size = patch_size
        dim = dim or out_channels
        self.dim = dim
        self.downsample: nn.Module = nn.Identity()
        channels = in_channels
        if stride > 1:
            self.downsample = InvertedResidual(
                in_channels,
                out_channels,
                kernel_size=3,
                stride=stride,
                expansion=downsample_expansion,
                act_layer=act_layer,
                norm_layer=norm_layer,
            )
            channels = out_channels
        self.local = nn.Sequential(
            ConvNormAct(
                channels, channels, kernel_size, act_layer=act_layer, norm_layer=norm_layer
            ),
            # A plain linear map into the transformer width: the tokens are normalised next.
            nn.Conv2d(channels, dim, 1, bias=False),
        )
        self.transformer = nn.Sequential(
            *(
                TransformerLayer(
                    dim,
                    heads,
                    mlp_ratio=expansion,
                    act_layer=act_layer,
                    norm_layer=token_norm_layer,
                )
                for _ in range(depth)
            ),
            token_norm_layer(dim),
        )
        self.project = ConvNormAct(dim, channels, 1, act_layer=act_layer, norm_layer=norm_layer)
        self.fusion = ConvNormAct(
            2 * channels, out_channels, kernel_size, act_layer=act_layer, norm_layer=norm_layer
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        features = self.local(x)
        height, width = features.shape[-2:]
        p = self.patch_size
        padded_h, padded_w = math.ceil(height / p) * p, math.ceil(width / p) * p
        resized = (padded_h, padded_w) != (height, width)
        if resized:
            features = F.interpolate(
                features, size=(padded_h, padded_w), mode="bilinear", align_corners=False
            )
        tokens = self._unfold(features)
        features = self._fold(self.transformer(tokens), features.shape)
        if resized:
            features = F.interpolate(
                features, size=(height, width), mode="bilinear", align_corners=False
            )
        return self.fusion(torch.cat((x, self.project(features)), dim=1))

    def _unfold(self, x: torch.Tensor) -> torch.Tensor:
        # (B, D, H, W) -> (B*p*p, N, D): one sequence of N patches per pixel offset.
        batch, dim, height, width = x.shape
        p = self.patch_size
        x = x.reshape(batch, dim, height // p, p, width // p, p).permute(0, 3, 5, 2, 4, 1)
        return x.reshape(batch * p * p, (height // p) * (width // p), dim)

    def _fold(self, tokens: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        batch, dim, height, width = shape
        p = self.patch_size
        x = tokens.reshape(batch, p, p, height // p, width // p, dim).permute(0, 5, 3, 1, 4, 2)
        return x.reshape(batch, dim, height, width)


@register_block("mvit", "k e d h p", "MobileViT block: local conv + transformer over patches")
def _mvit(
    cin: int, spec: BlockSpec, stride: int, act: LayerFactory, norm: LayerFactory
) -> nn.Module:
    return MobileViTBlock(
        cin,
        spec.out_channels,
        kernel_size=spec.kernel_size or 3,
        stride=stride,
        expansion=spec.expansion if spec.expansion is not None else 2.0,
        depth=spec.depth or 2,
        heads=spec.heads or 4,
        patch_size=spec.patch_size or 2,
        act_layer=act,
        norm_layer=norm,
    )
