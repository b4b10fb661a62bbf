"""Efficient building blocks, each a plain ``nn.Module`` with injectable layers.

Every block takes ``(in_channels, out_channels, *, stride, ..., act_layer, norm_layer)`` and
exposes ``in_channels`` and ``out_channels``, so the builder in :mod:`slimcv.arch.builder` can
chain any of them.
"""

from slimcv.arch.blocks.mobile import DepthwiseSeparable, InvertedResidual

__all__ = ["DepthwiseSeparable", "InvertedResidual"]
