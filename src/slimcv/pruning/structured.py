"""Structured pruning: physically remove channels, filters and attention heads, on any graph.

Removing a channel means removing it everywhere it lives: the filter that makes it, the
BatchNorm entry that scales it, the input column of every layer that reads it, and - through
residual adds, concatenations and attention - the channels of other layers that must go with
it. Torch-Pruning's dependency graph (Fang et al., CVPR 2023) finds these groups from one traced
forward pass; slimcv adds what it needs to be right on real model zoos:

* :mod:`slimcv.pruning.model_fixes`: per-architecture remedies where the traced graph misleads
  Torch-Pruning (channel shuffles, window attention, tied attention widths, ghost modules).
* :mod:`slimcv.pruning.criteria`: how channels are ranked (``l1``, ``l2``, ``bn``, ``taylor``,
  ``fpgm``, ``random``).
* Every prune is recorded as a ``resize`` architecture change (:mod:`slimcv.sources.
  arch_changes`), so a pruned artifact rebuilds in a fresh process from its source string.

The entry point is :func:`prune_structured_` (in place); :func:`prunable_layers` lists what it
can act on, :func:`bn_sparsity_loss` is the network-slimming regulariser for the ``bn``
criterion, and :func:`remove_blocks_` drops whole residual blocks.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from slimcv.analysis import profile_model
from slimcv.errors import SlimcvError
from slimcv.pruning.criteria import CRITERIA
from slimcv.pruning.model_fixes import PruningSetup, prepare_setup
from slimcv.pruning.structured_blocks import remove_blocks_
from slimcv.sources.arch_changes import resize_change, snapshot

__all__ = [
    "StructuredConfig",
    "StructuredReport",
    "bn_sparsity_loss",
    "prunable_layers",
    "prune_structured_",
    "remove_blocks_",
]

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class StructuredConfig:
    """How much structure to remove and how to choose it.

    Attributes:
        ratio: fraction of the channels removed from each prunable group, and of the heads of
            each attention (Torch-Pruning's ``pruning_ratio``). Removing half of every width
            keeps about a quarter of the MACs of a conv net (resnet18: 1.82 -> ~0.49 G).
        criterion: how channels are ranked; see :data:`slimcv.pruning.criteria.CRITERIA`.
        global_ranking: rank channels of all groups against each other, so that layers with
            many weak channels lose more (the total removed stays ``ratio``).
        round_to: round kept channel counts to the nearest multiple of this (SIMD and tensor
            cores like multiples of 8); in grouped layers each group's count is rounded. A group
            too narrow to round stays whole; whole attention heads are not rounded further.
        ignore: names of modules whose output channels are kept (their input channels still
            follow the layer before them). The classifier head is always kept.
        layer_ratios: per-layer ratio overrides, keyed by layer names from
            :func:`prunable_layers`.
        prune_heads: remove whole attention heads; otherwise the same dimensions of every head.
    """

    ratio: float = 0.5
    criterion: str = "l2"
    global_ranking: bool = False
    round_to: int | None = None
    ignore: tuple[str, ...] = ()
    layer_ratios: dict[str, float] = field(default_factory=dict)
    prune_heads: bool = True

    def __post_init__(self) -> None:
        _check_ratio(self.ratio, "ratio")
        for name, ratio in self.layer_ratios.items():
            _check_ratio(ratio, f"layer ratio of {name}")
        CRITERIA.get(self.criterion)  # raises UnknownNameError listing the known criteria
        if self.round_to is not None and (
            isinstance(self.round_to, bool)
            or not isinstance(self.round_to, int)
            or self.round_to < 1
        ):
            raise SlimcvError(f"round_to must be a positive integer, got {self.round_to!r}")
        if isinstance(self.ignore, str):
            raise SlimcvError("ignore must be a list of module names, not a single string")
        self.ignore = tuple(self.ignore)
        self.layer_ratios = dict(self.layer_ratios)


def _check_ratio(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise SlimcvError(f"{what} must be between 0 and 1 (exclusive), got {value!r}")


@dataclass
class StructuredReport:
    """What a structured prune did.

    Attributes:
        params_before, params_after: parameter counts.
        macs_before, macs_after: multiply-accumulates of one image (``profile_model``).
        layers: layer name -> [width before, width after] for every conv/linear/attention
            whose output width changed.
        heads: attention module name -> [heads before, heads after] where heads were removed.
        change: the ``resize`` architecture change to store in the artifact manifest.
        fixes: the model fixes that were applied (see :mod:`slimcv.pruning.model_fixes`).
    """

    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    layers: dict[str, list[int]]
    change: dict[str, Any]
    heads: dict[str, list[int]] = field(default_factory=dict)
    fixes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prunable_layers(
    module: nn.Module, example_input: torch.Tensor, config: StructuredConfig | None = None
) -> list[tuple[str, int]]:
    """The layers :func:`prune_structured_` can shrink, with their output channels.

    Each entry is the root of one group of coupled channels (pruning the root prunes the whole
    group), in module order. Groups that must stay whole (the classifier, ``config.ignore``,
    channels behind a shuffle) are left out. Meant for sensitivity analysis and allocation.
    """
    config = config or StructuredConfig()
    with _pruning_state(module):
        session = _Session(module, example_input, config)
        roots = session.prunable_roots()
    order = {m: i for i, m in enumerate(module.modules())}
    names = {m: n for n, m in module.named_modules()}
    return [(names[m], width) for m, width in sorted(roots, key=lambda r: order[r[0]])]


def prune_structured_(
    module: nn.Module,
    example_input: torch.Tensor,
    config: StructuredConfig,
    *,
    batches: Batches | None = None,
) -> StructuredReport:
    """Removes channels and heads from ``module`` in place.

    Args:
        module: the model; its train/eval flags and ``requires_grad`` are restored, gradients
            are cleared (they no longer fit the pruned shapes).
        example_input: an input batch the model accepts; traced once to find the groups.
        config: how much to remove and how to choose.
        batches: ``(images, labels)`` batches for data-driven criteria. ``taylor`` accumulates
            cross-entropy gradients over all of them, in eval mode so that BatchNorm statistics
            stay as they are; other criteria ignore them.

    Returns:
        Sizes before and after, the widths that changed and the architecture change to record.

    Raises:
        SlimcvError: a criterion needs data that was not given, a name in ``ignore`` or
            ``layer_ratios`` is not in the model, or a ``layer_ratios`` layer is not prunable.
    """
    criterion = CRITERIA.get(config.criterion)
    if criterion.needs_gradients and batches is None:
        raise SlimcvError(f"criterion {config.criterion} needs --data")
    shape = (1, *example_input.shape[1:])
    before = profile_model(module, shape)
    state = snapshot(module)
    widths, heads = _widths(module), _heads(module)
    with _pruning_state(module):
        session = _Session(module, example_input, config)
        if criterion.needs_gradients:
            assert batches is not None
            _accumulate_gradients(module, batches)
        session.prune()
    after = profile_model(module, shape)
    return StructuredReport(
        params_before=before.params,
        params_after=after.params,
        macs_before=before.macs,
        macs_after=after.macs,
        layers=_changed(widths, _widths(module)),
        change=resize_change(state, module),
        heads=_changed(heads, _heads(module)),
        fixes=list(session.setup.applied),
    )


def bn_sparsity_loss(module: nn.Module, weight: float) -> torch.Tensor:
    """``weight`` times the L1 norm of all BatchNorm scales: network slimming's regulariser.

    Added to the training loss for a few epochs before pruning with the ``bn`` criterion, it
    drives the scales of unneeded channels towards zero, so that ranking by |gamma| separates
    the channels the network uses from those it does not (Liu et al., ICCV 2017).

    Raises:
        SlimcvError: ``weight`` is negative, or the model has no affine BatchNorm.
    """
    if weight < 0:
        raise SlimcvError(f"bn sparsity weight must be >= 0, got {weight}")
    scales = [
        m.weight
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None
    ]
    if not scales:
        raise SlimcvError(
            f"{type(module).__name__} has no BatchNorm scales for the bn sparsity loss"
        )
    return weight * torch.stack([s.abs().sum() for s in scales]).sum()


# --------------------------------------------------------------------------------------------


class _GroupScorer(tp.importance.Importance):
    """The criterion, applied to what Torch-Pruning cannot see by itself.

    * Groups that reach a blocked module score ``None``: Torch-Pruning then leaves them whole.
    * Opaque units add the weights inside them (:meth:`UnitPruner.inner_items`).
    * Groups of tied attention get one score per head (the mean over the head), so that the
      lowest-ranked channels come in whole heads.
    """

    def __init__(self, criterion: tp.importance.Importance, setup: PruningSetup) -> None:
        self.criterion = criterion
        self.setup = setup
        #: (root module, pruning function) -> the scores the ranking used, for rounding.
        self.scores: dict[tuple[nn.Module, Any], torch.Tensor] = {}

    def blocked(self, group: tp.Group) -> bool:
        return any(dep.target.module in self.setup.blocked for dep, _ in group)

    def __call__(self, group: tp.Group) -> torch.Tensor | None:
        if self.blocked(group):
            return None
        scores = self.criterion(self._with_inner_items(group))
        if scores is not None and self.setup.prune_heads:
            scores = self._per_head(group, scores)
        if scores is not None:
            self.scores[(group[0].dep.target.module, group[0].dep.handler)] = scores
        return scores

    def _with_inner_items(self, group: tp.Group) -> tp.Group:
        extra = []
        for item in group:
            unit = self.setup.unit_pruner(item.dep.target.module)
            if unit is None:
                continue
            out = item.dep.handler == unit.prune_out_channels
            for layer, fn, idxs, positions in unit.inner_items(
                item.dep.target.module, out, list(item.idxs)
            ):
                roots = [item.root_idxs[p] for p in positions]
                extra.append((layer, fn, idxs, roots))
        if not extra:
            return group
        augmented = tp.Group()
        for item in group:
            augmented.add_dep(item.dep, item.idxs)
            augmented[-1].root_idxs = item.root_idxs
        for layer, fn, idxs, roots in extra:
            node = tp.Node(layer, None)
            augmented.add_dep(tp.Dependency(fn, fn, source=node, target=node), idxs)
            augmented[-1].root_idxs = roots
        augmented._DG = group._DG
        return augmented

    def _per_head(self, group: tp.Group, scores: torch.Tensor) -> torch.Tensor | None:
        blocks = _head_blocks(group, self.setup)
        if blocks is None:
            return None  # tied attention of different shapes in one group: leave it whole
        if not blocks:
            return scores
        out = scores.clone()
        spread = float(scores.abs().mean()) * 1e-6 + 1e-12
        for head, roots in sorted(blocks.items()):
            index = torch.tensor(roots, device=scores.device)
            out[index] = scores[index].mean() + head * spread  # ties broken per head
        return out


def _head_blocks(group: tp.Group, setup: PruningSetup) -> dict[int, list[int]] | None:
    """Root indices of each head of the tied attention in ``group`` ({} if there is none)."""
    found: dict[int, list[int]] | None = None
    shapes = set()
    for item in group:
        shape = setup.tied_heads.get(item.dep.target.module)
        if shape is None:
            continue
        shapes.add(shape)
        _, head_dim = shape
        blocks: dict[int, list[int]] = {}
        for idx, root in zip(item.idxs, item.root_idxs, strict=True):
            blocks.setdefault(int(idx) // head_dim, []).append(root)
        if found is None:
            found = blocks
        elif found != blocks:
            return None
    if len(shapes) > 1:
        return None
    return found or {}


class _Session:
    """One Torch-Pruning pruner, set up with slimcv's fixes, criteria and names."""

    def __init__(
        self, module: nn.Module, example_input: torch.Tensor, config: StructuredConfig
    ) -> None:
        self.module = module
        self.config = config
        names = dict(module.named_modules())
        ignored = [_resolve(names, name, "ignore") for name in config.ignore]
        ratios = {
            _resolve(names, name, "layer_ratios"): ratio
            for name, ratio in config.layer_ratios.items()
        }
        module.eval()  # no forward pass below may update BatchNorm statistics
        head = _classifier(module, example_input)
        self.setup = prepare_setup(module, prune_heads=config.prune_heads)
        for layer, name in zip(ratios, config.layer_ratios, strict=True):
            if not isinstance(layer, self.setup.root_types()):
                raise SlimcvError(
                    f"layer_ratios names {name}, a {type(layer).__name__}; "
                    "it must name a prunable conv or linear layer (see prunable_layers)"
                )
        self.scorer = _GroupScorer(CRITERIA.get(config.criterion)(), self.setup)
        with self.setup.tracing(), torch.enable_grad(), warnings.catch_warnings():
            # Torch-Pruning warns about every unwrapped parameter and unknown op it meets.
            warnings.simplefilter("ignore")
            self.pruner = tp.pruner.BasePruner(
                module,
                example_input,
                importance=self.scorer,
                global_pruning=config.global_ranking,
                pruning_ratio=config.ratio,
                pruning_ratio_dict=ratios,
                ignored_layers=[*ignored, *([head] if head is not None else [])],
                # Torch-Pruning's rounding compares a grouped layer's per-group count with its
                # total width and over-prunes; slimcv rounds in _rounded instead.
                round_to=None,
                # Fresh dicts: Torch-Pruning's defaults for these are shared mutable objects
                # that it writes into, so pruners would leak state into each other.
                in_channel_groups={},
                out_channel_groups=dict(self.setup.out_channel_groups),
                num_heads=self.setup.num_heads,
                prune_num_heads=config.prune_heads,
                prune_head_dims=not config.prune_heads,
                head_pruning_ratio=config.ratio if config.prune_heads else 0.0,
                customized_pruners=self.setup.customized_pruners,
                root_module_types=list(self.setup.root_types()),
                unwrapped_parameters=self.setup.unwrapped_parameters or None,
            )
        self._check_layer_ratios(ratios)

    def groups(self) -> Iterator[tp.Group]:
        """Full-index groups Torch-Pruning may prune (blocked ones left out)."""
        for group in self.pruner.DG.get_all_groups(
            ignored_layers=self.pruner.ignored_layers,
            root_module_types=self.pruner.root_module_types,
        ):
            if not self.scorer.blocked(group):
                yield group

    def prunable_roots(self) -> list[tuple[nn.Module, int]]:
        """One (layer, width) per prunable group, named by the group's first full-width layer.

        Torch-Pruning roots a group at whichever layer its trace met first (often a depthwise
        conv deep in the block); the first conv/linear in module order that produces all the
        group's channels is the name a person would look for. Any out-pruned member works as a
        key of ``ignore`` and ``layer_ratios``.
        """
        graph = self.pruner.DG
        order = {m: i for i, m in enumerate(self.module.modules())}
        roots = []
        for group in self.groups():
            width = graph.get_out_channels(group[0].dep.target)
            members = [
                dep.target.module
                for dep, idxs in group
                if graph.is_out_channel_pruning_fn(dep.handler)
                and isinstance(dep.target.module, self.setup.root_types())
                and dep.target.module in order
                and len(idxs) == width
            ]
            layer = min(members, key=order.__getitem__, default=group[0].dep.target.module)
            roots.append((layer, width))
        return roots

    def prune(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for group in self.pruner.step(interactive=True):
                if self._heads_group(group):
                    if self.setup.prune_heads:
                        group = self._whole_heads(group)
                elif self.config.round_to:
                    group = self._rounded(group, self.config.round_to)
                if group is not None:
                    group.prune()
        for finish in self.setup.finishers:
            finish()

    def _check_layer_ratios(self, ratios: dict[nn.Module, float]) -> None:
        if not ratios:
            return
        graph = self.pruner.DG
        reachable = {
            dep.target.module
            for group in self.groups()
            for dep, _ in group
            if graph.is_out_channel_pruning_fn(dep.handler)
        }
        names = {m: n for n, m in self.module.named_modules()}
        for layer in ratios:
            if layer not in reachable:
                raise SlimcvError(
                    f"layer_ratios names {names[layer]}, whose channels cannot be pruned "
                    "(classifier, ignored, or behind a barrier); see prunable_layers"
                )

    def _heads_group(self, group: tp.Group) -> bool:
        """Whether ``group`` removes attention heads or head dimensions."""
        graph = self.pruner.DG
        return any(
            item.dep.target.module in self.setup.tied_heads
            or (
                item.dep.target.module in self.setup.num_heads
                and graph.is_out_channel_pruning_fn(item.dep.handler)
            )
            for item in group
        )

    def _rounded(self, group: tp.Group, multiple: int) -> tp.Group | None:
        """The group with its kept channel count rounded to the nearest ``multiple``.

        A group may consist of equal slices that lose the same positions (Torch-Pruning's
        channel groups): the groups of a grouped conv, whose layer width is the total, or the
        halves of a ghost module, each of which is a layer of its own. The rounded count is the
        total in the first case and each slice's in the second. Removed positions are chosen
        by the scores the ranking used.
        """
        root, fn = group[0].dep.target.module, group[0].dep.handler
        scores = self.scorer.scores.get((root, fn))
        if scores is None:
            return group
        slices = self.pruner._get_channel_groups(group)
        width = len(scores) // slices
        kept = width - len(group[0].idxs) // slices
        slices_are_layers = any(i.dep.target.module in self.setup.out_channel_groups for i in group)
        step = multiple if slices_are_layers else multiple // math.gcd(multiple, slices)
        # At least one multiple is kept, so a harder ratio never prunes less than a softer one
        # (ratio searches rely on MACs falling as the ratio grows).
        target = min(max(round(kept / step), 1), width // step) * step
        if target == 0:
            return None  # narrower than one multiple: leave it whole
        if target == kept:
            return group
        ranked = scores.view(slices, width).mean(0).argsort().tolist()
        idxs = sorted(p + s * width for s in range(slices) for p in ranked[: width - target])
        if not idxs:
            return None
        graph = self.pruner.DG
        rounded = graph.get_pruning_group(root, fn, idxs)
        return rounded if graph.check_pruning_group(rounded) else None

    def _whole_heads(self, group: tp.Group) -> tp.Group | None:
        """Rounds a group of tied attention to whole heads (``None``: nothing to prune)."""
        tied = [item for item in group if item.dep.target.module in self.setup.tied_heads]
        if not tied:
            return group
        heads, head_dim = self.setup.tied_heads[tied[0].dep.target.module]
        counts = [0] * heads
        for idx in tied[0].idxs:
            counts[int(idx) // head_dim] += 1
        keep_heads = max(1, heads - math.floor(len(tied[0].idxs) / head_dim + 0.5))
        ranked = sorted(range(heads), key=lambda h: -counts[h])
        removed = set(ranked[: heads - keep_heads])
        if not removed:
            return None
        graph = self.pruner.DG
        root, fn = group[0].dep.target, group[0].dep.handler
        width = (
            graph.get_out_channels(root)
            if graph.is_out_channel_pruning_fn(fn)
            else graph.get_in_channels(root)
        )
        # The yielded group holds only the chosen channels; the full one maps every channel
        # of the attention to its root index.
        full = graph.get_pruning_group(root.module, fn, list(range(width)))
        item = next(i for i in full if i.dep.target.module is tied[0].dep.target.module)
        roots = sorted(
            {
                r
                for idx, r in zip(item.idxs, item.root_idxs, strict=True)
                if int(idx) // head_dim in removed
            }
        )
        rounded = graph.get_pruning_group(root.module, fn, roots)
        return rounded if graph.check_pruning_group(rounded) else None


def _resolve(names: dict[str, nn.Module], name: str, what: str) -> nn.Module:
    if name in names and name:
        return names[name]
    close = difflib.get_close_matches(name, [n for n in names if n], n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise SlimcvError(f"{what} names {name!r}, which is not a module of the model{hint}")


def _classifier(module: nn.Module, example_input: torch.Tensor) -> nn.Module | None:
    """The last conv/linear layer the forward pass runs: the classifier, kept whole."""
    order: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: order.append(m))
        for m in module.modules()
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    try:
        with torch.no_grad():
            module(example_input)
    finally:
        for hook in hooks:
            hook.remove()
    return order[-1] if order else None


@contextlib.contextmanager
def _pruning_state(module: nn.Module) -> Iterator[None]:
    """Restores train/eval flags and ``requires_grad`` (by name) and drops gradients.

    Tracing needs every parameter to require gradients, Torch-Pruning puts the model in eval
    mode, and pruning replaces parameters, so flags are put back by name, not by object.
    """
    training = {name: m.training for name, m in module.named_modules()}
    requires = {name: p.requires_grad for name, p in module.named_parameters()}
    for p in module.parameters():
        p.requires_grad_(True)
    try:
        yield
    finally:
        for name, m in module.named_modules():
            if name in training:
                m.training = training[name]
        for name, p in module.named_parameters():
            p.requires_grad_(requires.get(name, True))
            p.grad = None


def _accumulate_gradients(module: nn.Module, batches: Batches) -> None:
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    module.eval()
    module.zero_grad(set_to_none=True)
    seen = 0
    with torch.enable_grad():
        for images, labels in batches:
            logits = module(images.to(device))
            F.cross_entropy(logits, labels.to(device)).backward()
            seen += 1
    if not seen:
        raise SlimcvError("the taylor criterion got no batches; it needs labelled data")


def _widths(module: nn.Module) -> dict[str, int]:
    widths = {}
    for name, m in module.named_modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            widths[name] = m.out_channels
        elif isinstance(m, nn.Linear):
            widths[name] = m.out_features
        elif isinstance(m, nn.MultiheadAttention):
            widths[name] = m.embed_dim
    return widths


def _heads(module: nn.Module) -> dict[str, int]:
    return {
        name: m.num_heads
        for name, m in module.named_modules()
        if isinstance(getattr(m, "num_heads", None), int) and not isinstance(m.num_heads, bool)
    }


def _changed(before: dict[str, int], after: dict[str, int]) -> dict[str, list[int]]:
    return {k: [v, after[k]] for k, v in before.items() if k in after and after[k] != v}
