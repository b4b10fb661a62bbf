"""The classifier head an early-exit network attaches to an intermediate stage.

An early exit lets easy inputs leave the network after a few stages, so its cost must be a
small fraction of the stages it skips. This head therefore pools *first* and applies its
optional 1x1 conv to the pooled vector (MobileNetV3's cheap head): the conv then costs
``C*hidden`` MACs instead of ``H*W*C*hidden``.
"""

from __future__ import annotations

import torch
from torch import nn

from slimcv.arch.layers import LayerFactory, make_act


class ExitHead(nn.Module):
    """Global average pool, optional 1x1 conv + activation, dropout, linear classifier.

    The 1x1 conv has a bias and no normalisation: after pooling there is one value per channel
    and image, and batch statistics over that are noisy at the small batches early exits are
    trained with (MobileNetV3's head has none either).

    MACs: ``C*hidden + hidden*classes`` with the conv, ``C*classes`` without.

    Args:
        in_channels: channels of the stage output the head reads.
        num_classes: logits produced (``out_channels``).
        hidden_channels: width of the 1x1 conv; 0 for none.
        dropout: dropout before the classifier.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        hidden_channels: int = 0,
        dropout: float = 0.0,
        act_layer: LayerFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, num_classes
        self.num_classes = num_classes
        self.pool = nn.AdaptiveAvgPool2d(1)
        features = hidden_channels or in_channels
        self.conv = (
            nn.Sequential(nn.Conv2d(in_channels, hidden_channels, 1), make_act(act_layer))
            if hidden_channels
            else nn.Identity()
        )
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.flatten(self.conv(self.pool(x)))))
