"""Learned adapters that bring a student's feature map to the teacher's shape.

A narrower student cannot reproduce a wider teacher's channels one to one; a 1x1 convolution
(a per-position linear map, as in FitNets' regressors) learns the projection while training,
and spatial sizes are matched by bilinear interpolation. Adapters belong to the objective, so
the training loop optimises and checkpoints them, and the saved student does not contain them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimcv.errors import SlimcvError


def make_adapter(student_shape: tuple[int, ...], teacher_shape: tuple[int, ...]) -> nn.Module:
    """A 1x1 conv (4-D maps) or linear layer (2-D) from student to teacher width, or Identity.

    Raises:
        SlimcvError: the maps have different ranks (a conv map paired with a vector).
    """
    if len(student_shape) != len(teacher_shape):
        raise SlimcvError(
            f"cannot pair a feature of shape {list(student_shape[1:])} with one of shape "
            f"{list(teacher_shape[1:])}; pair layers of the same kind (both conv maps or both "
            "vectors)"
        )
    s_ch, t_ch = student_shape[1], teacher_shape[1]
    if s_ch == t_ch:
        return nn.Identity()
    if len(student_shape) == 4:
        return nn.Conv2d(s_ch, t_ch, kernel_size=1, bias=False)
    if len(student_shape) == 2:
        return nn.Linear(s_ch, t_ch, bias=False)
    raise SlimcvError(f"feature maps of rank {len(student_shape)} are not supported")


def match_spatial(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``student`` resized (bilinear) to ``teacher``'s height and width when they differ."""
    if student.dim() == 4 and student.shape[-2:] != teacher.shape[-2:]:
        return F.interpolate(student, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
    return student
