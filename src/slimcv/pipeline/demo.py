"""``slimcv demo``: the whole measurement path on the bundled default, in a few minutes.

Trains torchvision's resnet18 on scikit-learn's real handwritten digits, profiles it, exports
it to ONNX and OpenVINO IR (verified against PyTorch), then measures top-1 and latency of the
same weights on every CPU runtime. Until the optimization pipeline lands, this is slimcv's
main job end to end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from slimcv.analysis import ProfileResult, profile_model
from slimcv.exporters import ExportResult, export
from slimcv.measure import BenchConfig, BenchResult, bench
from slimcv.measure.accuracy import EvalResult, evaluate
from slimcv.report.tables import export_table, human_bytes, human_count, train_table
from slimcv.sources import load_model
from slimcv.sources.artifact import check_output_dir
from slimcv.training import TrainConfig, TrainResult, train

DEMO_MODEL = "torchvision:resnet18"
DEMO_DATA = "digits"
DEMO_IMAGE_SIZE = 32
DEMO_BATCHES = (1, 32)


@dataclass
class DemoResult:
    out_dir: str
    train: TrainResult
    profile: ProfileResult
    export: ExportResult
    accuracy: dict[str, EvalResult]
    bench: BenchResult
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir,
            "model": DEMO_MODEL,
            "data": DEMO_DATA,
            "image_size": DEMO_IMAGE_SIZE,
            "train": self.train.to_dict(),
            "profile": {k: v for k, v in self.profile.to_dict().items() if k != "layers"},
            "export": self.export.to_dict(),
            "accuracy": {k: v.to_dict() for k, v in self.accuracy.items()},
            "bench": self.bench.to_dict(),
            "seconds": self.seconds,
        }


def run_demo(
    out_dir: str | Path = "slimcv-demo", *, epochs: int = 5, progress: bool = True
) -> DemoResult:
    """Runs the demo into ``out_dir`` (``model/`` and ``export/`` artifacts)."""
    start = time.perf_counter()
    out = check_output_dir(out_dir)
    model = load_model(DEMO_MODEL, num_classes=10, image_size=DEMO_IMAGE_SIZE)
    trained = train(model, DEMO_DATA, out / "model", TrainConfig(epochs=epochs), progress=progress)
    model = load_model(str(out / "model"))  # what a fresh process would load
    profile = profile_model(model.require_module("profile"), model.input_shape(1))
    exported = export(model, out / "export")
    export_dir = Path(exported.out_dir)
    accuracy = {
        "torch": evaluate(model, DEMO_DATA, progress=False),
        "onnxruntime": evaluate(
            model,
            DEMO_DATA,
            backend="onnxruntime",
            graph_path=export_dir / exported.files["onnx"],
            progress=False,
        ),
        "openvino": evaluate(
            model,
            DEMO_DATA,
            backend="openvino",
            graph_path=export_dir / exported.files["openvino"],
            progress=False,
        ),
    }
    config = BenchConfig(
        backends=("torch", "onnxruntime", "openvino"),
        batches=DEMO_BATCHES,
        precision="f32",
        min_time_s=1.0,
    )
    measured = bench(model, config, progress=progress)
    return DemoResult(
        str(out), trained, profile, exported, accuracy, measured, time.perf_counter() - start
    )


def demo_table(result: DemoResult) -> list[Table]:
    """The training log, the export check, and accuracy + latency per runtime."""
    table = Table(
        title=f"{DEMO_MODEL} trained on {DEMO_DATA} at {DEMO_IMAGE_SIZE}px: "
        "same weights on every runtime"
    )
    for column in (
        "runtime",
        "precision",
        "top-1 %",
        "median ms (b1)",
        "p90 ms (b1)",
        f"img/s (b{DEMO_BATCHES[-1]})",
        "peak mem",
    ):
        table.add_column(column, justify="right" if column != "runtime" else "left")
    records = {(r.backend, r.batch): r for r in result.bench.records}
    for runtime, acc in result.accuracy.items():
        one = records.get((runtime, 1))
        many = records.get((runtime, DEMO_BATCHES[-1]))
        ok = one is not None and one.status == "ok"
        table.add_row(
            runtime,
            "f32",
            f"{acc.top1:.2f}",
            f"{one.median_ms:.3f}" if ok else "skipped",
            f"{one.p90_ms:.3f}" if ok else "",
            f"{many.throughput_ips:.0f}" if many and many.status == "ok" else "",
            human_bytes(one.peak_memory_bytes) if ok and one.peak_memory_bytes else "",
        )
    p = result.profile
    machine = result.bench.machine
    table.caption = (
        f"{human_count(p.params)} params, {human_count(p.macs)} MACs, "
        f"{human_bytes(p.size_bytes)} FP32; val split of {DEMO_DATA} "
        f"({result.accuracy['torch'].samples} images); latency: median of timed runs after "
        f"warm-up, {result.bench.records[0].threads} threads pinned, on "
        f"{machine.get('cpu', 'this CPU')}; {result.seconds:.0f} s in all; artifacts in "
        f"{result.out_dir}"
    )
    return [train_table(result.train), export_table(result.export), table]
