"""Tiny CNNs (no BatchNorm) loaded through the ``file.py:factory`` source in training tests."""

from __future__ import annotations

import time

from torch import nn


class TinyNet(nn.Module):
    """Two convolutions and a linear head; ``delay`` slows every training step (seconds).

    The delay is a test instrument: it makes an epoch last long enough (without using CPU)
    that a test can kill a run in the middle of a chosen epoch.
    """

    def __init__(self, num_classes: int = 10, width: int = 8, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, x):
        if self.training and self.delay:
            time.sleep(self.delay)
        return self.fc(self.features(x).flatten(1))


def net(num_classes: int = 10) -> nn.Module:
    return TinyNet(num_classes)


def wide(num_classes: int = 10) -> nn.Module:
    return TinyNet(num_classes, width=12)


def slow(num_classes: int = 10) -> nn.Module:
    return TinyNet(num_classes, delay=0.04)
