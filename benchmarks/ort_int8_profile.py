"""Where ONNX Runtime spends an INT8 model's time, by operator, next to the FP32 model's.

Answers "is the INT8 speed-up limited by slimcv's graph or by the runtime's kernels?": if
nearly all of the INT8 time is in ``QLinearConv`` and no float compute is left, the graph is
fully fused and only faster integer kernels (or fewer MACs) can help.

torchvision ``resnet18`` / ``mobilenet_v2`` with seeded random weights and randomised BatchNorm
statistics (latency does not depend on the values) are quantized by slimcv's simulation
(calibrated on random inputs: only the graph matters here) and exported as QDQ ONNX; both
files run ``--runs`` times at batch 1, 224x224, with ONNX Runtime's profiler on.

Usage: ``python benchmarks/ort_int8_profile.py [--models resnet18,mobilenet_v2] [--runs 50]
[--threads 2]``. Prints Markdown tables: milliseconds per run by operator type, and the
slowest nodes.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torchvision

from slimcv.exporters.onnx import export_onnx
from slimcv.quant.calibrate import calibrate
from slimcv.quant.onnx_qdq import export_qdq_onnx
from slimcv.quant.prepare import prepare

SHAPE = (1, 3, 224, 224)


def _random_bn(model: torch.nn.Module) -> torch.nn.Module:
    """BatchNorm statistics that keep activations O(1), as in a trained model."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            count = module.num_features
            module.running_mean.copy_(torch.randn(count, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(count, generator=generator) + 0.5)
    return model.eval()


def profile(path: Path, runs: int, threads: int) -> tuple[dict[str, float], dict[str, float]]:
    """Milliseconds per run by operator type and by node."""
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.intra_op_num_threads = threads
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.randn(*SHAPE).astype(np.float32)}
    warmup = 10
    for _ in range(warmup + runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    by_op: dict[str, float] = defaultdict(float)
    by_node: dict[str, float] = defaultdict(float)
    seen: dict[str, int] = defaultdict(int)
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        node = event["name"].removesuffix("_kernel_time")
        seen[node] += 1
        if seen[node] <= warmup:  # each node runs once per call: skip the warm-up calls
            continue
        ms = event["dur"] / 1000 / runs
        by_op[event["args"]["op_name"]] += ms
        by_node[node] += ms
    return dict(by_op), dict(by_node)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            torch.manual_seed(0)
            model = _random_bn(getattr(torchvision.models, name)())
            qmodel = prepare(model)
            calibrate(qmodel, [torch.randn(8, *SHAPE[1:])])
            files = {"f32": Path(tmp) / f"{name}-f32.onnx", "int8": Path(tmp) / f"{name}.onnx"}
            export_onnx(model, files["f32"], SHAPE)
            export_qdq_onnx(qmodel, files["int8"], SHAPE)
            print(f"\n## {name}, ONNX Runtime {ort.__version__}, {args.threads} threads\n")
            for variant, path in files.items():
                by_op, by_node = profile(path, args.runs, args.threads)
                total = sum(by_op.values())
                print(f"### {variant}: {total:.2f} ms per run in kernels\n")
                print("| operator | ms per run | share |\n|---|---|---|")
                for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1]):
                    print(f"| {op} | {ms:.3f} | {100 * ms / total:.1f}% |")
                print("\n| slowest nodes | ms per run |\n|---|---|")
                for node, ms in sorted(by_node.items(), key=lambda kv: -kv[1])[:5]:
                    print(f"| `{node}` | {ms:.3f} |")
                print()


if __name__ == "__main__":
    main()
