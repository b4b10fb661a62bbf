"""Fixes that let Torch-Pruning's dependency graph prune models its defaults fail on.

Torch-Pruning traces one forward pass and infers from the autograd graph which channels are
coupled. That works for plain conv nets; it fails (crashes, hangs, or silently produces a model
that no longer runs) where the graph hides or scrambles the channel structure. Each fix here
names the model part it recognises, says what goes wrong and why its remedy is right, and
contributes to a :class:`PruningSetup`: extra arguments for Torch-Pruning (custom pruners,
attention head counts, channel groups, unwrapped parameters), trace-time stand-ins, parts that
must stay whole, and updates of plain attributes after pruning.

Fixes are looked up in :data:`FIXES` and applied when they recognise something in the model;
each recognises modules by their exact class, so a look-alike is never patched by accident.
"""

from __future__ import annotations

import abc
import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from slimcv.errors import SlimcvError
from slimcv.pruning.structured_units import (
    Barrier,
    BarrierPruner,
    InnerItem,
    UnitPruner,
    instance_forwards,
    keep_index,
    opaque_forward,
    select_,
    split_heads,
)
from slimcv.registry import Registry


@dataclass
class PruningSetup:
    """Everything the fixes contribute to one pruning run.

    Attributes:
        prune_heads: remove whole attention heads (else the same dimensions of every head).
        customized_pruners: Torch-Pruning pruners for module classes it does not know.
        unwrapped_parameters: bare ``nn.Parameter`` s and the dimension that holds channels.
        num_heads: qkv projection -> head count, for Torch-Pruning's own head pruning. Torch-
            Pruning updates the counts in place while it prunes.
        out_channel_groups: modules whose channels must be removed evenly from ``n`` equal
            slices (heads of tied attention, the two halves of a ghost module).
        tied_heads: attention whose inner width is the residual width -> (heads, head dim);
            with ``prune_heads`` their channel group is rounded to whole heads.
        blocked: modules no channel group may touch; groups that reach them stay whole.
        opaque: modules traced as a single node (their pruner describes them).
        trace_children: (parent, name, child) modules attached only while tracing.
        trace_forwards: (module, forward) overrides active only while tracing.
        finishers: run after pruning to update plain attributes the forward pass reads.
        applied: names of the fixes that recognised something.
    """

    prune_heads: bool = True
    customized_pruners: dict[type, tp.pruner.BasePruningFunc] = field(default_factory=dict)
    unwrapped_parameters: list[tuple[nn.Parameter, int]] = field(default_factory=list)
    num_heads: dict[nn.Module, int] = field(default_factory=dict)
    out_channel_groups: dict[nn.Module, int] = field(default_factory=dict)
    tied_heads: dict[nn.Module, tuple[int, int]] = field(default_factory=dict)
    blocked: set[nn.Module] = field(default_factory=set)
    opaque: list[nn.Module] = field(default_factory=list)
    trace_children: list[tuple[nn.Module, str, nn.Module]] = field(default_factory=list)
    trace_forwards: list[tuple[nn.Module, Callable[..., torch.Tensor]]] = field(
        default_factory=list
    )
    finishers: list[Callable[[], None]] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def tracing(self) -> Iterator[None]:
        """Installs the trace-time stand-ins; the model is restored on exit, even on error."""
        for parent, name, child in self.trace_children:
            parent.add_module(name, child)
        try:
            with instance_forwards(self.trace_forwards), opaque_forward(self.opaque):
                yield
        finally:
            for parent, name, _ in self.trace_children:
                delattr(parent, name)

    def unit_pruner(self, module: nn.Module) -> UnitPruner | None:
        pruner = self.customized_pruners.get(type(module))
        return pruner if isinstance(pruner, UnitPruner) else None

    def root_types(self) -> tuple[type, ...]:
        """Layer types that can root a channel group: conv, linear and the opaque units.

        Units must be roots too: two ghost modules in a row form a group with no conv or
        linear layer in it, which Torch-Pruning would otherwise never visit.
        """
        units = (t for t, p in self.customized_pruners.items() if isinstance(p, UnitPruner))
        return (nn.modules.conv._ConvNd, nn.Linear, nn.LSTM, *units)

    def tie_heads(self, module: nn.Module, num_heads: int, head_dim: int) -> None:
        """Registers attention whose channels are the residual channels, split in heads."""
        if self.prune_heads:
            self.tied_heads[module] = (num_heads, head_dim)
        else:
            self.out_channel_groups[module] = num_heads


