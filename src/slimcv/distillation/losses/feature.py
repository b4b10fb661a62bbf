"""Feature matching (FitNets-style hints): the student's intermediate maps imitate the teacher's.

Both losses compare maps of equal shape; making the shapes equal (1x1 adapters for channels,
interpolation for spatial size) is the wiring's job, not the loss's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FEATURE_LOSSES = ("mse", "cosine")


def feature_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """Distance between two feature maps of the same shape.

    Args:
        student: the (adapted) student map, (N, C, H, W) or (N, D).
        teacher: the teacher map; treated as a constant.
        kind: ``mse`` (mean squared error), or ``cosine`` (1 - cosine similarity of each
            sample's flattened map: insensitive to the maps' scale, which differs between
            networks of different widths and normalisations).
    """
    teacher = teacher.detach()
    if kind == "mse":
        return F.mse_loss(student, teacher)
    if kind == "cosine":
        return (1 - F.cosine_similarity(student.flatten(1), teacher.flatten(1), dim=1)).mean()
    raise ValueError(f"unknown feature loss {kind!r}; known: {', '.join(FEATURE_LOSSES)}")
