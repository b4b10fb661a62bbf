"""``ensemble``: several teachers' soft targets, averaged or weighted."""

from __future__ import annotations

from dataclasses import dataclass

from slimcv.distillation.methods.base import (
    DistillContext,
    Method,
    TeacherTargets,
    check_mix,
    register,
)
from slimcv.distillation.methods.kd import SoftTargetObjective
from slimcv.errors import SlimcvError
from slimcv.training.objective import Objective


@dataclass
class EnsembleConfig:
    """Soft targets from several teachers.

    Attributes:
        temperature: as for ``kd``.
        alpha: as for ``kd``.
        weights: one non-negative weight per teacher (normalised to sum 1); empty: equal.
            Probabilities are averaged, so a teacher's weight is its share of the target
            distribution.
    """

    temperature: float = 4.0
    alpha: float = 0.9
    weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        check_mix(self.temperature, self.alpha)
        self.weights = tuple(float(w) for w in self.weights)
        if any(w < 0 for w in self.weights) or (self.weights and sum(self.weights) <= 0):
            raise SlimcvError(f"teacher weights must be >= 0 and not all 0, got {self.weights}")


def build_ensemble(config: EnsembleConfig, context: DistillContext) -> Objective:
    count = len(context.teachers)
    if config.weights and len(config.weights) != count:
        raise SlimcvError(f"{len(config.weights)} teacher weights given for {count} teachers")
    targets = TeacherTargets(context.teachers, context.cached_logits, config.weights or None)
    return SoftTargetObjective(targets, config.temperature, config.alpha)


ENSEMBLE = register(
    Method(
        "ensemble",
        EnsembleConfig,
        build_ensemble,
        teachers="many",
        uses_cache=True,
        summary="soft targets averaged (or weighted) over several teachers",
    )
)