class ModelFix(abc.ABC):
    """Recognises one model part Torch-Pruning mishandles and prepares the remedy."""

    @abc.abstractmethod
    def targets(self, model: nn.Module) -> list[nn.Module]:
        """The modules of ``model`` this fix handles (empty: the fix does not apply)."""

    @abc.abstractmethod
    def prepare(self, model: nn.Module, targets: list[nn.Module], setup: PruningSetup) -> None:
        """Adds the remedy for ``targets`` to ``setup``."""


#: Model fixes by name, applied in registration order.
FIXES: Registry[type[ModelFix]] = Registry("model fix")


def prepare_setup(model: nn.Module, *, prune_heads: bool) -> PruningSetup:
    """Runs every fix that recognises part of ``model``."""
    setup = PruningSetup(prune_heads=prune_heads)
    for name in FIXES:
        fix = FIXES.get(name)()
        targets = fix.targets(model)
        if targets:
            fix.prepare(model, targets, setup)
            setup.applied.append(name)
    return setup


def _exact(model: nn.Module, *classes: type) -> list[nn.Module]:
    return [m for m in model.modules() if type(m) in classes]


# --------------------------------------------------------------------------------------------
# ShuffleNetV2 (torchvision)


def _shufflenet_forward(block: nn.Module, barrier: Barrier, x: torch.Tensor) -> torch.Tensor:
    # torchvision's InvertedResidual.forward, with the shuffle routed through the barrier node.
    if block.stride == 1:
        x1, x2 = x.chunk(2, dim=1)
        out = torch.cat((x1, block.branch2(x2)), dim=1)
    else:
        out = torch.cat((block.branch1(x), block.branch2(x)), dim=1)
    return barrier(out)


@FIXES.register("shufflenet_channel_shuffle")
class ChannelShuffleBarrier(ModelFix):
    """torchvision ShuffleNetV2: the channel shuffle is a barrier; branch widths are pruned.

    What fails: ``channel_shuffle`` views (N, C, H, W) as (N, 2, C/2, H, W), swaps the two
    group axes and flattens back. Torch-Pruning reads the 5-D view as a flatten and divides by
    zero in its reshape index mapping (``ZeroDivisionError`` while building the graph).

    Why a barrier is right: the shuffle interleaves the two branch outputs, and the next block
    splits its input into halves again, so every block output channel of a stage is chained to
    others through interleavings that stay well formed only if channels are removed in matched
    pairs across all blocks of the stage. No index mapping of Torch-Pruning can express that.
    While tracing, the shuffle runs inside a :class:`Barrier` node (real values, one node), and
    groups reaching it stay whole. Still pruned: the inner width of every ``branch2``
    (1x1 conv -> depthwise -> 1x1 conv), the stem conv and ``conv5``.
    """

    def targets(self, model: nn.Module) -> list[nn.Module]:
        try:
            from torchvision.models.shufflenetv2 import InvertedResidual
        except ImportError:  # pragma: no cover - torchvision is a dependency
            return []
        return _exact(model, InvertedResidual)

    def prepare(self, model: nn.Module, targets: list[nn.Module], setup: PruningSetup) -> None:
        from torchvision.models.shufflenetv2 import channel_shuffle

        setup.customized_pruners[Barrier] = BarrierPruner()
        for block in targets:
            barrier = Barrier(functools.partial(channel_shuffle, groups=2))
            setup.trace_children.append((block, "slimcv_shuffle_barrier", barrier))
            setup.trace_forwards.append(
                (block, functools.partial(_shufflenet_forward, block, barrier))
            )
            setup.blocked.add(barrier)


