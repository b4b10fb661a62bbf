"""Channel importance criteria for structured pruning, by name.

Each entry of :data:`CRITERIA` is a :class:`Criterion`: calling it builds a fresh Torch-Pruning
importance (``tp.importance.Importance``), which scores every channel of a dependency group so
that the pruner can drop the lowest. Scores are normalised per group (divided by their mean), so
that ``global_ranking`` can compare groups of different layers.

* ``l1`` / ``l2``: norm of the weights a channel owns across the whole group (filters of the
  producing layers, columns of the consuming ones, norm scales). Data-free, the usual default.
* ``bn``: |gamma| of the BatchNorm layers in the group (network slimming, Liu et al. 2017);
  train with :func:`slimcv.pruning.structured.bn_sparsity_loss` first so that the scales
  separate. Groups without BatchNorm (transformer blocks, linear heads) fall back to ``l1``,
  otherwise they could never be ranked.
* ``taylor``: |w * dL/dw| summed per channel (Molchanov et al. 2019): the first-order estimate
  of the loss change when the channel is removed. Needs gradients, hence data.
* ``fpgm``: distance of each filter to the others (He et al. 2019): filters near the geometric
  median are redundant, whatever their norm.
* ``random``: a seeded baseline; a criterion that cannot beat it is not worth its cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch_pruning as tp

from slimcv.registry import Registry


@dataclass(frozen=True)
class Criterion:
    """A named way to rank channels.

    Attributes:
        build: makes a new Torch-Pruning importance object.
        needs_gradients: the importance reads ``.grad`` of the weights, so the caller must run
            a few labelled batches through the model (with a loss and ``backward``) first.
        description: one line for help texts and reports.
    """

    build: Callable[[], tp.importance.Importance]
    needs_gradients: bool = False
    description: str = ""

    def __call__(self) -> tp.importance.Importance:
        return self.build()


#: Channel importance criteria by name; ``CRITERIA.get(name)()`` gives a tp importance.
CRITERIA: Registry[Criterion] = Registry("pruning criterion")


class SeededRandomImportance(tp.importance.Importance):
    """Random scores from a private generator, so that a run can be repeated.

    Torch-Pruning's ``RandomImportance`` draws from the global RNG, which makes the chosen
    channels depend on whatever ran before.
    """

    def __init__(self, seed: int = 0) -> None:
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def __call__(self, group: tp.Group) -> torch.Tensor:
        _, idxs = group[0]
        return torch.rand(len(idxs), generator=self.generator)


class BNScaleOrMagnitudeImportance(tp.importance.Importance):
    """|gamma| of the group's BatchNorms; L1 weight magnitude where a group has none."""

    def __init__(self) -> None:
        self.bn = tp.importance.BNScaleImportance()
        self.fallback = tp.importance.GroupMagnitudeImportance(p=1)

    def __call__(self, group: tp.Group) -> torch.Tensor | None:
        scores = self.bn(group)
        return scores if scores is not None else self.fallback(group)


class SafeTaylorImportance(tp.importance.GroupTaylorImportance):
    """Taylor importance that treats a weight without a gradient as unimportant-by-data.

    Torch-Pruning dereferences ``weight.grad`` unconditionally; a layer the loss does not reach
    (frozen, or unused in eval mode) would crash it. A zero gradient is the honest reading:
    the batches give no evidence that the weight matters.
    """

    def __call__(self, group: tp.Group) -> torch.Tensor | None:
        for dep, _ in group:
            layer = dep.target.module
            for name in ("weight", "bias"):
                param = getattr(layer, name, None)
                if isinstance(param, torch.nn.Parameter) and param.grad is None:
                    param.grad = torch.zeros_like(param)
        return super().__call__(group)


class SafeFPGMImportance(tp.importance.FPGMImportance):
    """FPGM that skips the input side of grouped convolutions.

    Torch-Pruning's FPGM repeats a 2-D tensor with a 1-D repeat for grouped (not depthwise)
    convolutions and raises (``Number of dimensions of repeat dims can not be smaller``);
    RegNet's grouped convs hit it. The filters that produce the channels still count.
    """

    def __call__(self, group: tp.Group, **kwargs: object) -> torch.Tensor | None:
        kept = tp.Group()
        for item in group:
            layer = item.dep.target.module
            grouped_input = (
                item.dep.handler == tp.prune_conv_in_channels
                and isinstance(layer, torch.nn.modules.conv._ConvNd)
                and layer.groups not in (1, layer.in_channels)
            )
            if not grouped_input:
                kept.add_dep(item.dep, item.idxs)
                kept[-1].root_idxs = item.root_idxs
        kept._DG = group._DG
        return super().__call__(kept, **kwargs)


def _register(name: str, criterion: Criterion) -> None:
    CRITERIA.register(name)(criterion)


_register(
    "l1",
    Criterion(
        lambda: tp.importance.GroupMagnitudeImportance(p=1),
        description="L1 norm of each channel's weights across its dependency group",
    ),
)
_register(
    "l2",
    Criterion(
        lambda: tp.importance.GroupMagnitudeImportance(p=2),
        description="L2 norm of each channel's weights across its dependency group",
    ),
)
_register(
    "bn",
    Criterion(
        BNScaleOrMagnitudeImportance,
        description="BatchNorm scale |gamma| (network slimming); L1 where a group has no BN",
    ),
)
_register(
    "taylor",
    Criterion(
        SafeTaylorImportance,
        needs_gradients=True,
        description="first-order Taylor estimate |w * dL/dw| from loss gradients on data",
    ),
)
_register(
    "fpgm",
    Criterion(
        SafeFPGMImportance,
        description="distance to the other filters (geometric median: redundant filters go)",
    ),
)
_register(
    "random",
    Criterion(SeededRandomImportance, description="seeded random scores: the baseline"),
)
