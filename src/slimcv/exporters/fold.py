"""Conv+BatchNorm folding at the PyTorch level.

In inference a BatchNorm after a convolution (or linear layer) is an affine map that can be
merged into that layer's weights and bias, removing a whole pass over the activations. The
graph is found with ``torch.fx``; the arithmetic is PyTorch's own
``torch.nn.utils.fusion``. Models that ``torch.fx`` cannot trace are returned unchanged: the
ONNX exporter still folds Conv+BatchNorm in eval mode, and
:func:`slimcv.exporters.onnx.graph_facts` reports any BatchNormalization node left.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_conv_bn_weights, fuse_linear_bn_eval

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Returns an eval-mode copy of ``module`` with each Conv/Linear -> BatchNorm pair merged.

    Only pairs where the BatchNorm is the sole user of the layer's output are folded; the
    result computes the same function up to float rounding.
    """
    module = copy.deepcopy(module).eval()
    if not any(isinstance(m, _BN) for m in module.modules()):
        return module
    try:
        graph_module = fx.symbolic_trace(module)
    except Exception:  # noqa: BLE001 - any tracing failure: keep the module as it is
        return module
    modules = dict(graph_module.named_modules())
    folded = _fold_functional(graph_module, modules)
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), _BN):
            continue
        producer = node.args[0]
        if not isinstance(producer, fx.Node) or producer.op != "call_module":
            continue
        if len(producer.users) != 1:
            continue
        layer = modules.get(producer.target)
        bn = modules[node.target]
        if not bn.track_running_stats or bn.running_mean is None:
            continue
        if isinstance(layer, _CONV):
            fused = fuse_conv_bn_eval(layer, bn)
        elif isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
            fused = fuse_linear_bn_eval(layer, bn)
        else:
            continue
        _set_submodule(graph_module, producer.target, fused)
        node.replace_all_uses_with(producer)
        graph_module.graph.erase_node(node)
        folded += 1
    if folded == 0:
        return module
    graph_module.graph.lint()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    return graph_module


def _fold_functional(graph_module: fx.GraphModule, modules: dict[str, nn.Module]) -> int:
    """Folds ``F.batch_norm`` calls into the convolution that feeds them.

    BatchNorm subclasses that also apply an activation (timm's ``BatchNormAct2d``) are traced
    through by fx, so their BatchNorm shows up as a function call on the module's buffers.
    The shape checks such modules make (``torch._assert`` on ``x.ndim``) are removed first:
    they are trace-time guards that would otherwise count as extra users of the conv output.
    """
    graph = graph_module.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is torch._assert:
            graph.erase_node(node)
    graph.eliminate_dead_code()
    folded = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target is not F.batch_norm:
            continue
        producer = node.args[0]
        if not isinstance(producer, fx.Node) or producer.op != "call_module":
            continue
        layer = modules.get(producer.target)
        if not isinstance(layer, _CONV) or len(producer.users) != 1:
            continue
        params = _batch_norm_tensors(graph_module, node)
        if params is None or node.kwargs.get("training", False):
            continue
        mean, var, weight, bias, eps = params
        fused = copy.deepcopy(layer)
        fused.weight, fused.bias = fuse_conv_bn_weights(
            layer.weight, layer.bias, mean, var, eps, weight, bias
        )
        _set_submodule(graph_module, producer.target, fused)
        modules[producer.target] = fused
        node.replace_all_uses_with(producer)
        graph.erase_node(node)
        folded += 1
    graph.eliminate_dead_code()
    return folded


def _batch_norm_tensors(graph_module: fx.GraphModule, node: fx.Node) -> tuple | None:
    """(running_mean, running_var, weight, bias, eps) of an ``F.batch_norm`` node, if constant."""
    names = ["input", "running_mean", "running_var", "weight", "bias", "training", "momentum"]
    bound = dict(zip(names, node.args, strict=False))
    bound.update(node.kwargs)
    tensors = []
    for key in ("running_mean", "running_var", "weight", "bias"):
        arg = bound.get(key)
        if arg is None and key in ("weight", "bias"):
            tensors.append(None)
            continue
        if not isinstance(arg, fx.Node) or arg.op != "get_attr":
            return None
        tensors.append(
            graph_module.get_parameter(arg.target)
            if key in ("weight", "bias")
            else graph_module.get_buffer(arg.target)
        )
    mean, var, weight, bias = tensors
    eps = float(bound.get("eps", 1e-5))
    return mean, var, weight, bias, eps


def count_batchnorm(module: nn.Module) -> int:
    return sum(isinstance(m, _BN) for m in module.modules())


def _set_submodule(root: nn.Module, target: str, new: nn.Module) -> None:
    parent_name, _, child = target.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


__all__ = ["count_batchnorm", "fold_batchnorm"]
