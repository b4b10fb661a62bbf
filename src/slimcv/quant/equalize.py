"""Cross-layer equalization (CLE): balance per-channel weight ranges before quantizing.

After BatchNorm folding, the output channels of a layer (above all a depthwise one) can have
weight ranges that differ by 100x, and the input channels of the next layer inherit the
opposite imbalance. For two layers joined by a ReLU, ``relu(s * y) = s * relu(y)`` for any
``s > 0``, so output channel ``c`` of the first layer can be divided by ``s_c`` and input
channel ``c`` of the second multiplied by ``s_c`` without changing the network's function.
Choosing ``s_c = sqrt(r1_c / r2_c)`` (``r1_c``: range of the first layer's output channel,
``r2_c``: range of the second's input channel) makes both ranges ``sqrt(r1_c * r2_c)``
(Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias
Correction"). Chains (pointwise -> depthwise -> pointwise) share a layer between two pairs, so
the pairs are equalized in turn until the scales settle.

ReLU6 is *not* scale-equivariant: scaling moves its clip point at 6. DFQ replaces ReLU6 by
ReLU in the pairs it equalizes, which changes the function wherever the clip was active.
Here that is an explicit choice, ``relu6="relu"``; the default, ``relu6="skip"``, leaves pairs
joined by ReLU6 alone so the float function is exactly preserved. The choice matters: trained
EfficientNet-Lite0 relies on its clips, and with ReLU instead of ReLU6 its INT8 simulation
agrees with the original FP32 on only 13 % of photo crops (``benchmarks/lite0_rounding.py``),
while ``skip`` finds just 2 pairs there (linear bottleneck -> expansion). With per-channel
weight quantization, which slimcv uses, the imbalance CLE still fixes is the one *across
input channels* of the second layer; it matters most for per-tensor weight formats.

Run it on the BatchNorm-folded float model (:func:`slimcv.exporters.fold.fold_batchnorm`)
before :func:`slimcv.quant.prepare.prepare`; a BatchNorm left between two layers simply stops
that pair from being found.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

RELU6_CHOICES = ("skip", "relu")

#: Ops between the two layers that keep ``f(s * y) = s * f(y)`` for every ``s > 0``.
_EQUIVARIANT_MODULES = (nn.ReLU, nn.Identity, nn.Dropout)
_EQUIVARIANT_FUNCTIONS = {F.relu, torch.relu, F.dropout}
_EQUIVARIANT_METHODS = {"relu", "relu_"}
_RELU6_FUNCTIONS = {F.relu6}


@dataclass
class _Pair:
    first: nn.Conv2d | nn.Linear
    second: nn.Conv2d | nn.Linear
    relu6_nodes: list[fx.Node]


def equalize_(
    module: nn.Module, *, relu6: str = "skip", max_rounds: int = 20, tolerance: float = 0.01
) -> int:
    """Equalizes the per-channel weight ranges of consecutive layers, in place.

    Args:
        module: a BatchNorm-folded float model (a GraphModule is rewritten in place; any other
            module is traced, and its layers, which the trace shares, are changed in place).
        relu6: ``skip`` (pairs joined by ReLU6 are left alone; the function is unchanged) or
            ``relu`` (DFQ: such pairs are equalized and their ReLU6 becomes a ReLU).
        max_rounds: passes over all pairs, at most.
        tolerance: stop once no scale differs from 1 by more than this.

    Returns:
        The number of layer pairs equalized.

    Raises:
        ValueError: an unknown ``relu6`` choice.
        TypeError: the module cannot be traced by torch.fx.
    """
    if relu6 not in RELU6_CHOICES:
        raise ValueError(f"relu6 must be one of {', '.join(RELU6_CHOICES)}, got {relu6!r}")
    if isinstance(module, fx.GraphModule):
        graph_module = module
    else:
        try:
            graph_module = fx.symbolic_trace(module)
        except Exception as exc:  # noqa: BLE001 - fx raises many types
            raise TypeError(f"cannot equalize {type(module).__name__}: {exc}") from None
    pairs = find_pairs(graph_module, allow_relu6=relu6 == "relu")
    if graph_module is not module:
        # ReLU6 nodes can only be rewritten in the graph: keep pairs that need no rewrite.
        pairs = [p for p in pairs if not p.relu6_nodes]
    with torch.no_grad():
        for _ in range(max_rounds):
            change = max((_equalize_pair(p) for p in pairs), default=0.0)
            if change <= tolerance:
                break
    if any(p.relu6_nodes for p in pairs):
        for node in {n for p in pairs for n in p.relu6_nodes}:
            _make_relu(node)
        graph_module.graph.lint()
        graph_module.delete_all_unused_submodules()
        graph_module.recompile()
    return len(pairs)


def find_pairs(graph_module: fx.GraphModule, *, allow_relu6: bool = False) -> list[_Pair]:
    """Consecutive Conv2d/Conv2d or Linear/Linear layers joined only by scale-equivariant ops,
    where the first layer's output goes nowhere else."""
    modules = dict(graph_module.named_modules())
    pairs = []
    for node in graph_module.graph.nodes:
        first = _layer(node, modules)
        if first is None:
            continue
        current, relu6_nodes = node, []
        while len(current.users) == 1:
            user = next(iter(current.users))
            second = _layer(user, modules)
            if second is not None:
                if _compatible(first, second) and user.args[0] is current:
                    pairs.append(_Pair(first, second, relu6_nodes))
                break
            if _is_equivariant(user, modules):
                current = user
            elif allow_relu6 and _is_relu6(user, modules):
                relu6_nodes.append(user)
                current = user
            else:
                break
    return pairs


