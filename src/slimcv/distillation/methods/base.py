"""What every distillation method shares: its registry entry, the context it is built from, and
the hard-label / soft-target mix most of them use for the logits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from slimcv.distillation.losses import soft_target_loss, soft_targets
from slimcv.distillation.wiring import FrozenTeacher
from slimcv.errors import SlimcvError
from slimcv.registry import Registry
from slimcv.training.objective import Objective

#: How many teachers a method takes.
TEACHERS = ("one", "many", "none", "peer")


@dataclass
class DistillContext:
    """Everything a method needs to build its objective.

    Attributes:
        student: the network being trained (only read here: layer names and shapes).
        teachers: frozen teachers (empty for self-distillation; for mutual distillation the
            optional starting point of the peer).
        input_shape: the student's batch-1 input shape, for probing layer shapes.
        num_classes: outputs of the student's classifier.
        cached_logits: per teacher, its logits for every training sample in training-set
            order, when the teacher outputs were cached (see :mod:`..cache`); else ``None``.
        seed: seeds anything the method initialises (adapters, heads, a peer).
    """

    student: nn.Module
    teachers: list[FrozenTeacher]
    input_shape: tuple[int, int, int, int]
    num_classes: int
    cached_logits: list[torch.Tensor] | None = None
    seed: int = 0


@dataclass(frozen=True)
class Method:
    """A registered distillation method.

    Attributes:
        name: the ``--method`` name.
        config: the method's config dataclass (validated in ``__post_init__``).
        build: makes the :class:`Objective` from a config and a :class:`DistillContext`.
        teachers: ``one``, ``many`` (one or more), ``none`` (self) or ``peer`` (mutual: an
            optional model that trains alongside the student).
        uses_cache: whether the method reads only teacher logits, so a logit cache can stand in
            for running the teachers.
        summary: one line for help texts and docs.
    """

    name: str
    config: type
    build: Callable[[Any, DistillContext], Objective]
    teachers: str
    uses_cache: bool
    summary: str = field(default="")


#: The distillation methods by name (``--method``).
METHODS: Registry[Method] = Registry("distillation method")


def register(method: Method) -> Method:
    return METHODS.register(method.name)(method)


def check_mix(temperature: float, alpha: float) -> None:
    """Validates the soft-target temperature and weight shared by most methods."""
    if not temperature > 0:
        raise SlimcvError(f"--temperature must be positive, got {temperature}")
    if not 0 <= alpha <= 1:
        raise SlimcvError(f"--alpha is the weight of the soft targets, in [0, 1]; got {alpha}")


def mixed_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    target_probs: torch.Tensor | None,
    temperature: float,
    alpha: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``(1 - alpha) * CE(labels) + alpha * T^2 * KL(targets || student)`` and its parts."""
    ce = F.cross_entropy(logits, labels)
    if target_probs is None or alpha == 0:
        return ce, {"ce": float(ce.detach())}
    kd = soft_target_loss(logits, target_probs, temperature)
    loss = (1 - alpha) * ce + alpha * kd
    return loss, {"ce": float(ce.detach()), "kd": float(kd.detach())}


class TeacherTargets:
    """Soft targets for a batch: from cached logits by sample index, or by running the teachers.

    Several teachers' soft targets are averaged with ``weights`` (probabilities, not logits, are
    averaged: each teacher contributes a distribution).
    """

    def __init__(
        self,
        teachers: list[FrozenTeacher],
        cached: list[torch.Tensor] | None,
        weights: tuple[float, ...] | None = None,
    ) -> None:
        self.teachers = teachers
        self.cached = cached
        count = len(cached) if cached is not None else len(teachers)
        raw = torch.tensor(weights if weights else [1.0] * count, dtype=torch.float32)
        self.weights = raw / raw.sum()

    def logits(self, images: torch.Tensor, indices: torch.Tensor) -> list[torch.Tensor]:
        if self.cached is not None:
            return [c[indices] for c in self.cached]
        return [teacher(images) for teacher in self.teachers]

    def probs(self, images: torch.Tensor, indices: torch.Tensor, temperature: float):
        outputs = self.logits(images, indices)
        return sum(
            w * soft_targets(o, temperature) for w, o in zip(self.weights, outputs, strict=True)
        )
