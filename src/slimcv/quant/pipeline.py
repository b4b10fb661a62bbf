"""The steps of ``slimcv.quantize`` in order (see :mod:`slimcv.quant.api` for the contract)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimcv.data import DataBundle
from slimcv.errors import DataError, SlimcvError
from slimcv.quant.api import EvalSet, QuantizeConfig, QuantizeResult
from slimcv.quant.prepare import PrepareConfig, QuantizedModel, prepare
from slimcv.quant.spec import ACT_INT8, ACT_UINT8, QuantSpec
from slimcv.sources.model import LoadedModel

GRAPH_FILE = "model.onnx"
#: Images used per layer when measuring sensitivity (a subset keeps it affordable).
SENSITIVITY_IMAGES = 256


def run_quantize(
    model: LoadedModel,
    module: nn.Module,
    config: QuantizeConfig,
    calib: torch.Tensor,
    evalset: EvalSet,
    data_name: str,
    out: Path,
    tmp: Path,
    progress: bool,
) -> QuantizeResult:
    from slimcv.exporters.onnx import export_onnx

    shape = model.input_shape(1)
    float_path = tmp / "float.onnx"
    export_onnx(module, float_path, shape)
    float_preds = _runtime_predictions(model, float_path, config.backend, evalset.images)
    scorer = _Scorer(evalset.labels, float_preds)
    float_score = scorer.float_score
    result = QuantizeResult(
        out_dir=str(out),
        precision=config.precision,
        method=config.method,
        backend=config.backend,
        metric=evalset.metric,
        float_score=float_score,
        quant_score=float("nan"),
        drop=float("nan"),
        data=data_name,
        samples=len(evalset.images),
        calibration_images=len(calib),
        float_onnx_bytes=float_path.stat().st_size,
    )
    graph = tmp / GRAPH_FILE
    if config.precision != "int8":
        _float_cast(float_path, graph, config.precision)
    elif config.method == "dynamic":
        _dynamic(float_path, graph)
        result.int8_checks = [_check(graph, "onnxruntime", -1, None).to_dict()]
    else:
        qmodel = build_simulation(module, config, calib, model, progress, bundle=evalset.bundle)
        _export(qmodel, graph, shape, config, result)
        if config.max_drop is not None:
            qmodel = _accuracy_control(
                module,
                config,
                calib,
                model,
                qmodel,
                evalset,
                scorer,
                graph,
                shape,
                result,
                progress,
            )
    precision = "bf16" if config.precision == "bf16" else "f32"
    quant_preds = _runtime_predictions(
        model, graph, config.backend, evalset.images, precision=precision
    )
    result.quant_score = scorer(quant_preds)
    result.drop = float_score - result.quant_score
    result.onnx_bytes = graph.stat().st_size
    _save(model, config, result, graph, out)
    return result


def build_simulation(
    module: nn.Module,
    config: QuantizeConfig,
    calib: torch.Tensor,
    model: LoadedModel,
    progress: bool,
    skip: tuple[str, ...] = (),
    bundle: DataBundle | None = None,
) -> QuantizedModel:
    """Prepare, calibrate and (as configured) equalize, round, correct biases, train."""
    from slimcv.quant.calibrate import calibrate

    weight = QuantSpec(bits=config.weight_bits, symmetric=True, per_channel=True, narrow=True)
    activation = ACT_UINT8 if config.activation == "u8" else ACT_INT8
    source = module
    if config.equalize:
        from slimcv.exporters.fold import fold_batchnorm
        from slimcv.quant.equalize import equalize_

        source = fold_batchnorm(module)
        equalize_(source)
    prep = PrepareConfig(
        weight=weight,
        activation=activation,
        calibration=config.calibration,
        weight_calibration="mse" if config.weight_bits < 8 else "minmax",
        skip=skip,
    )
    qmodel = prepare(source, prep)
    if config.method == "weight-only":
        qmodel.set_mode("off", weights=False, activations=True)
        _drop_activation_quantizers(qmodel)
        return qmodel
    batches = list(torch.split(calib, config.batch_size))
    calibrate(qmodel, batches, total=len(calib), progress=progress)
    if _wants_adaround(config.rounding, qmodel):
        from slimcv.quant.adaround import adaround_

        adaround_(qmodel, None, batches, progress=progress)
    if config.bias_correction:
        from slimcv.quant.bias_correction import correct_bias_

        correct_bias_(qmodel, batches)
    if config.method == "qat":
        from slimcv.quant.qat import train_qat

        objective = None
        if config.distill:  # the float model teaches its quantized self
            from slimcv.distillation import teacher_objective

            objective = teacher_objective(module)
        train_qat(
            qmodel,
            bundle,
            epochs=config.qat_epochs,
            lr=config.qat_lr,
            seed=config.seed,
            progress=progress,
            objective=objective,
        )
    return qmodel


def _wants_adaround(rounding: str, qmodel: QuantizedModel) -> bool:
    """``auto``: learned rounding where nearest rounding hurts, i.e. depthwise convolutions."""
    if rounding != "auto":
        return rounding == "adaround"
    for name in qmodel.layers:
        layer = qmodel.module.get_submodule(name)
        if isinstance(layer, nn.Conv2d) and layer.groups > 1 and layer.groups == layer.in_channels:
            return True
    return False


def _drop_activation_quantizers(qmodel: QuantizedModel) -> None:
    """Weight-only: removes activation quantizer nodes, so only weights are stored as int8."""
    graph = qmodel.module.graph
    for node in list(graph.nodes):
        if node.op == "call_module" and str(node.target).startswith("activation_quantizers."):
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    qmodel.activation_quantizers = []
    qmodel.module.delete_all_unused_submodules()
    qmodel.module.recompile()


def _export(
    qmodel: QuantizedModel,
    graph: Path,
    shape: tuple[int, int, int, int],
    config: QuantizeConfig,
    result: QuantizeResult,
) -> None:
    from slimcv.quant.onnx_qdq import export_qdq_onnx

    facts = export_qdq_onnx(qmodel, graph, shape)
    result.quantized_layers = list(qmodel.layers)
    result.float_layers = {**qmodel.float_layers, **_mixed_reasons(result)}
    result.details["graph"] = facts
    if config.method == "weight-only":
        return
    expected_float = len(qmodel.float_layers)
    checks = [
        _check(graph, backend, len(qmodel.layers), expected_float)
        for backend in ("onnxruntime", "openvino")
    ]
    result.int8_checks = [c.to_dict() for c in checks]
    target = next(c for c in checks if c.backend == config.backend)
    if not target.passed:
        from slimcv.errors import ExportError

        raise ExportError(f"the INT8 model would silently run in float: {target.describe()}")


def _mixed_reasons(result: QuantizeResult) -> dict[str, str]:
    drops = {s["layer"]: s["drop"] for s in result.sensitivity}
    return {
        layer: f"mixed precision: quantized alone it costs {drops[layer]:.2f} points"
        for layer in result.details.get("mixed_float", [])
        if layer in drops
    }


def _check(graph: Path, backend: str, expected_integer: int, expected_float: int | None) -> Any:
    from slimcv.quant.int8_check import check_int8_execution

    if expected_integer < 0:  # dynamic: whatever ONNX Runtime's quantizer produced
        expected_integer = 1
    return check_int8_execution(
        graph,
        backend,
        expected_integer=expected_integer,
        expected_float=expected_float if expected_float is not None else 10**9,
    )


def _accuracy_control(
    module: nn.Module,
    config: QuantizeConfig,
    calib: torch.Tensor,
    model: LoadedModel,
    qmodel: QuantizedModel,
    evalset: EvalSet,
    scorer: _Scorer,
    graph: Path,
    shape: tuple[int, int, int, int],
    result: QuantizeResult,
    progress: bool,
) -> QuantizedModel:
    """Returns layers to float, most sensitive first, until the runtime's drop is in bound."""
    from slimcv.quant.mixed import layer_sensitivity, simulate_with_float

    assert config.max_drop is not None
    drop = scorer.float_score - scorer(
        _runtime_predictions(model, graph, config.backend, evalset.images)
    )
    result.details["full_int8_drop"] = drop
    if drop <= config.max_drop:
        result.details["mixed_float"] = []
        return qmodel
    subset = evalset.images[:SENSITIVITY_IMAGES]
    sub_scorer = scorer.subset(len(subset))
    ranking = layer_sensitivity(qmodel, subset, sub_scorer, progress=progress)
    result.sensitivity = [r.to_dict() for r in ranking]
    order = [r.layer for r in ranking]
    count = 0
    for count in range(1, len(order) + 1):  # cheapest: in simulation first
        preds = simulate_with_float(qmodel, order[:count], evalset.images)
        if scorer.float_score - scorer(preds) <= config.max_drop:
            break
    while count <= len(order):  # then confirmed on the runtime, adding layers if needed
        floating = order[:count]
        result.details["mixed_float"] = floating
        qmodel = build_simulation(
            module, config, calib, model, progress, skip=tuple(floating), bundle=evalset.bundle
        )
        _export(qmodel, graph, shape, config, result)
        drop = scorer.float_score - scorer(
            _runtime_predictions(model, graph, config.backend, evalset.images)
        )
        if drop <= config.max_drop:
            return qmodel
        count += 1
    raise SlimcvError(f"even with every layer in float the drop exceeds {config.max_drop} points")