# --------------------------------------------------------------------------------------------
# Attention whose inner width is the residual width (nn.MultiheadAttention, torchvision Swin)


class TiedMultiheadAttentionPruner(tp.pruner.function.MultiheadAttentionPruner):
    """Torch-Pruning's ``nn.MultiheadAttention`` pruner, plus whole-head removal.

    The stock pruner keeps ``num_heads`` and divides the new width among them, so removing
    whole heads would leave e.g. 12 heads of 32 where 6 heads of 64 were meant. This one reads
    the removed channels (:func:`split_heads`) and lowers ``num_heads`` first.
    """

    def prune_out_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
        heads, _ = split_heads(idxs, layer.num_heads, layer.head_dim)
        layer.num_heads -= len(heads)
        return super().prune_out_channels(layer, idxs)

    prune_in_channels = prune_out_channels


@FIXES.register("multihead_attention")
class TiedMultiheadAttention(ModelFix):
    """``nn.MultiheadAttention`` (torchvision ViT): prune its width head by head.

    What fails: nothing crashes, but ``nn.MultiheadAttention`` ties the query/key/value width to
    its input width (``embed_dim``), which is the residual width of the whole encoder. Torch-
    Pruning removes whichever residual channels rank lowest; the heads then get unequal numbers
    of channels, the attention re-splits the survivors into equal chunks, and dimensions of
    different heads end up mixed in one head - a different function, not a pruned one.

    Why this is right: removing the same channels from every attention of the encoder is forced
    by the tie; what slimcv chooses is their shape. With ``prune_heads`` whole heads go (the
    channel group is ranked per head block and rounded to whole heads; ``num_heads`` drops,
    ``head_dim`` stays). Otherwise the same dimensions go from every head (Torch-Pruning's
    channel groups, one per head), so ``head_dim`` shrinks evenly and no head mixes with another.
    Attention with separate key/value widths or extra key/value biases is left whole.
    """

    def targets(self, model: nn.Module) -> list[nn.Module]:
        return _exact(model, nn.MultiheadAttention)

    def prepare(self, model: nn.Module, targets: list[nn.Module], setup: PruningSetup) -> None:
        setup.customized_pruners[nn.MultiheadAttention] = TiedMultiheadAttentionPruner()
        for mha in targets:
            if not mha._qkv_same_embed_dim or mha.bias_k is not None:
                setup.blocked.add(mha)
                continue
            setup.tie_heads(mha, mha.num_heads, mha.head_dim)


@FIXES.register("torchvision_vit")
class TorchvisionViT(ModelFix):
    """torchvision VisionTransformer: class token, position embedding and ``hidden_dim``.

    What fails: after pruning, ``_process_input`` reshapes the patch embedding with the stale
    ``self.hidden_dim`` (``RuntimeError: shape '[1, 768, 196]' is invalid``). The class token
    and position embedding are bare parameters that Torch-Pruning must be told about.

    Why this is right: ``hidden_dim`` is, by construction, the output width of ``conv_proj``;
    after pruning it is set from there (and each encoder block's ``num_heads`` from its
    attention). The class token and position embedding hold the residual channels in their last
    dimension, which is the dimension declared; their token dimension is left as it is, since
    the number of patches does not change. The concatenation of the class token runs along the
    token axis, which Torch-Pruning recognises from the bare 3-D parameter and leaves unmapped.
    """

    def targets(self, model: nn.Module) -> list[nn.Module]:
        from torchvision.models.vision_transformer import VisionTransformer

        return _exact(model, VisionTransformer)

    def prepare(self, model: nn.Module, targets: list[nn.Module], setup: PruningSetup) -> None:
        for vit in targets:
            setup.unwrapped_parameters.append((vit.class_token, 2))
            setup.unwrapped_parameters.append((vit.encoder.pos_embedding, 2))
            setup.finishers.append(functools.partial(_finish_vit, vit))


