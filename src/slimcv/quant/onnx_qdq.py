"""Writing the simulation as a QDQ ONNX file that runtimes execute with integer kernels.

torch.onnx writes every fake-quant as a QuantizeLinear -> DequantizeLinear pair. Three rewrites
then make the file what ONNX Runtime and OpenVINO expect from a quantized model:

1. weights: ``QuantizeLinear(float W)`` becomes an int8 initializer feeding the
   DequantizeLinear directly, so the file stores 1 byte per weight (about 25 % of FP32);
2. biases: a float bias next to quantized input and weight becomes an int32 initializer with
   scale ``s_input * s_weight`` behind a DequantizeLinear - ONNX Runtime only fuses
   ``DQ -> Conv -> Q`` into ``QLinearConv`` when every input comes from a DequantizeLinear;
3. layers kept float: ONNX Runtime quantizes the float weights of any Conv / Gemm whose input
   comes from a DequantizeLinear (its ``WeightBiasQuantization`` pass, per-tensor int8), and
   then fuses it into an integer kernel if a QuantizeLinear follows. So the input of a float
   layer is dequantized by plain ``Cast -> Sub -> Mul`` arithmetic, the same numbers, which no
   runtime pattern matches: the layer really runs in float, with its own float weights.

Apart from that, the placement decided in :mod:`slimcv.quant.prepare` is kept as is.

Before export the weights are replaced by their quantize-dequantized values, so weight formats
narrower than 8 bits (a 4-bit study) are stored as int8 codes inside the narrower range.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimcv.errors import ExportError
from slimcv.exporters.onnx import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAME
from slimcv.quant.layers import QUANT_LAYERS
from slimcv.quant.prepare import QuantizedModel
from slimcv.quant.quantizer import Quantizer
from slimcv.quant.spec import fake_quantize


def export_qdq_onnx(
    qmodel: QuantizedModel,
    path: str | Path,
    input_shape: tuple[int, int, int, int],
    *,
    opset: int = DEFAULT_OPSET,
) -> dict[str, Any]:
    """Writes ``qmodel`` as a QDQ ONNX file with int8 weights and int32 biases.

    Returns:
        Facts about the file: counts of Q/DQ nodes, quantized weights and biases, op histogram.

    Raises:
        ExportError: the exporter failed (nothing is left at ``path``).
    """
    path = Path(path)
    module = _export_copy(qmodel)
    example = torch.zeros(*input_shape)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                do_constant_folding=True,
            )
    except Exception as exc:  # noqa: BLE001 - exporter errors are many types
        path.unlink(missing_ok=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"quantized ONNX export failed: {first}") from None
    import onnx

    proto = onnx.load(str(path))
    facts = rewrite_qdq(proto)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return facts


def _export_copy(qmodel: QuantizedModel) -> torch.nn.Module:
    module = copy.deepcopy(qmodel.module).eval()
    for sub in module.modules():
        if isinstance(sub, QUANT_LAYERS):
            quantizer = sub.weight_quantizer
            if quantizer.mode == "quantize":
                with torch.no_grad():
                    sub.weight.copy_(
                        fake_quantize(
                            sub.weight, quantizer.scale, quantizer.zero_point, quantizer.spec
                        )
                    )
        if isinstance(sub, Quantizer):
            sub.freeze()
            sub.exporting = True
    return module


def rewrite_qdq(proto: Any) -> dict[str, Any]:
    """Rewrites weight Q/DQ pairs to int8 initializers and float biases to int32 (in place)."""
    from onnx import numpy_helper

    graph = proto.graph
    _inline_identities(graph)
    inits = {t.name: t for t in graph.initializer}
    consts = _constant_nodes(graph)

    def value(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return numpy_helper.to_array(consts[name].attribute[0].t)
        return None

    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    weights = 0
    dead: list[Any] = []
    for node in list(graph.node):
        if node.op_type != "QuantizeLinear":
            continue
        w = value(node.input[0])
        if w is None:
            continue
        scale = value(node.input[1])
        zero_point = value(node.input[2])
        axis = _attr(node, "axis", 1)
        q = _quantize(w, scale, zero_point, axis)
        name = f"{node.input[0]}_quantized"
        graph.initializer.append(numpy_helper.from_array(q, name))
        for user in consumers.get(node.output[0], []):
            _replace_input(user, node.output[0], name)
        dead.append(node)
        weights += 1
    for node in dead:
        graph.node.remove(node)

    producers = {out: node for node in graph.node for out in node.output}
    inits = {t.name: t for t in graph.initializer}  # now with the int8 weights
    biases = 0
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or not node.input[2]:
            continue
        bias = value(node.input[2])
        dq_x, dq_w = producers.get(node.input[0]), producers.get(node.input[1])
        if bias is None or dq_x is None or dq_w is None:
            continue
        if dq_x.op_type != "DequantizeLinear" or dq_w.op_type != "DequantizeLinear":
            continue
        s_x, s_w = value(dq_x.input[1]), value(dq_w.input[1])
        if s_x is None or s_w is None or s_x.size != 1:
            continue
        s_w = _fit_bias_in_int32(graph, dq_w, bias, float(s_x.reshape(())), s_w, inits)
        scale = (s_x.reshape(()) * s_w.reshape(-1)).astype(np.float32)
        if scale.size == 1 and bias.size > 1:
            scale = np.full(bias.shape, float(scale.reshape(())), np.float32)
        q_bias = np.round(bias.astype(np.float64) / scale)
        q_bias = np.clip(q_bias, -_INT32_MAX, _INT32_MAX).astype(np.int32)
        base = node.input[2]
        graph.initializer.extend(
            [
                numpy_helper.from_array(q_bias, f"{base}_quantized"),
                numpy_helper.from_array(scale, f"{base}_quantized_scale"),
                numpy_helper.from_array(np.zeros_like(q_bias), f"{base}_quantized_zero_point"),
            ]
        )
        import onnx

        dq = onnx.helper.make_node(
            "DequantizeLinear",
            [f"{base}_quantized", f"{base}_quantized_scale", f"{base}_quantized_zero_point"],
            [f"{base}_dequantized"],
            name=f"{base}_DequantizeLinear",
            axis=0,
        )
        index = list(graph.node).index(node)
        graph.node.insert(index, dq)
        node.input[2] = f"{base}_dequantized"
        biases += 1
    shielded = _shield_float_layers(graph, value)
    _drop_unused(graph)
    ops: dict[str, int] = {}
    for node in graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {
        "quantized_weights": weights,
        "quantized_biases": biases,
        "float_layers": shielded,
        "quantize_nodes": ops.get("QuantizeLinear", 0),
        "dequantize_nodes": ops.get("DequantizeLinear", 0),
        "ops": ", ".join(f"{k}:{v}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1])),
    }


_INT32_MAX = 2**31 - 1
_WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _shield_float_layers(graph: Any, value: Any) -> int:
    """Feeds each float-weight layer that reads a DequantizeLinear through an arithmetic
    dequantization instead (see the module docstring, point 3). Returns how many."""
    import onnx

    producers = {out: node for node in graph.node for out in node.output}
    shielded = 0
    for node in list(graph.node):
        if node.op_type not in _WEIGHTED_OPS or len(node.input) < 2:
            continue
        source = producers.get(node.input[0])
        weight = producers.get(node.input[1])
        if source is None or source.op_type != "DequantizeLinear":
            continue
        if weight is not None and weight.op_type == "DequantizeLinear":
            continue  # a quantized layer
        if value(node.input[1]) is None:
            continue  # a weight computed at run time: not a layer ONNX Runtime rewrites
        scale = value(source.input[1])
        zero_point = value(source.input[2]) if len(source.input) > 2 else None
        if scale is None or scale.size != 1:
            continue  # per-channel activations: not what ONNX Runtime's pass matches
        base = f"{node.name or node.output[0]}_float_input"
        steps = [onnx.helper.make_node("Cast", [source.input[0]], [f"{base}_cast"], to=1)]
        current = f"{base}_cast"
        if zero_point is not None and np.any(zero_point != 0):
            graph.initializer.append(
                onnx.numpy_helper.from_array(
                    zero_point.astype(np.float32).reshape(()), f"{base}_zero_point"
                )
            )
            steps.append(
                onnx.helper.make_node("Sub", [current, f"{base}_zero_point"], [f"{base}_centred"])
            )
            current = f"{base}_centred"
        graph.initializer.append(
            onnx.numpy_helper.from_array(scale.astype(np.float32).reshape(()), f"{base}_scale")
        )
        steps.append(onnx.helper.make_node("Mul", [current, f"{base}_scale"], [base]))
        index = list(graph.node).index(node)
        for offset, step in enumerate(steps):
            graph.node.insert(index + offset, step)
        node.input[0] = base
        shielded += 1
    return shielded


def _fit_bias_in_int32(
    graph: Any,
    dq_w: Any,
    bias: np.ndarray,
    s_x: float,
    s_w: np.ndarray,
    inits: dict[str, Any],
) -> np.ndarray:
    """Widens the weight scale of channels whose bias would overflow int32.

    The bias is stored as ``round(b / (s_x * s_w))``; a channel with (almost) all-zero weights
    has a tiny ``s_w`` and a bias that no int32 can hold. Such a channel's weights are ~0, so a
    larger scale costs nothing: it is raised until the bias fits, and its codes requantized.
    """
    from onnx import numpy_helper

    s_w = s_w.astype(np.float64).reshape(-1)
    if s_w.size != bias.size:
        return s_w.astype(np.float32)
    needed = np.abs(bias.astype(np.float64)) / (s_x * _INT32_MAX / 2)
    over = needed > s_w
    if not over.any() or dq_w.input[0] not in inits:
        return s_w.astype(np.float32)
    codes = numpy_helper.to_array(inits[dq_w.input[0]])
    weights = codes.astype(np.float64) * s_w.reshape([-1] + [1] * (codes.ndim - 1))
    new_scale = np.where(over, needed, s_w)
    new_codes = np.clip(
        np.round(weights / new_scale.reshape([-1] + [1] * (codes.ndim - 1))), -127, 127
    ).astype(codes.dtype)
    inits[dq_w.input[0]].CopyFrom(numpy_helper.from_array(new_codes, dq_w.input[0]))
    name = f"{dq_w.input[0]}_scale"
    graph.initializer.append(numpy_helper.from_array(new_scale.astype(np.float32), name))
    dq_w.input[1] = name
    return new_scale.astype(np.float32)


def _quantize(w: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int) -> np.ndarray:
    dtype = zero_point.dtype
    info = np.iinfo(dtype)
    if scale.size > 1:
        shape = [1] * w.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
        zero_point = zero_point.reshape(shape)
    q = np.round(w.astype(np.float64) / scale.astype(np.float64)) + zero_point.astype(np.int64)
    return np.clip(q, info.min, info.max).astype(dtype)


def _inline_identities(graph: Any) -> None:
    """Removes ``Identity`` nodes (the exporter shares equal constants through them)."""
    outputs = {o.name for o in graph.output}
    for node in list(graph.node):
        if node.op_type != "Identity" or node.output[0] in outputs:
            continue
        for user in graph.node:
            _replace_input(user, node.output[0], node.input[0])
        graph.node.remove(node)


def _constant_nodes(graph: Any) -> dict[str, Any]:
    return {
        node.output[0]: node
        for node in graph.node
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"
    }


def _attr(node: Any, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return attribute.i
    return default


def _replace_input(node: Any, old: str, new: str) -> None:
    for i, name in enumerate(node.input):
        if name == old:
            node.input[i] = new


def _drop_unused(graph: Any) -> None:
    """Removes initializers and Constant nodes nothing reads any more."""
    used = {name for node in graph.node for name in node.input}
    used |= {o.name for o in graph.output}
    for init in list(graph.initializer):
        if init.name not in used:
            graph.initializer.remove(init)
    for node in list(graph.node):
        if node.op_type == "Constant" and node.output[0] not in used:
            graph.node.remove(node)