class _Scorer:
    """Top-1 against labels, or top-1 agreement with the float model's predictions."""

    def __init__(self, labels: torch.Tensor | None, reference: torch.Tensor) -> None:
        self.labels = labels
        self.reference = reference
        self.float_score = self(reference)

    def __call__(self, preds: torch.Tensor) -> float:
        target = self.labels if self.labels is not None else self.reference
        return 100.0 * float((preds == target[: len(preds)]).float().mean())

    def subset(self, count: int) -> _Scorer:
        labels = None if self.labels is None else self.labels[:count]
        return _Scorer(labels, self.reference[:count])


def _runtime_predictions(
    model: LoadedModel,
    graph: Path,
    backend: str,
    images: torch.Tensor,
    batch: int = 32,
    precision: str = "f32",
) -> torch.Tensor:
    from slimcv.runtimes.base import RuntimeOptions, get_backend

    runtime = get_backend(backend)
    graph_model = LoadedModel(
        source=str(graph),
        num_classes=model.num_classes,
        preprocess=model.preprocess,
        onnx_path=graph,
    )
    session = runtime.open(graph_model, RuntimeOptions(precision=precision), graph)
    preds = []
    for start in range(0, len(images), batch):
        logits = session.run(images[start : start + batch].numpy().astype(np.float32))
        preds.append(torch.from_numpy(np.asarray(logits)).argmax(1))
    return torch.cat(preds)


