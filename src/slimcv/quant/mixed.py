"""Mixed precision with accuracy control: which layers to leave in float, and why.

Each quantized layer's sensitivity is measured alone: every quantizer off except that layer's
weight quantizer and the activation quantizer in front of it, then the drop of the metric
against the float model. Layers are then returned to float, most sensitive first, until the
simulated drop is within the bound; the caller confirms the result on the runtime itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from slimcv.progress import progress_bar
from slimcv.quant.prepare import QuantizedModel

Score = Callable[[torch.Tensor], float]


@dataclass
class LayerSensitivity:
    layer: str
    drop: float

    def to_dict(self) -> dict[str, float | str]:
        return {"layer": self.layer, "drop": round(self.drop, 3)}


def input_quantizer(qmodel: QuantizedModel, layer: str) -> str | None:
    """The activation quantizer that feeds ``layer`` in the simulation graph, if any."""
    for node in qmodel.module.graph.nodes:
        if node.op == "call_module" and node.target == layer and node.args:
            source = node.args[0]
            if getattr(source, "op", None) == "call_module" and str(source.target).startswith(
                "activation_quantizers."
            ):
                return str(source.target)
    return None


def layer_sensitivity(
    qmodel: QuantizedModel,
    images: torch.Tensor,
    score: Score,
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> list[LayerSensitivity]:
    """Drop of ``score`` when only one layer is quantized, for every quantized layer,
    most sensitive first."""
    float_score = score(_predict(qmodel, images, batch_size, only=None))
    results = []
    with progress_bar(progress) as bar:
        task = bar.add_task("layer sensitivity", total=len(qmodel.layers), status="")
        for layer in qmodel.layers:
            drop = float_score - score(_predict(qmodel, images, batch_size, only=layer))
            results.append(LayerSensitivity(layer, drop))
            bar.advance(task)
    qmodel.set_mode("quantize")
    return sorted(results, key=lambda r: -r.drop)


def simulate_with_float(
    qmodel: QuantizedModel, float_layers: list[str], images: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """Predictions of the simulation with ``float_layers`` (and inputs only they read) float."""
    qmodel.set_mode("quantize")
    users: dict[str, list[str]] = {}
    for layer in qmodel.layers:
        name = input_quantizer(qmodel, layer)
        if name is not None:
            users.setdefault(name, []).append(layer)
    floating = set(float_layers)
    for layer in floating:
        qmodel.module.get_submodule(layer).weight_quantizer.mode = "off"
    for name, readers in users.items():
        if all(r in floating for r in readers) and _only_feeds_layers(qmodel, name):
            qmodel.module.get_submodule(name).mode = "off"
    predictions = _run(qmodel, images, batch_size)
    qmodel.set_mode("quantize")
    return predictions


def _only_feeds_layers(qmodel: QuantizedModel, quantizer: str) -> bool:
    layers = set(qmodel.layers)
    for node in qmodel.module.graph.nodes:
        if node.op == "call_module" and node.target == quantizer:
            return all(u.op == "call_module" and u.target in layers for u in node.users)
    return False


def _predict(
    qmodel: QuantizedModel, images: torch.Tensor, batch_size: int, only: str | None
) -> torch.Tensor:
    qmodel.set_mode("off")
    if only is not None:
        qmodel.module.get_submodule(only).weight_quantizer.mode = "quantize"
        name = input_quantizer(qmodel, only)
        if name is not None:
            qmodel.module.get_submodule(name).mode = "quantize"
    return _run(qmodel, images, batch_size)


def _run(qmodel: QuantizedModel, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    module = qmodel.module.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            out.append(module(images[start : start + batch_size]).argmax(1))
    return torch.cat(out)
