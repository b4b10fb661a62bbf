"""Attention transfer (Zagoruyko & Komodakis 2017, "Paying More Attention to Attention").

A layer's spatial attention map is the mean over channels of |activation|^p, flattened and
L2-normalised. It has no channel dimension, so teacher and student of different widths compare
directly, without learned adapters; maps of different spatial sizes are interpolated to the
teacher's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def attention_map(features: torch.Tensor, p: float = 2.0, size: tuple[int, int] | None = None):
    """The L2-normalised spatial attention map of (N, C, H, W) features, flattened to (N, H*W).

    Args:
        features: a convolutional feature map.
        p: the exponent (the paper uses 2).
        size: resize the map to this (H, W) first (bilinear), to compare different resolutions.
    """
    amap = features.abs().pow(p).mean(dim=1, keepdim=True)
    if size is not None and tuple(amap.shape[-2:]) != tuple(size):
        amap = F.interpolate(amap, size=size, mode="bilinear", align_corners=False)
    return F.normalize(amap.flatten(1), dim=1)


def attention_transfer_loss(
    student: torch.Tensor, teacher: torch.Tensor, p: float = 2.0
) -> torch.Tensor:
    """Mean squared difference of the normalised attention maps, at the teacher's resolution.

    The mean over batch and positions follows the authors' code; their weight beta = 1000
    (times 1/2) is applied by the caller.
    """
    size = tuple(teacher.shape[-2:])
    target = attention_map(teacher.detach(), p)
    return (attention_map(student, p, size) - target).pow(2).mean()
