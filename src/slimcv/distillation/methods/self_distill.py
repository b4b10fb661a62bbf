"""``self``: self-distillation - the model's own final output teaches early-exit heads.

Small heads (global average pool + linear) are attached at named layers of the student through
forward hooks (no model edits) and trained on the labels and on the softened final output, in
the spirit of "Be Your Own Teacher" (Zhang et al. 2019). The shared layers below each exit then
learn features that already separate the classes, which regularises the whole network. The
heads are submodules of the objective: they train and checkpoint with the run, and the saved
student is the plain network without them.
"""

from __future__ import annotations

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
from slimcv.distillation.wiring import probe_shapes, record, resolve_layers
from slimcv.errors import SlimcvError
from slimcv.training.objective import Objective, StepOutput


@dataclass
class SelfConfig:
    """Self-distillation.

    Attributes:
        exits: student layers that get an exit head (shallow to deep), e.g.
            ``("layer2", "layer3")``; their outputs must be (N, C, H, W) or (N, C).
        temperature: softens the final output that teaches the exits.
        alpha: weight of the soft targets in each exit's loss (``1 - alpha``: labels).
        beta: weight of the exits' losses against the final output's cross-entropy.
    """

    exits: tuple[str, ...] | str = ()
    temperature: float = 4.0
    alpha: float = 0.9
    beta: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.exits, str):
            self.exits = tuple(n.strip() for n in self.exits.split(",") if n.strip())
        self.exits = tuple(self.exits)
        if not self.exits:
            raise SlimcvError("self-distillation needs exit layers: --exits layer2,layer3")
        if self.beta < 0:
            raise SlimcvError(f"the exit weight must be >= 0, got {self.beta}")
        check_mix(self.temperature, self.alpha)


class ExitHead(nn.Module):
    """Global average pool + linear classifier on one intermediate output."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.dim() == 4:
            features = features.mean(dim=(2, 3))
        return self.fc(features)


class SelfObjective(Objective):
    def __init__(self, config: SelfConfig, heads: list[ExitHead]) -> None:
        super().__init__()
        self.exits = tuple(config.exits)
        self.heads = nn.ModuleList(heads)
        self.temperature = config.temperature
        self.alpha = config.alpha
        self.beta = config.beta

    def forward(  # type: ignore[override]
        self,
        module: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> StepOutput:
        with record(module, self.exits) as features:
            logits = module(images)
        ce = nn.functional.cross_entropy(logits, labels)
        # The final output is the teacher: constant for the exits' soft-target terms.
        probs = soft_targets(logits.detach(), self.temperature)
        exit_loss = logits.new_zeros(())
        parts: dict[str, float] = {"ce": float(ce.detach())}
        for name, head in zip(self.exits, self.heads, strict=True):
            exit_logits = head(features[name])
            term, _ = mixed_loss(exit_logits, labels, probs, self.temperature, self.alpha)
            exit_loss = exit_loss + term
            parts[f"exit:{name}"] = float(term.detach())
        return StepOutput(ce + self.beta * exit_loss, logits, parts)


def build_self(config: SelfConfig, context: DistillContext) -> Objective:
    names = list(config.exits)  # type: ignore[arg-type]
    resolve_layers(context.student, names, "the student")
    shapes = probe_shapes(context.student, names, context.input_shape)
    for name, shape in shapes.items():
        if len(shape) not in (2, 4):
            raise SlimcvError(f"exit layer {name!r} outputs shape {list(shape)}, not a map")
    torch.manual_seed(context.seed)
    heads = [ExitHead(shapes[n][1], context.num_classes) for n in names]
    return SelfObjective(config, heads)


SELF = register(
    Method(
        "self",
        SelfConfig,
        build_self,
        teachers="none",
        uses_cache=False,
        summary="self-distillation: the final output teaches early-exit heads at named layers",
    )
)