def _finish_vit(vit: nn.Module) -> None:
    from torchvision.models.vision_transformer import EncoderBlock

    vit.hidden_dim = vit.conv_proj.out_channels
    for block in vit.modules():
        if isinstance(block, EncoderBlock):
            block.num_heads = block.self_attention.num_heads


class SwinAttentionPruner(UnitPruner):
    """torchvision ``ShiftedWindowAttention`` as one unit whose width is the residual width.

    ``shifted_window_attention`` splits qkv with ``C // num_heads`` where ``C`` is the input
    width, so query/key/value, the projection and the input must keep one width. Removing
    channel ``i`` removes column ``i`` of qkv, rows ``i``, ``C+i``, ``2C+i`` of qkv, and row and
    column ``i`` of the projection; whole heads also drop their column of the relative position
    bias table.
    """

    def prune_out_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
        width, heads_before = layer.proj.out_features, layer.num_heads
        heads, _ = split_heads(idxs, heads_before, width // heads_before)
        keep = keep_index(width, idxs)
        keep3 = torch.cat([keep, keep + width, keep + 2 * width])
        select_(layer.qkv, "weight", keep3, 0)
        select_(layer.qkv, "weight", keep, 1)
        select_(layer.qkv, "bias", keep3, 0)
        select_(layer.proj, "weight", keep, 0)
        select_(layer.proj, "weight", keep, 1)
        select_(layer.proj, "bias", keep, 0)
        layer.qkv.in_features, layer.qkv.out_features = len(keep), 3 * len(keep)
        layer.proj.in_features = layer.proj.out_features = len(keep)
        if heads:
            select_(layer, "relative_position_bias_table", keep_index(heads_before, heads), 1)
            layer.num_heads = heads_before - len(heads)
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.proj.out_features

    def get_in_channels(self, layer: nn.Module) -> int:
        return layer.qkv.in_features

    def inner_items(self, layer: nn.Module, out: bool, idxs: list[int]) -> list[InnerItem]:
        width, pos = layer.proj.out_features, list(range(len(idxs)))
        items: list[InnerItem] = [
            (layer.qkv, tp.prune_linear_in_channels, idxs, pos),
            (layer.proj, tp.prune_linear_out_channels, idxs, pos),
            (layer.proj, tp.prune_linear_in_channels, idxs, pos),
        ]
        for part in range(3):
            shifted = [i + part * width for i in idxs]
            items.append((layer.qkv, tp.prune_linear_out_channels, shifted, pos))
        return items


class PatchMergingPruner(UnitPruner):
    """torchvision ``PatchMerging``/``PatchMergingV2``: input channel ``i`` is ``i + kC``.

    The four 2x2 neighbours are concatenated along channels, so input channel ``i`` appears at
    ``i``, ``C+i``, ``2C+i`` and ``3C+i`` of the normalised, reduced vector. Output channels are
    the rows of ``reduction`` (and, in V2, the entries of the norm that follows it).
    """

    def prune_in_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
        width = layer.reduction.in_features // 4
        keep = keep_index(width, idxs)
        keep4 = torch.cat([keep + k * width for k in range(4)])
        select_(layer.reduction, "weight", keep4, 1)
        layer.reduction.in_features = len(keep4)
        if self._norm_first(layer):
            _select_layernorm(layer.norm, keep4)
        layer.dim = len(keep)
        return layer

    def prune_out_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
        keep = keep_index(layer.reduction.out_features, idxs)
        select_(layer.reduction, "weight", keep, 0)
        select_(layer.reduction, "bias", keep, 0)
        layer.reduction.out_features = len(keep)
        if not self._norm_first(layer):
            _select_layernorm(layer.norm, keep)
        return layer

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.reduction.out_features

    def get_in_channels(self, layer: nn.Module) -> int:
        return layer.reduction.in_features // 4

    def inner_items(self, layer: nn.Module, out: bool, idxs: list[int]) -> list[InnerItem]:
        pos = list(range(len(idxs)))
        if out:
            items: list[InnerItem] = [(layer.reduction, tp.prune_linear_out_channels, idxs, pos)]
            if not self._norm_first(layer):
                items.append((layer.norm, tp.prune_layernorm_out_channels, idxs, pos))
            return items
        width = layer.reduction.in_features // 4
        items = []
        for k in range(4):
            shifted = [i + k * width for i in idxs]
            items.append((layer.reduction, tp.prune_linear_in_channels, shifted, pos))
            if self._norm_first(layer):
                items.append((layer.norm, tp.prune_layernorm_out_channels, shifted, pos))
        return items

    @staticmethod
    def _norm_first(layer: nn.Module) -> bool:
        from torchvision.models.swin_transformer import PatchMerging

        return type(layer) is PatchMerging


def _select_layernorm(norm: nn.Module, keep: torch.Tensor) -> None:
    if not isinstance(norm, nn.LayerNorm):
        raise SlimcvError(f"internal error: expected a LayerNorm, got {type(norm).__name__}")
    select_(norm, "weight", keep, 0)
    select_(norm, "bias", keep, 0)
    norm.normalized_shape = (len(keep),)


class FrozenUnitPruner(UnitPruner):
    """Declares an opaque unit's widths and refuses to change them (its groups are blocked)."""

    def __init__(self, in_width: Callable[[nn.Module], int], out_width: Callable[[nn.Module], int]):
        super().__init__()
        self.in_width, self.out_width = in_width, out_width

    def prune_out_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
        raise SlimcvError(f"internal error: {type(layer).__name__} cannot be pruned")

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.Module) -> int:
        return self.out_width(layer)

    def get_in_channels(self, layer: nn.Module) -> int:
        return self.in_width(layer)


