"""Soft targets (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network").

A temperature T > 1 flattens the teacher's softmax so the student also learns how the teacher
ranks the wrong classes (which 3 looks like an 8), not only which class is right. The KL term is
multiplied by T^2 because its gradients shrink as 1/T^2; without the factor, changing T would
also silently change the balance with the hard-label cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_targets(teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The teacher's class probabilities softened by ``temperature``."""
    return F.softmax(teacher_logits / temperature, dim=1)


def soft_target_loss(
    student_logits: torch.Tensor, target_probs: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``T^2 * KL(target || softmax(student / T))``, averaged over the batch.

    Args:
        student_logits: the student's raw outputs (N, classes).
        target_probs: soft targets (N, classes), e.g. :func:`soft_targets` of a teacher, or a
            weighted average of several teachers' soft targets.
        temperature: the same T the targets were softened with.
    """
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_student, target_probs, reduction="batchmean") * temperature**2
