"""Proof that a runtime really executes the quantized layers with integer kernels.

A QDQ file is only a promise: a runtime that cannot fuse a ``DQ -> Conv -> Q`` pattern
silently dequantizes and runs the convolution in float, which is correct but no faster. So
slimcv inspects what each runtime compiled:

- ONNX Runtime: the optimized graph (``optimized_model_filepath``) must contain integer ops
  (``QLinearConv``, ``QGemm``, ``MatMulInteger``...) for the quantized layers, and no float
  Conv/Gemm/MatMul beyond the layers that were meant to stay float;
- OpenVINO: the compiled runtime model's Convolution / FullyConnected / MatMul nodes report
  their ``runtimePrecision``; quantized layers must run in ``u8``/``i8``.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slimcv.errors import ExportError

_ORT_INT8_OPS = {
    "QLinearConv",
    "QGemm",
    "QLinearMatMul",
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
}
_ORT_FLOAT_OPS = {"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"}
_OV_COMPUTE = {"Convolution", "FullyConnected", "MatMul", "Deconvolution"}
_OV_INT = {"u8", "i8"}


@dataclass
class Int8Check:
    """What one runtime compiled.

    Attributes:
        backend: ``onnxruntime`` or ``openvino``.
        integer_layers: compute nodes running on integer kernels.
        float_layers: compute nodes running in float.
        expected_integer: quantized layers in the model.
        expected_float: layers deliberately left float.
        ops: histogram of the compiled graph's node types.
    """

    backend: str
    integer_layers: int
    float_layers: int
    expected_integer: int
    expected_float: int
    ops: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (
            self.integer_layers >= self.expected_integer
            and self.float_layers <= self.expected_float
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def describe(self) -> str:
        return (
            f"{self.backend}: {self.integer_layers} layers on integer kernels "
            f"(expected {self.expected_integer}), {self.float_layers} in float "
            f"(expected at most {self.expected_float})"
        )


def check_int8_execution(
    onnx_path: str | Path, backend: str, *, expected_integer: int, expected_float: int
) -> Int8Check:
    """Compiles ``onnx_path`` on ``backend`` and counts integer vs float compute layers."""
    if backend == "onnxruntime":
        ops = _ort_optimized_ops(Path(onnx_path))
        integer = sum(n for op, n in ops.items() if op in _ORT_INT8_OPS)
        floating = sum(n for op, n in ops.items() if op in _ORT_FLOAT_OPS)
    elif backend == "openvino":
        precisions = _openvino_precisions(Path(onnx_path))
        ops = Counter(f"{kind}:{prec}" for kind, prec in precisions)
        integer = sum(1 for kind, prec in precisions if kind in _OV_COMPUTE and prec in _OV_INT)
        floating = sum(
            1 for kind, prec in precisions if kind in _OV_COMPUTE and prec not in _OV_INT
        )
    else:
        raise ExportError(f"cannot check integer execution on {backend}")
    return Int8Check(backend, integer, floating, expected_integer, expected_float, dict(ops))


def require_int8_execution(
    onnx_path: str | Path, backends: list[str], *, expected_integer: int, expected_float: int
) -> list[Int8Check]:
    """Like :func:`check_int8_execution` on each backend, raising if any falls back to float.

    Raises:
        ExportError: a runtime runs quantized layers in float.
    """
    checks = [
        check_int8_execution(
            onnx_path, b, expected_integer=expected_integer, expected_float=expected_float
        )
        for b in backends
    ]
    failed = [c for c in checks if not c.passed]
    if failed:
        raise ExportError(
            "the INT8 model would silently run in float: " + "; ".join(c.describe() for c in failed)
        )
    return checks


def _ort_optimized_ops(onnx_path: Path) -> Counter:
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(optimized)
        options.log_severity_level = 3
        options.intra_op_num_threads = 1
        ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        proto = onnx.load(str(optimized))
    return Counter(node.op_type for node in proto.graph.node)


def _openvino_precisions(onnx_path: Path) -> list[tuple[str, str]]:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(onnx_path)),
        "CPU",
        {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1},
    )
    result = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        prec = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
        result.append((kind, prec))
    return result
