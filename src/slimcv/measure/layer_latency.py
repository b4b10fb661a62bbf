"""Where the time goes: per-block latency read from the runtime's own profiler.

ONNX Runtime writes a trace of every node's kernel time when profiling is on; OpenVINO
reports per-node ``real_time`` with ``PERF_COUNT``. Both derive their names from the ONNX
node names (``/conv1_1/Conv_output_0_nchwc``, ``/conv1_1/Conv/WithoutBiases``), and the ONNX
nodes that carry weights name the PyTorch module in their initializers (``layer1.0.conv1.
weight``, or ``layer1.0.conv1.bias_dequantized`` in a QDQ graph). So each profiled name is
matched to the longest ONNX node name it contains, each node to the module whose weights the
nearest weighted node before it reads, and times are summed per *block* (``layer1.0``) - the
same grouping :func:`macs_per_block` applies to the profiler's MACs. Times are medians over the
profiled runs; profiling adds a little overhead per node, so the per-block figures are for
comparison within one model, and their sum is not the end-to-end latency.
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

OTHER = "(other)"


_PARAM = re.compile(r"^([A-Za-z_][\w.]*?)\.(weight|bias)")


def node_blocks(onnx_path: Path) -> dict[str, str]:
    """ONNX node name -> block of the module whose weights the node (or the nearest weighted
    node before it in graph order) reads."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    blocks: dict[str, str] = {}
    current = OTHER
    for node in graph.node:
        for name in node.input:
            match = _PARAM.match(name)
            if match:
                current = block_of_module(match.group(1))
                break
        blocks[node.name] = current
    return blocks


def _matcher(blocks: dict[str, str]) -> Any:
    names = sorted((n for n in blocks if n), key=len, reverse=True)

    def block(profiled: str) -> str:
        return next((blocks[n] for n in names if n in profiled), OTHER)

    return block


def block_of_module(name: str) -> str:
    """``layer1.0.conv1`` -> ``layer1.0``; ``fc`` -> ``fc`` (the same grouping as nodes)."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) >= 3 else parts[0]


def macs_per_block(layers: list[dict[str, Any]]) -> dict[str, int]:
    """Sums the profiler's per-layer MACs per block (leaf modules only: a container's figure
    would count its children twice)."""
    names = [layer["name"] for layer in layers]
    blocks: dict[str, int] = defaultdict(int)
    for layer in layers:
        name = layer["name"]
        if any(other.startswith(name + ".") for other in names) or not layer.get("macs"):
            continue
        blocks[block_of_module(name)] += int(layer["macs"])
    return dict(blocks)


def layer_latency(
    onnx_path: Path,
    input_shape: tuple[int, ...],
    backend: str,
    *,
    precision: str = "f32",
    threads: int | None = None,
    runs: int = 50,
) -> dict[str, Any]:
    """Median per-block time (ms) of ``runs`` calls on ``backend`` (onnxruntime, openvino).

    Returns ``{"backend", "precision", "runs", "blocks": {block: ms}, "method"}``; for another
    backend, ``blocks`` is empty and ``method`` says why.
    """
    from slimcv.runtimes.base import available_cores

    threads = threads or available_cores()
    inputs = np.random.default_rng(0).standard_normal(input_shape, dtype=np.float32)
    if backend == "onnxruntime":
        per_node = _onnxruntime(onnx_path, inputs, threads, runs)
        method = "ONNX Runtime profiler (enable_profiling), kernel time per node"
    elif backend == "openvino":
        per_node = _openvino(onnx_path, inputs, threads, runs, precision)
        method = "OpenVINO PERF_COUNT, real_time per executed node"
    else:
        return {"backend": backend, "blocks": {}, "method": f"no per-layer profiler for {backend}"}
    block_of = _matcher(node_blocks(onnx_path))
    blocks: dict[str, float] = defaultdict(float)
    for node, times in per_node.items():
        blocks[block_of(node)] += statistics.median(times)
    return {
        "backend": backend,
        "precision": precision,
        "threads": threads,
        "runs": runs,
        "blocks": {k: round(v, 5) for k, v in blocks.items()},
        "method": f"{method}; median over {runs} runs, summed per block",
    }


def _onnxruntime(path: Path, inputs: np.ndarray, threads: int, runs: int) -> dict[str, list[float]]:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = threads
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "ort")
        so.log_severity_level = 3
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(runs):
            session.run(None, {name: inputs})
        trace = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[str, list[float]] = defaultdict(list)
    suffix = "_kernel_time"
    for event in trace:
        if event.get("cat") == "Node" and event.get("name", "").endswith(suffix):
            per_node[event["name"][: -len(suffix)]].append(event["dur"] / 1000.0)
    return per_node


def _openvino(
    path: Path, inputs: np.ndarray, threads: int, runs: int, precision: str
) -> dict[str, list[float]]:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(path)),
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": precision,
            "INFERENCE_NUM_THREADS": threads,
            "PERF_COUNT": True,
            "NUM_STREAMS": 1,
        },
    )
    request = compiled.create_infer_request()
    per_node: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        request.infer({0: inputs})
        for info in request.get_profiling_info():
            if str(info.status).endswith("EXECUTED"):
                per_node[info.node_name].append(info.real_time.total_seconds() * 1000.0)
    return per_node