def _float_cast(float_path: Path, graph: Path, precision: str) -> None:
    """FP16: weights and compute in half precision (inputs/outputs stay float32).
    BF16: the float32 graph, run with bf16 inference precision on OpenVINO."""
    import onnx

    if precision == "bf16":
        graph.write_bytes(float_path.read_bytes())
        return
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = convert_float_to_float16(onnx.load(str(float_path)), keep_io_types=True)
    onnx.save(proto, str(graph))


def _dynamic(float_path: Path, graph: Path) -> None:
    """Dynamic INT8 by ONNX Runtime's own quantizer (activation ranges computed per batch)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(float_path), str(graph), per_channel=True, weight_type=QuantType.QInt8)


def _save(
    model: LoadedModel, config: QuantizeConfig, result: QuantizeResult, graph: Path, out: Path
) -> None:
    import shutil

    from slimcv.sources.artifact import save_artifact

    def write(directory: Path, _: LoadedModel) -> dict[str, Any]:
        shutil.copyfile(graph, directory / GRAPH_FILE)
        return {
            "graph": GRAPH_FILE,
            "runtime_precision": "bf16" if config.precision == "bf16" else "f32",
            "quantization": {
                "precision": config.precision,
                "method": config.method,
                "calibration": config.calibration,
                "weight_bits": config.weight_bits,
                "activation": config.activation,
                "rounding": config.rounding,
                "float_layers": result.float_layers,
            },
        }

    graph_model = LoadedModel(
        source=model.source,
        num_classes=model.num_classes,
        preprocess=model.preprocess,
        module=None,
        labels=model.labels,
        meta=model.meta,
    )
    metrics = {
        "metric": result.metric,
        "float_score": result.float_score,
        "quant_score": result.quant_score,
        "drop": result.drop,
        "backend": result.backend,
        "onnx_bytes": result.onnx_bytes,
        "float_onnx_bytes": result.float_onnx_bytes,
    }
    args = {k: v for k, v in vars(config).items()}
    save_artifact(
        out, graph_model, command="quantize", args=args, metrics=metrics, write_extra=write
    )


__all__ = ["build_simulation", "run_quantize", "DataError"]
