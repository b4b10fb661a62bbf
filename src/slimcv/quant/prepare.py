"""Turning a float model into its INT8 simulation: where quantizers go, and why there.

The model is traced with ``torch.fx`` after BatchNorm folding. Quantizers are placed the way
the INT8 runtimes fuse them, so that every quantized convolution becomes one integer kernel:

- every Conv2d / Linear becomes :class:`~slimcv.quant.layers.QuantConv2d` /
  :class:`~slimcv.quant.layers.QuantLinear` (per-channel weight quantizer);
- the tensors that feed a quantized op (conv, linear, add, matmul) are quantized once each,
  right after the op that makes them;
- the output of a quantized op is quantized after its trailing ReLU / ReLU6 / clamp, so the
  runtime folds the activation into the requantization (``QLinearConv`` with a fused ReLU in
  ONNX Runtime, a FakeQuantize after Convolution in OpenVINO);
- ops that only move or select values (max-pool, flatten, reshape, dropout) reuse the
  quantizer of their input, so the runtime can run them on integers without requantizing;
- the model's final output (logits) stays float.

Layers with weights that slimcv does not quantize (``Conv1d``, transposed convs,
``nn.MultiheadAttention``...) stay float with a warning naming them.
"""

from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from slimcv.errors import SlimcvError
from slimcv.exporters.fold import fold_batchnorm
from slimcv.quant.layers import QUANT_LAYERS, QuantConv2d, QuantLinear
from slimcv.quant.quantizer import Quantizer
from slimcv.quant.spec import ACT_UINT8, WEIGHT_INT8, QuantSpec

_ADD = {operator.add, operator.iadd, torch.add}
_MATMUL = {operator.matmul, torch.matmul, torch.bmm}
_FUSABLE_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardtanh)
_FUSABLE_FUNCTIONS = {F.relu, F.relu6, torch.relu, F.hardtanh, torch.clamp}
_FUSABLE_METHODS = {"relu", "relu_", "clamp"}
_PASSTHROUGH_MODULES = (nn.MaxPool2d, nn.Flatten, nn.Dropout, nn.Identity)
_PASSTHROUGH_FUNCTIONS = {F.max_pool2d, torch.flatten, F.dropout}
_PASSTHROUGH_METHODS = {"view", "reshape", "flatten"}
_UNSUPPORTED_WEIGHTED = (
    nn.Conv1d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.MultiheadAttention,
    nn.Embedding,
)


@dataclass
class PrepareConfig:
    """How the simulation quantizes.

    Attributes:
        weight: weight format (default s8 symmetric narrow range, per channel).
        activation: activation format (default u8 asymmetric per tensor).
        calibration: observer name for activations (``minmax``, ``percentile``, ``mse``,
            ``entropy``, ``moving-average``).
        weight_calibration: ``minmax`` or ``mse`` per-channel weight ranges.
        skip: module names (as in ``named_modules``) to leave in float.
        observer_options: extra keyword arguments for the activation observer.
    """

    weight: QuantSpec = WEIGHT_INT8
    activation: QuantSpec = ACT_UINT8
    calibration: str = "minmax"
    weight_calibration: str = "minmax"
    skip: tuple[str, ...] = ()
    observer_options: dict = field(default_factory=dict)


@dataclass
class QuantizedModel:
    """The simulation and what was (not) quantized.

    Attributes:
        module: the fx GraphModule with quantizers in it.
        layers: names of the quantized Conv2d/Linear layers, in graph order.
        float_layers: ``{name: reason}`` for weighted layers left in float.
        activation_quantizers: names of the activation quantizer modules, in graph order.
    """

    module: fx.GraphModule
    layers: list[str]
    float_layers: dict[str, str]
    activation_quantizers: list[str]

    def quantizers(self) -> list[Quantizer]:
        return [m for m in self.module.modules() if isinstance(m, Quantizer)]

    def set_mode(self, mode: str, *, weights: bool = True, activations: bool = True) -> None:
        """Switches every activation and/or weight quantizer to ``observe``/``quantize``/``off``."""
        for name in self.activation_quantizers if activations else []:
            self.module.get_submodule(name).set_mode(mode)
        for name in self.layers if weights else []:
            self.module.get_submodule(name).weight_quantizer.set_mode(mode)


