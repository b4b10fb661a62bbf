"""Turns a :class:`~slimcv.arch.spec.NetworkSpec` into a PyTorch model.

Block kinds come from the registry in :mod:`slimcv.arch.kinds`; the builder only chains them:
stem, one ``nn.Sequential`` per spec token, optional head conv, pooling, classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from slimcv.arch.kinds import ACT_LAYERS, BLOCK_KINDS, load_block_kinds
from slimcv.arch.layers import ConvNormAct, LayerFactory
from slimcv.arch.spec import NetworkSpec, parse_network


class SpecNet(nn.Module):
    """A classifier built from a spec: ``stem``, ``stages`` (one ``nn.Sequential`` per spec
    token), optional ``head`` conv, global pooling and ``classifier``.

    Stages are addressable as ``stages.2`` and blocks as ``stages.2.0``, which is what early
    exits, feature distillation and elastic-depth search refer to.
    """

    def __init__(
        self,
        spec: NetworkSpec,
        num_classes: int = 1000,
        *,
        in_channels: int = 3,
        dropout: float = 0.0,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.num_classes = num_classes
        act = ACT_LAYERS[spec.act]
        self.stem = ConvNormAct(
            in_channels,
            spec.stem_channels,
            3,
            spec.stem_stride,
            act_layer=act,
            norm_layer=norm_layer,
        )
        channels = spec.stem_channels
        stages = []
        for block in spec.blocks:
            kind = BLOCK_KINDS.get(block.kind)
            block_act = ACT_LAYERS[block.act] if block.act else act
            layers = []
            for index in range(block.repeats):
                stride = block.stride if index == 0 else 1
                layers.append(kind.build(channels, block, stride, block_act, norm_layer))
                channels = block.out_channels
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.head = (
            ConvNormAct(channels, spec.head_channels, 1, act_layer=act, norm_layer=norm_layer)
            if spec.head_channels
            else nn.Identity()
        )
        self.num_features = spec.head_channels or channels
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(self.num_features, num_classes)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.flatten(self.pool(self.forward_features(x)))))


def _init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs, zero-mean small linears: the MobileNet/EfficientNet recipe."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


def build_network(
    spec: NetworkSpec | str, num_classes: int = 1000, *, dropout: float = 0.0
) -> SpecNet:
    """Builds a model from a spec or a spec string.

    Raises:
        SpecError: the string is malformed (the message points at the bad token).
    """
    load_block_kinds()
    if isinstance(spec, str):
        spec = parse_network(spec)
    return SpecNet(spec, num_classes, dropout=dropout)
