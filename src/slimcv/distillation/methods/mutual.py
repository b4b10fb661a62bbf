"""``mutual``: deep mutual learning (Zhang et al. 2018) - two students teach each other.

Both networks train at once; each minimises its cross-entropy plus the KL to the other's
softened (and, for that term, constant) prediction. The peer is a submodule of the objective, so
the training loop optimises it with the student and checkpoints it. The student is what is
saved; the peer's accuracy is reported.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from slimcv.distillation.losses import soft_targets
from slimcv.distillation.methods.base import (
    DistillContext,
    Method,
    check_mix,
    mixed_loss,
    register,
)
from slimcv.training.objective import Objective, StepOutput


@dataclass
class MutualConfig:
    """Mutual distillation.

    Attributes:
        temperature: softens both predictions (the paper uses 1).
        alpha: weight of the mimicry term (``1 - alpha``: labels).
    """

    temperature: float = 1.0
    alpha: float = 0.5

    def __post_init__(self) -> None:
        check_mix(self.temperature, self.alpha)


class MutualObjective(Objective):
    def __init__(self, peer: nn.Module, config: MutualConfig) -> None:
        super().__init__()
        self.peer = peer.requires_grad_(True)
        self.temperature = config.temperature
        self.alpha = config.alpha

    def forward(  # type: ignore[override]
        self,
        module: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> StepOutput:
        logits = module(images)
        peer_logits = self.peer(images)
        t = self.temperature
        own, parts = mixed_loss(
            logits, labels, soft_targets(peer_logits.detach(), t), t, self.alpha
        )
        peer, peer_parts = mixed_loss(
            peer_logits, labels, soft_targets(logits.detach(), t), t, self.alpha
        )
        parts.update({f"peer_{k}": v for k, v in peer_parts.items()})
        return StepOutput(own + peer, logits, parts)


def fresh_copy(module: nn.Module, seed: int) -> nn.Module:
    """A copy of ``module`` with every layer re-initialised (seeded): a peer of the same shape
    that starts elsewhere, so the two networks have something to teach each other."""
    peer = copy.deepcopy(module)
    torch.manual_seed(seed)
    for sub in peer.modules():
        reset = getattr(sub, "reset_parameters", None)
        if callable(reset):
            reset()
    return peer


def build_mutual(config: MutualConfig, context: DistillContext) -> Objective:
    if context.teachers:  # the given model is the peer's starting point, and it trains
        peer = copy.deepcopy(context.teachers[0].module).train()
    else:
        peer = fresh_copy(context.student, context.seed + 1)
    return MutualObjective(peer, config)


MUTUAL = register(
    Method(
        "mutual",
        MutualConfig,
        build_mutual,
        teachers="peer",
        uses_cache=False,
        summary="deep mutual learning: a peer trained alongside; each teaches the other",
    )
)