@FIXES.register("torchvision_swin")
class TorchvisionSwin(ModelFix):
    """torchvision Swin Transformer: window attention and patch merging as opaque units.

    What fails: Torch-Pruning does not finish. Window partitioning reshapes (N, H, W, C) into
    six-dimensional windows, which it takes for flattens and expands into ever longer index
    lists; the attention calls ``F.linear`` on ``qkv.weight`` directly, so the qkv and
    projection layers never appear as layers; patch merging slices along H and W of a
    channels-last tensor, which it would read as channel slices.

    Why this is right: each ``ShiftedWindowAttention`` and ``PatchMerging`` is traced as one
    node (:func:`opaque_forward`) and described by a pruner that knows its channel layout
    (:class:`SwinAttentionPruner`, :class:`PatchMergingPruner`); everything between them (layer
    norms, MLPs, residual adds) is plain and traced as usual. Attention width is tied to the
    residual width (see :class:`TiedMultiheadAttention`); whole heads go with ``prune_heads``.
    Swin V2 attention (cosine attention with a continuous position bias MLP) is traced the same
    way but left whole, which also keeps the residual width of its stage.
    """

    def targets(self, model: nn.Module) -> list[nn.Module]:
        from torchvision.models import swin_transformer as sw

        return _exact(
            model,
            sw.ShiftedWindowAttention,
            sw.ShiftedWindowAttentionV2,
            sw.PatchMerging,
            sw.PatchMergingV2,
        )

    def prepare(self, model: nn.Module, targets: list[nn.Module], setup: PruningSetup) -> None:
        from torchvision.models import swin_transformer as sw

        setup.customized_pruners[sw.ShiftedWindowAttention] = SwinAttentionPruner()
        setup.customized_pruners[sw.ShiftedWindowAttentionV2] = FrozenUnitPruner(
            lambda m: m.qkv.in_features, lambda m: m.proj.out_features
        )
        setup.customized_pruners[sw.PatchMerging] = PatchMergingPruner()
        setup.customized_pruners[sw.PatchMergingV2] = PatchMergingPruner()
        for module in targets:
            setup.opaque.append(module)
            if type(module) is sw.ShiftedWindowAttention:
                width = module.proj.out_features
                setup.tie_heads(module, module.num_heads, width // module.num_heads)
            elif type(module) is sw.ShiftedWindowAttentionV2:
                setup.blocked.add(module)


# --------------------------------------------------------------------------------------------
# Attention with a separate qkv projection (timm Attention, MobileViT, DeiT...)


def _qkv_attention(module: nn.Module) -> bool:
    qkv, proj = getattr(module, "qkv", None), getattr(module, "proj", None)
    heads, head_dim = getattr(module, "num_heads", None), getattr(module, "head_dim", None)
    if not (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear)):
        return False
    if not (isinstance(heads, int) and isinstance(head_dim, int)):
        return False
    plain = all(
        isinstance(getattr(module, name, nn.Identity()), nn.Identity)
        for name in ("q_norm", "k_norm", "norm")
    )
    return (
        plain
        and getattr(module, "gate", None) is None
        and qkv.out_features == 3 * heads * head_dim
        and proj.in_features == heads * head_dim
    )


