"""Layer-by-layer passes over a quantized model, shared by AdaRound and bias correction.

Both methods fix one quantized layer at a time, in graph order, and for the layer they are
fixing they need two things:

- the layer's inputs *as the quantized model computes them*, with every earlier fix already
  applied, so that each layer compensates for what the layers before it could not remove;
- a float reference for the layer's output.

Running the quantized model from the start for every layer would cost about ``L / 2`` full
forward passes for ``L`` layers. :func:`walk_layers` instead runs the graph once, node by node,
keeping every batch's live values (a GraphModule makes this easy: it is a list of nodes), and
stops before each quantized layer so the caller can change it before its output is computed.
The float reference comes from one ordinary forward pass with hooks
(:func:`capture_float_outputs`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import fx, nn

from slimcv.exporters.fold import fold_batchnorm
from slimcv.progress import progress_bar
from slimcv.quant.prepare import QuantizedModel
from slimcv.quant.quantizer import Quantizer

#: ``visit(layer_name, layer, inputs)``: ``inputs`` holds the layer's input for every batch.
Visit = Callable[[str, nn.Module, list[torch.Tensor]], None]
#: ``record(layer_name, batch_index, output)`` for every layer output of the float pass.
Record = Callable[[str, int, torch.Tensor], None]


def limit_images(batches: Sequence[torch.Tensor], limit: int) -> list[torch.Tensor]:
    """The first ``limit`` images of ``batches``, in the same batches (the last one cut).

    Layer-wise passes keep every batch's activations in memory at once (10-20 MB per
    224x224 image for EfficientNet-Lite0), so they take a bounded share of a calibration set.
    """
    kept: list[torch.Tensor] = []
    left = limit
    for batch in batches:
        if left <= 0:
            break
        kept.append(batch[:left])
        left -= len(kept[-1])
    return kept


def active_layers(qmodel: QuantizedModel) -> list[str]:
    """The quantized layers whose weights are quantized now (``off`` ones stay float)."""
    return [
        name
        for name in qmodel.layers
        if qmodel.module.get_submodule(name).weight_quantizer.mode == "quantize"
    ]


@contextlib.contextmanager
def quantizers_off(qmodel: QuantizedModel) -> Iterator[None]:
    """Every quantizer switched off (the float function of the same graph), then restored."""
    quantizers = [m for m in qmodel.module.modules() if isinstance(m, Quantizer)]
    modes = [q.mode for q in quantizers]
    for q in quantizers:
        q.mode = "off"
    try:
        yield
    finally:
        for q, mode in zip(quantizers, modes, strict=True):
            q.mode = mode


def capture_float_outputs(
    qmodel: QuantizedModel,
    float_module: nn.Module | None,
    names: Sequence[str],
    batches: Sequence[torch.Tensor],
    record: Record,
) -> None:
    """Runs the float model on ``batches`` and hands every output of the layers ``names`` to
    ``record``.

    Args:
        qmodel: the simulation whose layers are named ``names``.
        float_module: the float model ``qmodel`` was prepared from (BatchNorm folded here if
            needed, so its layer names match). ``None`` uses ``qmodel`` itself with every
            quantizer off, which is the float model only while its weights are unchanged.
        names: layer names, as in ``qmodel.layers``.
        batches: input batches.
        record: called with ``(name, batch_index, output)``.

    Raises:
        ValueError: ``float_module`` lacks one of the layers, or computes a different shape.
    """
    if float_module is None:
        reference: nn.Module = qmodel.module
        context: contextlib.AbstractContextManager = quantizers_off(qmodel)
    else:
        reference = fold_batchnorm(float_module)  # a copy; prepare() folded the same way
        context = contextlib.nullcontext()
    modules = dict(reference.named_modules())
    mismatched = [name for name in names if not _same_layer(modules.get(name), qmodel, name)]
    if mismatched:
        raise ValueError(
            f"the float model has no layer(s) {', '.join(mismatched[:3])} of the same shape as "
            "the quantized model's: pass the model the quantized one was prepared from"
        )
    state = {"batch": 0}
    handles = []
    called: set[str] = set()
    for name in names:

        def hook(_m: nn.Module, _i: object, out: torch.Tensor, name: str = name) -> None:
            called.add(name)
            record(name, state["batch"], out.detach())

        handles.append(modules[name].register_forward_hook(hook))
    was_training = reference.training
    reference.eval()
    try:
        with torch.no_grad(), context:
            for index, batch in enumerate(batches):
                state["batch"] = index
                reference(batch)
    finally:
        for handle in handles:
            handle.remove()
        reference.train(was_training)
    unused = [name for name in names if name not in called]
    if unused:
        raise ValueError(f"the float model never runs layer(s) {', '.join(unused[:3])}")


def _same_layer(module: nn.Module | None, qmodel: QuantizedModel, name: str) -> bool:
    weight = getattr(module, "weight", None)
    quantized = qmodel.module.get_submodule(name).weight
    return isinstance(weight, torch.Tensor) and weight.shape == quantized.shape


def walk_layers(
    qmodel: QuantizedModel,
    batches: Sequence[torch.Tensor],
    visit: Visit,
    *,
    names: Sequence[str] | None = None,
    description: str = "layers",
    progress: bool = False,
) -> None:
    """Runs ``qmodel`` on all ``batches`` at once, node by node, calling ``visit`` before each
    layer in ``names`` (default: every active quantized layer) computes its output.

    Whatever ``visit`` changes in the layer (weights, bias) is used for that layer's output and
    so for every later layer's inputs. Values are dropped after their last use, so memory holds
    only the live activations of all batches (about two tensors per batch in a residual net).
    """
    graph_module = qmodel.module
    wanted = set(active_layers(qmodel) if names is None else names)
    interpreters = []
    for batch in batches:
        interpreter = fx.Interpreter(graph_module, garbage_collect_values=False)
        interpreter.args_iter = iter([batch])
        interpreters.append(interpreter)
    free_after = _last_uses(graph_module.graph)
    was_training = graph_module.training
    graph_module.eval()
    try:
        with torch.no_grad(), progress_bar(progress) as bar:
            task = bar.add_task(description, total=len(wanted), status="")
            wanted = set(wanted)
            for node in graph_module.graph.nodes:
                if node.op == "output":
                    break
                if node.op == "call_module" and node.target in wanted:
                    wanted.discard(node.target)  # a layer called twice is fixed once
                    layer = graph_module.get_submodule(node.target)
                    inputs = [it.env[node.args[0]] for it in interpreters]
                    bar.update(task, status=str(node.target))
                    visit(str(node.target), layer, inputs)
                    bar.advance(task)
                for interpreter in interpreters:
                    interpreter.env[node] = interpreter.run_node(node)
                    for dead in free_after.get(node, ()):
                        interpreter.env.pop(dead, None)
    finally:
        graph_module.train(was_training)


def _last_uses(graph: fx.Graph) -> dict[fx.Node, list[fx.Node]]:
    """For each node, the values whose last reader it is (they can be freed after it)."""
    seen: set[fx.Node] = set()
    free_after: dict[fx.Node, list[fx.Node]] = {}
    for node in reversed(graph.nodes):
        for value in node.all_input_nodes:
            if value not in seen:
                seen.add(value)
                free_after.setdefault(node, []).append(value)
    return free_after


def following_activations(
    graph_module: fx.GraphModule, names: Sequence[str]
) -> dict[str, nn.Module]:
    """For each layer whose only user is a ReLU / ReLU6, that activation: what the next
    layer sees of its output, and so what a layer-wise fix should match."""
    modules = dict(graph_module.named_modules())
    found: dict[str, nn.Module] = {}
    for node in graph_module.graph.nodes:
        if node.op != "call_module" or node.target not in names or len(node.users) != 1:
            continue
        activation = _as_activation(next(iter(node.users)), modules)
        if activation is not None:
            found[str(node.target)] = activation
    return found


def _as_activation(node: fx.Node, modules: dict[str, nn.Module]) -> nn.Module | None:
    """A ReLU / ReLU6 node as a (not in-place) module to apply to tensors, else ``None``."""
    if node.op == "call_module":
        module = modules.get(str(node.target))
        # Fresh modules: the model's own may be in-place, and the callers apply them to
        # tensors that must not change.
        if isinstance(module, nn.ReLU6):
            return nn.ReLU6()
        return nn.ReLU() if isinstance(module, nn.ReLU) else None
    if node.op == "call_function" and node.target in (F.relu, torch.relu):
        return nn.ReLU()
    if node.op == "call_function" and node.target is F.relu6:
        return nn.ReLU6()
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return nn.ReLU()
    return None
