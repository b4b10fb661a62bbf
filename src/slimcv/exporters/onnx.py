"""ONNX export: BatchNorm folded, dynamic batch, opset >= 17, simplified with onnxslim."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from slimcv.errors import ExportError, InputShapeError
from slimcv.exporters.fold import fold_batchnorm

DEFAULT_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(
    module: nn.Module,
    path: str | Path,
    input_shape: tuple[int, int, int, int],
    *,
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
    fold: bool = True,
) -> dict[str, int | str]:
    """Exports ``module`` to ONNX with a dynamic batch dimension.

    Args:
        module: the PyTorch model (left unchanged).
        path: the ``.onnx`` file to write.
        input_shape: NCHW shape of the example input; N stays dynamic in the file.
        opset: ONNX opset, at least 17.
        simplify: run onnxslim (constant folding, dead-node removal, op fusion).
        fold: fold BatchNorm into convolutions in PyTorch first.

    Returns:
        Facts about the graph: node count, operator histogram, BatchNormalization count.

    Raises:
        ExportError: the exporter failed.
        InputShapeError: the model cannot take ``input_shape``.
    """
    if opset < 17:
        raise ExportError(f"opset {opset} is too old; slimcv exports opset 17 or newer")
    path = Path(path)
    model = fold_batchnorm(module) if fold else module.eval()
    example = torch.zeros(*input_shape)
    try:
        with torch.no_grad():
            model(example)
    except (RuntimeError, ValueError, AssertionError) as exc:
        shape = "x".join(map(str, input_shape))
        raise InputShapeError(f"model cannot take input {shape}: {_first_line(exc)}") from None
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
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
        raise ExportError(f"ONNX export failed: {_first_line(exc)}") from None
    if simplify:
        _simplify(path)
    return graph_facts(path)


def _simplify(path: Path) -> None:
    import onnx
    import onnxslim

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        slimmed = onnxslim.slim(str(path))
    if slimmed is not None:
        onnx.save(slimmed, str(path))


def graph_facts(path: str | Path) -> dict[str, int | str]:
    """Operator counts of an ONNX file (used to check that BatchNorm was folded)."""
    import onnx

    proto = onnx.load(str(path))
    ops = Counter(node.op_type for node in proto.graph.node)
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return {
        "nodes": sum(ops.values()),
        "opset": opset,
        "batchnorm_nodes": ops.get("BatchNormalization", 0),
        "ops": ", ".join(f"{k}:{v}" for k, v in ops.most_common()),
    }


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
