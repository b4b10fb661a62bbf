"""``feature``: named intermediate layers of the student imitate the teacher's (FitNets-style).

Layers are read with forward hooks (no model edits). Where widths differ a learned 1x1 adapter
maps the student's channels to the teacher's; where spatial sizes differ the student's map is
interpolated to the teacher's. The adapters are submodules of the objective: trained with the
student, checkpointed with the run, and not part of the saved student.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slimcv.distillation.losses import FEATURE_LOSSES, feature_loss
from slimcv.distillation.methods.base import (
    DistillContext,
    Method,
    TeacherTargets,
    check_mix,
    mixed_loss,
    register,
)
from slimcv.distillation.wiring import (
    make_adapter,
    match_spatial,
    probe_shapes,
    record,
    required_pairs,
    resolve_layers,
)
from slimcv.errors import SlimcvError, UnknownNameError
from slimcv.training.objective import Objective, StepOutput


@dataclass
class FeatureConfig:
    """Feature matching.

    Attributes:
        pairs: ``(teacher_layer, student_layer)`` names, or ``"t.layer:s.layer,..."``.
        loss: ``mse`` or ``cosine``.
        beta: weight of the feature term (summed over pairs).
        temperature: soft-target temperature for the logit term.
        alpha: weight of the soft targets in the logit term (0: labels only, plus features).
    """

    pairs: tuple[tuple[str, str], ...] | str = ()
    loss: str = "mse"
    beta: float = 1.0
    temperature: float = 4.0
    alpha: float = 0.9

    def __post_init__(self) -> None:
        self.pairs = required_pairs(self.pairs, "feature distillation")
        if self.loss not in FEATURE_LOSSES:
            raise UnknownNameError(
                f"unknown feature loss {self.loss!r}; known: {', '.join(FEATURE_LOSSES)}"
            )
        if self.beta < 0:
            raise SlimcvError(f"the feature weight must be >= 0, got {self.beta}")
        check_mix(self.temperature, self.alpha)


class LayerPairObjective(Objective):
    """Logit term plus ``beta`` times a per-pair term on hooked layer outputs.

    Subclasses define :meth:`pair_loss`; this class runs both networks with the layers recorded.
    """

    name = "feature"

    def __init__(self, targets: TeacherTargets, pairs, temperature, alpha, beta) -> None:
        super().__init__()
        self._targets = (targets,)
        self.pairs = tuple(pairs)
        self.temperature = temperature
        self.alpha = alpha
        self.beta = beta

    def pair_loss(self, index: int, student: torch.Tensor, teacher: torch.Tensor):
        raise NotImplementedError

    def forward(  # type: ignore[override]
        self,
        module: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> StepOutput:
        teacher = self._targets[0].teachers[0]
        t_names = [t for t, _ in self.pairs]
        s_names = [s for _, s in self.pairs]
        with record(teacher.module, t_names) as t_feats:
            t_logits = teacher(images)
        with record(module, s_names) as s_feats:
            logits = module(images)
        probs = torch.softmax(t_logits / self.temperature, dim=1) if self.alpha > 0 else None
        loss, parts = mixed_loss(logits, labels, probs, self.temperature, self.alpha)
        extra = sum(
            self.pair_loss(i, s_feats[s], t_feats[t]) for i, (t, s) in enumerate(self.pairs)
        )
        loss = loss + self.beta * extra
        parts[self.name] = float(extra.detach())  # type: ignore[union-attr]
        return StepOutput(loss, logits, parts)


class FeatureObjective(LayerPairObjective):
    """Feature matching through learned adapters."""

    def __init__(self, targets, pairs, adapters: list[nn.Module], config: FeatureConfig) -> None:
        super().__init__(targets, pairs, config.temperature, config.alpha, config.beta)
        self.adapters = nn.ModuleList(adapters)
        self.loss_kind = config.loss

    def pair_loss(self, index: int, student: torch.Tensor, teacher: torch.Tensor):
        adapted = match_spatial(self.adapters[index](student), teacher)
        return feature_loss(adapted, teacher, self.loss_kind)


def check_pairs(context: DistillContext, pairs) -> tuple[dict, dict]:
    """Checks that every named layer exists and returns the layer output shapes.

    Raises:
        UnknownNameError: a layer name does not exist (the message lists those that do).
    """
    teacher = context.teachers[0]
    t_names = [t for t, _ in pairs]
    s_names = [s for _, s in pairs]
    resolve_layers(teacher.module, t_names, "the teacher")
    resolve_layers(context.student, s_names, "the student")
    t_size = teacher.teacher_pre.image_size if teacher.teacher_pre else context.input_shape[-1]
    t_shapes = probe_shapes(teacher.module, t_names, (1, 3, t_size, t_size))
    s_shapes = probe_shapes(context.student, s_names, context.input_shape)
    return t_shapes, s_shapes


def build_feature(config: FeatureConfig, context: DistillContext) -> Objective:
    t_shapes, s_shapes = check_pairs(context, config.pairs)
    torch.manual_seed(context.seed)
    adapters = [make_adapter(s_shapes[s], t_shapes[t]) for t, s in config.pairs]
    targets = TeacherTargets(context.teachers, None)
    return FeatureObjective(targets, config.pairs, adapters, config)


FEATURE = register(
    Method(
        "feature",
        FeatureConfig,
        build_feature,
        teachers="one",
        uses_cache=False,
        summary="named layer pairs matched (MSE or cosine) through learned 1x1 adapters",
    )
)
