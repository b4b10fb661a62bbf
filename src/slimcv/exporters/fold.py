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

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

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
    folded = 0
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


def count_batchnorm(module: nn.Module) -> int:
    return sum(isinstance(m, _BN) for m in module.modules())


def _set_submodule(root: nn.Module, target: str, new: nn.Module) -> None:
    parent_name, _, child = target.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


__all__ = ["count_batchnorm", "fold_batchnorm"]