def _layer(node: fx.Node, modules: dict[str, nn.Module]) -> nn.Conv2d | nn.Linear | None:
    if node.op != "call_module":
        return None
    module = modules.get(str(node.target))
    return module if isinstance(module, nn.Conv2d | nn.Linear) else None


def _compatible(first: nn.Module, second: nn.Module) -> bool:
    if isinstance(first, nn.Conv2d) != isinstance(second, nn.Conv2d):
        return False  # a conv feeds a linear only through a reshape: not handled
    return first.weight.shape[0] == _in_channels(second)


def _in_channels(layer: nn.Module) -> int:
    return layer.in_channels if isinstance(layer, nn.Conv2d) else layer.in_features


def _is_equivariant(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), _EQUIVARIANT_MODULES)
    if node.op == "call_function":
        return node.target in _EQUIVARIANT_FUNCTIONS
    if node.op == "call_method":
        return node.target in _EQUIVARIANT_METHODS
    return False


def _is_relu6(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        module = modules.get(str(node.target))
        return isinstance(module, nn.Hardtanh) and module.min_val == 0.0
    if node.op == "call_function":
        if node.target in _RELU6_FUNCTIONS:
            return True
        if node.target is F.hardtanh:
            low = node.args[1] if len(node.args) > 1 else node.kwargs.get("min_val", -1.0)
            return low == 0.0
    return False


def _output_ranges(layer: nn.Module) -> torch.Tensor:
    return layer.weight.abs().flatten(1).amax(dim=1)


def _input_rows(layer: nn.Module) -> torch.Tensor:
    """The weight as ``[in_channels, ...]``: row ``c`` holds every weight that reads input
    channel ``c`` (for a grouped conv, the slice of its group's output channels)."""
    weight = layer.weight
    if isinstance(layer, nn.Linear):
        return weight.t()
    groups = layer.groups
    out_c, in_per_group = weight.shape[:2]
    grouped = weight.reshape(groups, out_c // groups, in_per_group, -1)
    return grouped.transpose(1, 2).reshape(groups * in_per_group, -1)


def _scale_inputs_(layer: nn.Module, scale: torch.Tensor) -> None:
    weight = layer.weight
    if isinstance(layer, nn.Linear):
        weight.mul_(scale.view(1, -1))
        return
    groups = layer.groups
    out_c, in_per_group = weight.shape[:2]
    view = weight.view(groups, out_c // groups, in_per_group, -1)
    view.mul_(scale.view(groups, 1, in_per_group, 1))


def _equalize_pair(pair: _Pair) -> float:
    """One equalization step; returns how far the scales were from 1 (max |s - 1|)."""
    r1 = _output_ranges(pair.first)
    r2 = _input_rows(pair.second).abs().amax(dim=1)
    usable = (r1 > 0) & (r2 > 0)
    scale = torch.where(usable, torch.sqrt(r1 / r2.clamp(min=1e-12)), torch.ones_like(r1))
    first = pair.first
    shape = (-1,) + (1,) * (first.weight.dim() - 1)
    first.weight.div_(scale.view(shape))
    if first.bias is not None:
        first.bias.div_(scale)
    _scale_inputs_(pair.second, scale)
    return float((scale - 1).abs().max()) if len(scale) else 0.0


def _make_relu(node: fx.Node) -> None:
    """Rewrites a ReLU6 node as ``torch.relu`` of its input."""
    source = node.args[0] if node.args else node.kwargs["input"]
    node.op = "call_function"
    node.target = torch.relu
    node.args = (source,)
    node.kwargs = {}
