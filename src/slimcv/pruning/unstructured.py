"""Unstructured magnitude pruning and 2:4 semi-structured sparsity, as real masks.

Masks are ``torch.nn.utils.prune`` re-parametrisations: a layer's ``weight`` becomes
``weight_orig * weight_mask``, recomputed by a forward pre-hook, so pruned weights stay zero
through any amount of fine-tuning (their gradients are zero and the hook re-applies the mask even
if an optimizer's momentum or weight decay moves ``weight_orig``). :func:`make_permanent_` folds
the masks into plain weights when training is done.

Which layers are pruned: the weights of ``Linear`` and ``Conv1d/2d/3d``, which hold nearly all
parameters of vision models. Left dense, and listed in the report's ``skipped``:

* depthwise convolutions (one input channel per group): ``k*k`` weights per channel are a tiny
  share of the model, each one shapes a whole channel's filter so they are very sensitive, and
  with a single input channel they cannot hold a 2:4 pattern anyway;
* ``MultiheadAttention.out_proj``: attention reads ``out_proj.weight`` without calling
  ``out_proj``, so a mask hook on it would never run;
* parametrized weights (weight norm, ...), uninitialised lazy layers, and weights shared by two
  layers (a mask on one would leave the other dense);
* anything named in :attr:`UnstructuredConfig.ignore` (the first convolution and the classifier
  are common choices: they are small and sensitive).

Biases and normalisation layers are never pruned: they are few and each one affects a whole
channel.

Honest expectations: dense runtimes multiply by zeros as fast as by anything else, so
unstructured sparsity shrinks storage (save artifacts with ``sparse=True``) but neither MACs nor
latency. 2:4 sparsity can run faster on the sparse tensor cores of NVIDIA Ampere and newer GPUs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize, prune

from slimcv.errors import SlimcvError

SCOPES = ("global", "layer")
PATTERNS = ("unstructured", "2:4")

NOTE = (
    "unstructured sparsity only shrinks storage (sparse weights in the artifact); dense runtimes "
    "(PyTorch, ONNX Runtime, OpenVINO, TensorRT without sparsity) still multiply by every zero, "
    "so it lowers neither MACs nor latency. The 2:4 pattern can be accelerated by sparse tensor "
    "cores on NVIDIA Ampere or newer GPUs (e.g. TensorRT with sparsity enabled)."
)

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_GROUP = 4  # 2:4 keeps the 2 largest of every 4 consecutive input weights


@dataclass
class UnstructuredConfig:
    """What to prune and how.

    Attributes:
        sparsity: fraction of the pruned layers' weights set to zero, in (0, 1). Ignored by the
            2:4 pattern, whose sparsity is 0.5 by construction. Masks only ever grow: asking for
            less than a model already has leaves its masks as they are.
        scope: ``global`` ranks all pruned weights together under one magnitude threshold, so
            layers with many small weights lose more (usually better accuracy at the same
            sparsity); ``layer`` prunes every layer to the same sparsity.
        pattern: ``unstructured`` (any weight) or ``2:4`` (in every group of 4 consecutive input
            channels, per output channel and kernel position, the 2 smallest are zeroed; the
            layout NVIDIA's sparse tensor cores and TensorRT require).
        ignore: module names left dense; a name also covers the modules inside it.
    """

    sparsity: float = 0.5
    scope: str = "global"
    pattern: str = "unstructured"
    ignore: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (
            isinstance(self.sparsity, bool)
            or not isinstance(self.sparsity, (int, float))
            or not 0.0 < self.sparsity < 1.0
        ):
            raise SlimcvError(f"sparsity must be a fraction in (0, 1), got {self.sparsity!r}")
        if self.scope not in SCOPES:
            raise SlimcvError(f"unknown scope {self.scope!r}; expected one of {', '.join(SCOPES)}")
        if self.pattern not in PATTERNS:
            raise SlimcvError(
                f"unknown sparsity pattern {self.pattern!r}; expected one of {', '.join(PATTERNS)}"
            )
        self.ignore = (self.ignore,) if isinstance(self.ignore, str) else tuple(self.ignore)


@dataclass
class LayerSparsity:
    """Zeros in one layer's weight (the effective weight, masks applied)."""

    name: str
    type: str
    params: int
    zeros: int
    sparsity: float


@dataclass
class SparsityReport:
    """How sparse a model is.

    Attributes:
        layers: the pruned layers.
        total_params: all parameters of the model.
        pruned_params: weights of the pruned layers.
        zeros: zero weights in the pruned layers.
        overall_sparsity: ``zeros / pruned_params``.
        model_sparsity: ``zeros / total_params``.
        note: what the sparsity does and does not buy.
        skipped: Conv/Linear layers left dense, with the reason.
    """

    layers: list[LayerSparsity]
    total_params: int
    pruned_params: int
    zeros: int
    overall_sparsity: float
    model_sparsity: float
    note: str = NOTE
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply_masks_(module: nn.Module, config: UnstructuredConfig) -> SparsityReport:
    """Adds (or tightens) magnitude masks on ``module``'s layers, in place.

    Weights already masked rank below every live weight, so re-applying with a higher sparsity
    keeps them pruned and removes the smallest of the survivors: iterative and gradual pruning
    are repeated calls.

    Returns:
        The sparsity of the layers this call pruned.

    Raises:
        SlimcvError: an ``ignore`` name is not a module of ``module``, or nothing is left to
            prune.
    """
    _check_ignore(module, config.ignore)
    layers, skipped = _select(module, config.ignore)
    if config.pattern == "2:4":
        for name, layer in list(layers):
            inputs = _weight_param(layer).shape[1]
            if inputs % _GROUP:
                skipped[name] = f"2:4 needs a multiple of 4 input channels, it has {inputs}"
                layers.remove((name, layer))
    if not layers:
        raise SlimcvError(f"no layer left to prune; skipped: {_describe(skipped)}")
    with torch.no_grad():
        scores = [_scores(layer) for _, layer in layers]
        if config.pattern == "2:4":
            pruned = [_two_of_four(s) for s in scores]
        elif config.scope == "layer":
            pruned = [_smallest(s, round(config.sparsity * s.numel())) for s in scores]
        else:
            pruned = _smallest_global(scores, config.sparsity)
    for (_, layer), mask in zip(layers, pruned, strict=True):
        _mask_(layer, ~mask)
    return _report(module, [name for name, _ in layers], skipped)


def make_permanent_(module: nn.Module) -> None:
    """Folds every pruning mask into its tensor and removes the hooks, in place.

    Pruned entries become ``+0.0`` (``w * 0`` of a negative ``w`` is ``-0.0``, which sparse
    storage would have to keep as a value).
    """
    for sub in module.modules():
        for hook in list(sub._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                name = hook._tensor_name
                prune.remove(sub, name)
                with torch.no_grad():
                    tensor = getattr(sub, name)
                    tensor.masked_fill_(tensor == 0, 0.0)


def has_masks(module: nn.Module) -> bool:
    """Whether any submodule still carries a pruning mask."""
    return prune.is_pruned(module)


def sparsity_report(module: nn.Module) -> SparsityReport:
    """Measures the sparsity of ``module``.

    With masks, the masked layers are reported. Without (e.g. after :func:`make_permanent_`),
    the layers the selection rule would prune that hold at least one zero weight are: which
    layers were pruned is no longer recorded, and counting the dense ones (a first convolution
    left out of 2:4, an ignored classifier) would understate the sparsity of the pruned ones.
    """
    masked = [name for name, sub in module.named_modules() if _weight_hook(sub) is not None]
    if not masked:
        layers, skipped = _select(module, ())
        sparse = []
        with torch.no_grad():
            for name, sub in layers:
                weight = _effective_weight(sub)
                if int(torch.count_nonzero(weight)) < weight.numel():
                    sparse.append(name)
                else:
                    skipped[name] = "no zero weight"
        return _report(module, sparse, skipped)
    dense = {
        name: "no mask"
        for name, sub in module.named_modules()
        if isinstance(sub, _LAYERS) and name not in masked
    }
    return _report(module, masked, dense)


def _check_ignore(module: nn.Module, ignore: Iterable[str]) -> None:
    names = [name for name, _ in module.named_modules()]
    known = set(names)
    for item in ignore:
        if item not in known:
            close = difflib.get_close_matches(item, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise SlimcvError(f"ignore names {item!r}, which is not a module of the model{hint}")


def _select(
    module: nn.Module, ignore: tuple[str, ...]
) -> tuple[list[tuple[str, nn.Module]], dict[str, str]]:
    """The layers the rule in the module docstring prunes, and why the others are skipped."""
    attention = {
        id(sub.out_proj) for sub in module.modules() if isinstance(sub, nn.MultiheadAttention)
    }
    chosen: list[tuple[str, nn.Module]] = []
    skipped: dict[str, str] = {}
    owners: dict[int, list[str]] = {}
    for name, sub in module.named_modules():
        if not isinstance(sub, _LAYERS):
            continue
        reason = _skip_reason(name, sub, ignore, attention)
        if reason:
            skipped[name] = reason
            continue
        owners.setdefault(id(_weight_param(sub)), []).append(name)
        chosen.append((name, sub))
    for names in owners.values():
        for name in names if len(names) > 1 else ():
            skipped[name] = f"weight shared by {', '.join(names)}"
    return [(n, s) for n, s in chosen if n not in skipped], skipped


def _skip_reason(
    name: str, sub: nn.Module, ignore: tuple[str, ...], attention: set[int]
) -> str | None:
    if any(name == item or name.startswith(item + ".") or item == "" for item in ignore):
        return "ignored"
    if id(sub) in attention:
        return "MultiheadAttention reads this weight without calling the layer"
    if parametrize.is_parametrized(sub, "weight"):
        return "weight is parametrized"
    weight = _weight_param(sub)
    if weight is None or isinstance(weight, nn.parameter.UninitializedParameter):
        return "no initialised weight"
    if isinstance(sub, nn.modules.conv._ConvNd) and sub.groups > 1 and weight.shape[1] == 1:
        return "depthwise convolution"
    return None


def _weight_hook(sub: nn.Module) -> prune.BasePruningMethod | None:
    for hook in sub._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod) and hook._tensor_name == "weight":
            return hook
    return None


def _weight_param(sub: nn.Module) -> torch.Tensor | None:
    """The trained tensor behind ``weight``: ``weight_orig`` once masked."""
    if "weight_orig" in sub._parameters:
        return sub._parameters["weight_orig"]
    return sub._parameters.get("weight")


def _effective_weight(sub: nn.Module) -> torch.Tensor:
    weight = _weight_param(sub)
    assert weight is not None
    if _weight_hook(sub) is None:
        return weight.detach()
    return weight.detach() * sub.weight_mask


def _scores(sub: nn.Module) -> torch.Tensor:
    """Magnitudes, with masked weights at -1 so they are always pruned first."""
    weight = _weight_param(sub)
    assert weight is not None
    scores = weight.detach().abs().float()
    if _weight_hook(sub) is not None:
        scores.masked_fill_(sub.weight_mask == 0, -1.0)
    return scores


def _smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of exactly ``k`` smallest entries (ties broken by position)."""
    flat = scores.reshape(-1)
    pruned = torch.zeros_like(flat, dtype=torch.bool)
    if k >= flat.numel():
        pruned.fill_(True)
    elif k > 0:
        threshold = torch.kthvalue(flat, k).values
        pruned |= flat < threshold
        ties = torch.nonzero(flat == threshold).flatten()[: k - int(torch.count_nonzero(pruned))]
        pruned[ties] = True
    return pruned.reshape(scores.shape)


def _smallest_global(scores: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    device = scores[0].device
    flat = torch.cat([s.reshape(-1).to(device) for s in scores])
    pruned = _smallest(flat, round(sparsity * flat.numel()))
    parts = torch.split(pruned, [s.numel() for s in scores])
    return [p.reshape(s.shape).to(s.device) for p, s in zip(parts, scores, strict=True)]


def _two_of_four(scores: torch.Tensor) -> torch.Tensor:
    """Prunes the 2 smallest of every 4 consecutive input channels.

    Input channels are dimension 1 of Linear and Conv weights; moving them last gives the
    ``(out, *kernel, in)`` layout in which TensorRT and cuSPARSELt look for the pattern (for each
    output channel and kernel position, every 4 input channels hold at least 2 zeros).
    """
    moved = scores.movedim(1, -1)
    groups = moved.reshape(-1, _GROUP)
    smallest = groups.topk(2, dim=1, largest=False).indices
    pruned = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, smallest, True)
    return pruned.reshape(moved.shape).movedim(-1, 1)


def _mask_(sub: nn.Module, keep: torch.Tensor) -> None:
    """Multiplies ``keep`` into the layer's mask, adding the pruning hook the first time."""
    hook = _weight_hook(sub)
    if hook is None:
        prune.custom_from_mask(sub, "weight", keep)
        return
    # Updating the existing mask in place, rather than stacking another CustomFromMask in a
    # PruningContainer, keeps memory flat over the many steps of a gradual schedule.
    with torch.no_grad():
        sub.weight_mask.mul_(keep.to(sub.weight_mask.dtype))
    sub.weight = hook.apply_mask(sub)


def _report(module: nn.Module, names: list[str], skipped: dict[str, str]) -> SparsityReport:
    layers = []
    with torch.no_grad():
        for name in names:
            sub = module.get_submodule(name)
            weight = _effective_weight(sub)
            zeros = weight.numel() - int(torch.count_nonzero(weight))
            layers.append(
                LayerSparsity(
                    name, type(sub).__name__, weight.numel(), zeros, zeros / weight.numel()
                )
            )
    total = sum(p.numel() for p in module.parameters())
    pruned = sum(layer.params for layer in layers)
    zeros = sum(layer.zeros for layer in layers)
    return SparsityReport(
        layers=layers,
        total_params=total,
        pruned_params=pruned,
        zeros=zeros,
        overall_sparsity=zeros / pruned if pruned else 0.0,
        model_sparsity=zeros / total if total else 0.0,
        skipped=skipped,
    )


def _describe(skipped: dict[str, str]) -> str:
    if not skipped:
        return "the model has no Conv or Linear layer"
    items = [f"{name} ({reason})" for name, reason in list(skipped.items())[:5]]
    more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return ", ".join(items) + more
