"""Frozen teachers, fed the student's batch in the teacher's own preprocessing.

The teacher module is kept out of the objective's parameters and ``state_dict`` (it is held in
a tuple), so the training loop does not optimise it and checkpoints do not carry it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimcv.sources.model import Preprocess


class FrozenTeacher:
    """A teacher in eval mode with gradients off, that converts the student's inputs.

    Args:
        module: the teacher network; switched to eval mode and frozen (in place).
        teacher_pre: the preprocessing the teacher was trained with.
        student_pre: the preprocessing of the batches the student trains on.
    """

    def __init__(
        self,
        module: nn.Module,
        teacher_pre: Preprocess | None = None,
        student_pre: Preprocess | None = None,
    ) -> None:
        self.module = module.eval().requires_grad_(False)
        self.teacher_pre = teacher_pre
        self.student_pre = student_pre

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """The student's normalised batch, renormalised and resized for the teacher."""
        t, s = self.teacher_pre, self.student_pre
        if t is None or s is None:
            return images
        if t.mean != s.mean or t.std != s.std:
            s_mean = torch.tensor(s.mean).view(1, 3, 1, 1)
            s_std = torch.tensor(s.std).view(1, 3, 1, 1)
            t_mean = torch.tensor(t.mean).view(1, 3, 1, 1)
            t_std = torch.tensor(t.std).view(1, 3, 1, 1)
            images = ((images * s_std + s_mean) - t_mean) / t_std
        if t.image_size != images.shape[-1]:
            images = F.interpolate(
                images, size=(t.image_size, t.image_size), mode="bilinear", align_corners=False
            )
        return images

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Teacher logits for the student's batch (no gradients, eval mode)."""
        self.module.eval()
        with torch.no_grad():
            return self.module(self.inputs(images))
