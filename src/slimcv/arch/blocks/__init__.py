"""Efficient building blocks, each a plain ``nn.Module`` with injectable layers.

Every block takes ``(in_channels, out_channels, *, stride, ..., act_layer, norm_layer)`` and
exposes ``in_channels`` and ``out_channels``, so the builder in :mod:`slimcv.arch.builder` can
chain any of them.
"""

from slimcv.arch.blocks.exits import ExitHead
from slimcv.arch.blocks.ghost import GhostBottleneck, GhostModule
from slimcv.arch.blocks.mobile import DepthwiseSeparable, InvertedResidual
from slimcv.arch.blocks.mobilevit import MobileViTBlock
from slimcv.arch.blocks.pool import MaxPoolBlock
from slimcv.arch.blocks.shuffle import GroupedConvShuffle, ShuffleUnit
from slimcv.arch.blocks.transformer import SelfAttention, TransformerLayer
from slimcv.arch.blocks.window import WindowAttentionBlock, WindowLayer

__all__ = [
    "DepthwiseSeparable",
    "ExitHead",
    "GhostBottleneck",
    "GhostModule",
    "GroupedConvShuffle",
    "InvertedResidual",
    "MaxPoolBlock",
    "MobileViTBlock",
    "SelfAttention",
    "ShuffleUnit",
    "TransformerLayer",
    "WindowAttentionBlock",
    "WindowLayer",
]
