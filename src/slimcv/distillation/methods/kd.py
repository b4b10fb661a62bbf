"""``kd``: soft targets from one teacher (Hinton et al. 2015)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slimcv.distillation.methods.base import (
    DistillContext,
    Method,
    TeacherTargets,
    check_mix,
    mixed_loss,
    register,
)
from slimcv.training.objective import Objective, StepOutput


@dataclass
class KDConfig:
    """Soft-target distillation.

    Attributes:
        temperature: softens both distributions; 4 suits 10-100 classes (Hinton et al. use
            2-20). Higher values pass on more of the teacher's ranking of wrong classes.
        alpha: weight of the soft-target term; ``1 - alpha`` weighs the hard-label
            cross-entropy.
    """

    temperature: float = 4.0
    alpha: float = 0.9

    def __post_init__(self) -> None:
        check_mix(self.temperature, self.alpha)


class SoftTargetObjective(Objective):
    """``(1 - alpha) * CE + alpha * T^2 * KL`` against one or several (averaged) teachers."""

    def __init__(self, targets: TeacherTargets, temperature: float, alpha: float) -> None:
        super().__init__()
        self._targets = (targets,)  # a tuple: the teachers are not parameters of the objective
        self.temperature = temperature
        self.alpha = alpha

    def forward(  # type: ignore[override]
        self,
        module: torch.nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> StepOutput:
        logits = module(images)
        probs = self._targets[0].probs(images, indices, self.temperature)
        loss, parts = mixed_loss(logits, labels, probs, self.temperature, self.alpha)
        return StepOutput(loss, logits, parts)


def build_kd(config: KDConfig, context: DistillContext) -> Objective:
    targets = TeacherTargets(context.teachers, context.cached_logits)
    return SoftTargetObjective(targets, config.temperature, config.alpha)


KD = register(
    Method(
        "kd",
        KDConfig,
        build_kd,
        teachers="one",
        uses_cache=True,
        summary="soft targets: T^2-scaled KL to the teacher's softened outputs, mixed with CE",
    )
)


def teacher_objective(teacher: torch.nn.Module, config: KDConfig | None = None) -> Objective:
    """A soft-target objective with a frozen *copy* of ``teacher``, for other techniques.

    Pruning's fine-tuning and QAT pass the model as it was before they changed it: the original
    is the teacher of its pruned or quantized self. The copy keeps the caller's module
    untouched (freezing sets ``requires_grad`` off and eval mode in place).
    """
    import copy

    from slimcv.distillation.wiring import FrozenTeacher

    config = config or KDConfig()
    frozen = FrozenTeacher(copy.deepcopy(teacher))
    return SoftTargetObjective(TeacherTargets([frozen], None), config.temperature, config.alpha)