def prepare(module: nn.Module, config: PrepareConfig | None = None) -> QuantizedModel:
    """Returns the INT8 simulation of ``module`` (a traced copy; ``module`` is not changed).

    Activation quantizers start in ``observe`` mode: run calibration batches through
    ``result.module``, then :func:`slimcv.quant.calibrate.finish_calibration`.

    Raises:
        SlimcvError: the model cannot be traced by torch.fx.
    """
    config = config or PrepareConfig()
    folded = fold_batchnorm(module)
    if isinstance(folded, fx.GraphModule):
        graph_module = folded
    else:
        try:
            graph_module = fx.symbolic_trace(folded)
        except Exception as exc:  # noqa: BLE001 - fx raises many types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SlimcvError(
                f"cannot quantize {type(module).__name__}: torch.fx cannot trace it ({first})"
            ) from None
    graph_module.eval()
    _drop_identities(graph_module)
    layers, float_layers = _swap_layers(graph_module, config)
    act_names = _insert_activation_quantizers(graph_module, config, set(config.skip))
    graph_module.recompile()
    unsupported = {n: r for n, r in float_layers.items() if n not in config.skip}
    if unsupported:
        listed = ", ".join(f"{n} ({r})" for n, r in unsupported.items())
        warnings.warn(f"these layers stay float: {listed}", stacklevel=2)
    return QuantizedModel(graph_module, layers, float_layers, act_names)


def _drop_identities(graph_module: fx.GraphModule) -> None:
    """Removes ``Identity`` and eval-mode ``Dropout`` nodes, which would hide a
    Conv -> ReLU pair from the fusion rules."""
    graph = graph_module.graph
    for node in list(graph.nodes):
        drop = (
            node.op == "call_module"
            and isinstance(graph_module.get_submodule(node.target), nn.Identity | nn.Dropout)
        ) or (node.op == "call_function" and node.target is F.dropout)
        if drop and node.args and isinstance(node.args[0], fx.Node):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    graph_module.delete_all_unused_submodules()


def _swap_layers(
    graph_module: fx.GraphModule, config: PrepareConfig
) -> tuple[list[str], dict[str, str]]:
    layers: list[str] = []
    float_layers: dict[str, str] = {}
    for node in graph_module.graph.nodes:
        if node.op != "call_module":
            continue
        sub = graph_module.get_submodule(node.target)
        if node.target in config.skip:
            if isinstance(sub, nn.Conv2d | nn.Linear):
                float_layers[node.target] = "kept float on request"
            continue
        if isinstance(sub, QUANT_LAYERS):
            layers.append(node.target)
        elif isinstance(sub, nn.Conv2d):
            _set_submodule(graph_module, node.target, QuantConv2d.from_float(sub, config.weight))
            layers.append(node.target)
        elif isinstance(sub, nn.Linear):
            spec = QuantSpec(
                config.weight.bits,
                config.weight.symmetric,
                config.weight.per_channel,
                0,
                config.weight.narrow,
            )
            _set_submodule(graph_module, node.target, QuantLinear.from_float(sub, spec))
            layers.append(node.target)
        elif isinstance(sub, _UNSUPPORTED_WEIGHTED) or _has_own_weights(sub):
            float_layers[node.target] = f"{type(sub).__name__} is not quantized by slimcv"
    if config.weight_calibration != "minmax":
        from slimcv.quant.layers import init_weight_qparams

        for name in layers:
            init_weight_qparams(graph_module.get_submodule(name), config.weight_calibration)
    return layers, float_layers


def _has_own_weights(module: nn.Module) -> bool:
    """A layer with parameters of its own that is not a normalisation layer."""
    norms = nn.LayerNorm | nn.GroupNorm | nn.modules.batchnorm._BatchNorm
    return not isinstance(module, norms) and any(
        p.numel() for p in module.parameters(recurse=False)
    )


