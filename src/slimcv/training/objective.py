"""What a training step minimises: the one seam between the training loop and the techniques.

The loop (:func:`slimcv.training.loop.fit`) owns batching, optimisation, schedules,
checkpoints and resumption; it does not know what distillation or QAT are. A technique that
needs a different loss gives the loop an :class:`Objective`:

- ``forward(module, images, labels, indices)`` returns the step's loss and the trained model's
  logits (the loop reports accuracy from them);
- the objective is an ``nn.Module``, so anything it *learns* alongside the model (1x1 feature
  adapters, a peer student in mutual distillation) is a registered submodule: the loop trains
  every parameter of it that requires a gradient, and saves its ``state_dict`` in checkpoints
  so a resumed run continues with the same adapters;
- anything it only *reads* (a frozen teacher) must stay out of its ``state_dict`` and
  ``parameters()`` - checkpoints would otherwise carry a whole teacher - e.g. by holding it in
  a tuple or a plain list attribute;
- ``indices`` are the positions of the batch's samples in the training set, so an objective
  can look up per-sample data such as cached teacher logits.

``train()``/``eval()`` are called on the objective together with the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class StepOutput:
    """One training step's result.

    Attributes:
        loss: the scalar to minimise (backpropagated by the loop).
        logits: the trained model's outputs for the batch (for the reported accuracy).
        parts: named components of the loss, detached, for logs (e.g. ``{"kd": .., "ce": ..}``).
    """

    loss: torch.Tensor
    logits: torch.Tensor
    parts: dict[str, float] | None = None


class Objective(nn.Module):
    """Base class: subclasses implement :meth:`forward`."""

    def forward(  # type: ignore[override]
        self,
        module: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> StepOutput:
        raise NotImplementedError


class CrossEntropyObjective(Objective):
    """Plain supervised training: cross-entropy against the labels."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(  # type: ignore[override]
        self,
        module: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> StepOutput:
        logits = module(images)
        return StepOutput(self.criterion(logits, labels), logits)