@FIXES.register("qkv_attention_heads")
class QkvAttentionHeads(ModelFix):
    """timm-style attention (``qkv`` and ``proj`` linears, ``num_heads``, ``head_dim``).

    What fails: the forward reshapes qkv with the stale ``num_heads``/``head_dim``
    (``RuntimeError: shape '[4, 16, 3, 4, 24]' is invalid``), and without head counts Torch-
    Pruning removes arbitrary qkv rows, which the per-head reshape cannot take.

    Why this is right: Torch-Pruning is given each qkv layer's head count, so it removes whole
    heads (``prune_heads``) or the same dimensions of every head, and updates the counts as it
    goes; afterwards ``num_heads``, ``head_dim``, ``attn_dim`` and ``scale`` are set from the
    pruned layers. ``scale`` follows ``head_dim`` because timm's fused path
    (``scaled_dot_product_attention``) always scales by the current head size; the unfused path
    must agree with it. Attention with q/k norms, a scale norm or a gate is not recognised.
    """

    def targets(self, model: nn.Module) -> list[nn.Module]:
        return [m for m in model.modules() if _qkv_attention(m)]

    def prepare(self, model: nn.Module, targets: list[nn.Module], setup: PruningSetup) -> None:
        for attention in targets:
            setup.num_heads[attention.qkv] = attention.num_heads
            setup.finishers.append(functools.partial(_finish_qkv_attention, attention, setup))


def _finish_qkv_attention(attention: nn.Module, setup: PruningSetup) -> None:
    # Read the new shape off the pruned layers, not off Torch-Pruning's head counts: it lowers
    # those before checking the group, so a group it then refuses (one that would remove the
    # last head) leaves a count of zero behind.
    width = attention.proj.in_features
    if setup.prune_heads:
        heads, head_dim = width // attention.head_dim, attention.head_dim
    else:
        heads, head_dim = attention.num_heads, width // attention.num_heads
    if head_dim != attention.head_dim and hasattr(attention, "scale"):
        attention.scale = head_dim**-0.5
    attention.num_heads, attention.head_dim = heads, head_dim
    if hasattr(attention, "attn_dim"):
        attention.attn_dim = width


# --------------------------------------------------------------------------------------------
# GhostNet (timm)