def _insert_activation_quantizers(
    graph_module: fx.GraphModule, config: PrepareConfig, skip: set[str]
) -> list[str]:
    from slimcv.quant.observers import make_observer

    graph = graph_module.graph
    modules = dict(graph_module.named_modules())
    nodes = list(graph.nodes)
    requested: set[fx.Node] = set()
    for node in nodes:
        if not _is_quantized_op(node, modules, skip):
            continue
        for arg in _tensor_inputs(node):
            requested.add(arg)
        end = _fused_end(node, modules)
        if not any(user.op == "output" for user in end.users):
            requested.add(end)
    # A global average pool that a flatten passes to a quantized layer gets the quantizer
    # (the flatten shares it): ONNX Runtime then runs the pool on integers
    # (QLinearGlobalAveragePool) instead of dequantizing the whole last feature map.
    for node in list(requested):
        source = _passthrough_source(node, modules)
        if source is not None and _is_global_pool(source, modules):
            requested.add(source)
    # A layer kept float still has its output quantized where a quantized op reads it, so
    # that op runs on integers; the ONNX export keeps the float layer itself out of any
    # integer kernel (see slimcv.quant.onnx_qdq._shield_float_layers).
    names: list[str] = []
    quantizer_of: dict[fx.Node, str] = {}
    for node in nodes:
        if node not in requested:
            continue
        source = _passthrough_source(node, modules)
        if source is not None and source in quantizer_of:
            target = quantizer_of[source]  # same scale as the input: runs on integers
        else:
            target = f"activation_quantizers.q{len(names)}"
            observer = make_observer(
                config.calibration, config.activation, **config.observer_options
            )
            _set_submodule(graph_module, target, Quantizer(config.activation, observer))
            names.append(target)
        quantizer_of[node] = target
        with graph.inserting_after(node):
            q_node = graph.call_module(target, (node,))
        node.replace_all_uses_with(q_node, delete_user_cb=lambda user, q=q_node: user is not q)
    graph.lint()
    return names


def _is_quantized_op(node: fx.Node, modules: dict[str, nn.Module], skip: set[str]) -> bool:
    if node.op == "call_module":
        return (
            isinstance(modules.get(node.target), nn.Conv2d | nn.Linear) and node.target not in skip
        )
    if node.op == "call_function":
        return node.target in _ADD or node.target in _MATMUL
    if node.op == "call_method":
        return node.target in ("add", "add_", "matmul")
    return False


def _tensor_inputs(node: fx.Node) -> list[fx.Node]:
    """The activation inputs of an op (not parameters or constants)."""
    args = [a for a in node.args if isinstance(a, fx.Node) and a.op != "get_attr"]
    return args[:1] if node.op == "call_module" else args


def _is_fusable(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        sub = modules.get(node.target)
        if isinstance(sub, nn.Hardtanh):
            return sub.min_val == 0.0
        return isinstance(sub, _FUSABLE_MODULES)
    if node.op == "call_function":
        return node.target in _FUSABLE_FUNCTIONS
    if node.op == "call_method":
        return node.target in _FUSABLE_METHODS
    return False


def _fused_end(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node:
    """The last node of ``node`` followed by its sole-user ReLU/ReLU6 chain."""
    end = node
    while len(end.users) == 1:
        user = next(iter(end.users))
        if not _is_fusable(user, modules):
            break
        end = user
    return end


def _is_global_pool(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """An average pool to 1x1 (exported as ONNX GlobalAveragePool)."""
    if node.op == "call_module":
        sub = modules.get(str(node.target))
        return isinstance(sub, nn.AdaptiveAvgPool2d) and sub.output_size in (1, (1, 1))
    if node.op == "call_function" and node.target is F.adaptive_avg_pool2d:
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
        return size in (1, (1, 1), [1, 1])
    return False


def _passthrough_source(node: fx.Node, modules: dict[str, nn.Module]) -> fx.Node | None:
    """For a max-pool / reshape / dropout node, the node it takes its values from."""
    is_passthrough = (
        (node.op == "call_module" and isinstance(modules.get(node.target), _PASSTHROUGH_MODULES))
        or (node.op == "call_function" and node.target in _PASSTHROUGH_FUNCTIONS)
        or (node.op == "call_method" and node.target in _PASSTHROUGH_METHODS)
    )
    if not is_passthrough or not node.args or not isinstance(node.args[0], fx.Node):
        return None
    source = node.args[0]
    while source.op == "call_module" and source.target.startswith("activation_quantizers."):
        source = source.args[0]
    return source


def _set_submodule(root: nn.Module, target: str, new: nn.Module) -> None:
    parent_name, _, child = target.rpartition(".")
    if parent_name and not hasattr(root, parent_name.split(".")[0]):
        setattr(root, parent_name.split(".")[0], nn.Module())
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)
