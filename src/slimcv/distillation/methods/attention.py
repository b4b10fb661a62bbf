"""``attention``: attention transfer (Zagoruyko & Komodakis 2017) on named layer pairs.

Attention maps have no channel dimension, so no adapters are needed between widths.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from slimcv.distillation.losses import attention_transfer_loss
from slimcv.distillation.methods.base import (
    DistillContext,
    Method,
    TeacherTargets,
    check_mix,
    register,
)
from slimcv.distillation.methods.feature import LayerPairObjective, check_pairs
from slimcv.distillation.wiring import required_pairs
from slimcv.errors import SlimcvError
from slimcv.training.objective import Objective


@dataclass
class AttentionConfig:
    """Attention transfer.

    Attributes:
        pairs: ``(teacher_layer, student_layer)`` names of convolutional (N, C, H, W) outputs.
        beta: weight of the attention term; the paper's 1000, halved as in the authors' code,
            against a mean over batch and positions.
        p: exponent of the attention map (the paper uses 2).
        temperature: soft-target temperature for the logit term.
        alpha: weight of the soft targets in the logit term (0: labels plus attention only,
            as in the paper).
    """

    pairs: tuple[tuple[str, str], ...] | str = ()
    beta: float = 500.0
    p: float = 2.0
    temperature: float = 4.0
    alpha: float = 0.9

    def __post_init__(self) -> None:
        self.pairs = required_pairs(self.pairs, "attention transfer")
        if self.beta < 0 or self.p <= 0:
            raise SlimcvError(f"need beta >= 0 and p > 0, got beta={self.beta}, p={self.p}")
        check_mix(self.temperature, self.alpha)


class AttentionObjective(LayerPairObjective):
    name = "attention"

    def __init__(self, targets, config: AttentionConfig) -> None:
        super().__init__(targets, config.pairs, config.temperature, config.alpha, config.beta)
        self.p = config.p

    def pair_loss(self, index: int, student: torch.Tensor, teacher: torch.Tensor):
        return attention_transfer_loss(student, teacher, self.p)


def build_attention(config: AttentionConfig, context: DistillContext) -> Objective:
    t_shapes, s_shapes = check_pairs(context, config.pairs)
    for t, s in config.pairs:
        if len(t_shapes[t]) != 4 or len(s_shapes[s]) != 4:
            raise SlimcvError(
                f"attention transfer pairs convolutional maps; {t}:{s} has shapes "
                f"{list(t_shapes[t][1:])} and {list(s_shapes[s][1:])}"
            )
    return AttentionObjective(TeacherTargets(context.teachers, None), config)


ATTENTION = register(
    Method(
        "attention",
        AttentionConfig,
        build_attention,
        teachers="one",
        uses_cache=False,
        summary="attention transfer: normalised spatial attention maps of layer pairs",
    )
)