class GhostModulePruner(UnitPruner):
    """timm ``GhostModule``: output channels ``j`` and ``j + init`` live or die together.

    A ghost module computes ``init`` channels with a 1x1 conv, derives ``init`` more with a
    depthwise conv (channel ``j`` from channel ``j``) and concatenates both. Removing pair ``j``
    removes row ``j`` of the primary conv and its BatchNorm and channel ``j`` of the depthwise
    conv and its BatchNorm.
    """

    def prune_out_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
        init = layer.primary_conv[0].out_channels
        pairs = sorted({int(i) % init for i in idxs})
        if 2 * len(pairs) != len(idxs):
            raise SlimcvError("internal error: ghost module channels removed without their pair")
        tp.prune_conv_out_channels(layer.primary_conv[0], pairs)
        tp.prune_batchnorm_out_channels(layer.primary_conv[1], pairs)
        tp.prune_depthwise_conv_out_channels(layer.cheap_operation[0], pairs)
        tp.prune_batchnorm_out_channels(layer.cheap_operation[1], pairs)
        layer.out_chs = 2 * layer.primary_conv[0].out_channels
        return layer

    def prune_in_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
        tp.prune_conv_in_channels(layer.primary_conv[0], idxs)
        return layer

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.out_chs

    def get_in_channels(self, layer: nn.Module) -> int:
        return layer.primary_conv[0].in_channels

    def inner_items(self, layer: nn.Module, out: bool, idxs: list[int]) -> list[InnerItem]:
        primary_conv, primary_bn = layer.primary_conv[0], layer.primary_conv[1]
        pos = list(range(len(idxs)))
        if not out:
            return [(primary_conv, tp.prune_conv_in_channels, idxs, pos)]
        # Channel j and j + init are one pair: both read the weights of pair j. Every item
        # then spans all the unit's channels, which Torch-Pruning's score reduction expects
        # of the first layer it scores.
        pairs = [int(i) % primary_conv.out_channels for i in idxs]
        cheap_conv, cheap_bn = layer.cheap_operation[0], layer.cheap_operation[1]
        return [
            (primary_conv, tp.prune_conv_out_channels, pairs, pos),
            (primary_bn, tp.prune_batchnorm_out_channels, pairs, pos),
            (cheap_conv, tp.prune_conv_out_channels, pairs, pos),
            (cheap_bn, tp.prune_batchnorm_out_channels, pairs, pos),
        ]


def _pairable_ghost(module: nn.Module) -> bool:
    try:
        primary, primary_bn = module.primary_conv[0], module.primary_conv[1]
        cheap, cheap_bn = module.cheap_operation[0], module.cheap_operation[1]
    except (AttributeError, IndexError, TypeError):
        return False
    init = getattr(primary, "out_channels", None)
    return (
        isinstance(primary, nn.Conv2d)
        and isinstance(cheap, nn.Conv2d)
        and isinstance(primary_bn, nn.BatchNorm2d)
        and isinstance(cheap_bn, nn.BatchNorm2d)
        and cheap.in_channels == cheap.out_channels == cheap.groups == init
        and module.out_chs == 2 * init
    )


@FIXES.register("timm_ghost_module")
class GhostModulePairs(ModelFix):
    """timm GhostNet: each ghost module is a unit whose output channels come in pairs.

    What fails: nothing crashes, but only about 30% of the MACs go, and some layers are cut to a
    single channel. The depthwise "cheap" conv ties output channel ``j`` to ``j + init``; Torch-
    Pruning ranks the two halves independently, so most chosen sets cover both halves of a pair
    unevenly and the group is rejected as over-pruned, while groups seen from other roots prune
    the same stem channels again and again. The in-place residual add on a slice of the
    concatenation also hides the slice from the traced graph.

    Why this is right: every ``GhostModule`` is traced as one node and described by
    :class:`GhostModulePruner`; its output is declared as two equal channel groups, so Torch-
    Pruning averages the importance of ``j`` and ``j + init`` and removes both together, which is
    exactly what the depthwise tie requires. Ghost modules that do not split evenly (odd widths
    cut by the slice) are left whole.
    """

    def targets(self, model: nn.Module) -> list[nn.Module]:
        try:
            from timm.models.ghostnet import GhostModule
        except ImportError:  # pragma: no cover - timm is a dependency
            return []
        return _exact(model, GhostModule)

    def prepare(self, model: nn.Module, targets: list[nn.Module], setup: PruningSetup) -> None:
        from timm.models.ghostnet import GhostModule

        setup.customized_pruners[GhostModule] = GhostModulePruner()
        for ghost in targets:
            setup.opaque.append(ghost)
            if _pairable_ghost(ghost):
                setup.out_channel_groups[ghost] = 2
            else:
                setup.blocked.add(ghost)
