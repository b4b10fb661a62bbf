"""slimcv optimize against the anchors as their users apply them: one run, one machine.

The same model (torchvision resnet18 trained 5 epochs on scikit-learn's digits at 32 px, the
demo's setup), the same data and the same machine; then:

- **slimcv**: ``slimcv optimize --target onnxruntime --max-drop 1`` (auto mode: sensitivity,
  pruning levels with a distilled fine-tune, INT8 / mixed precision, every candidate timed).
- **ONNX Runtime ``quantize_static``**: ``quant_pre_process`` then ``quantize_static`` with its
  defaults (QDQ) on the baseline's ONNX export, calibrated on 256 training images.
- **NNCF + OpenVINO**: ``nncf.quantize`` with its defaults on the OpenVINO model read from the
  same ONNX file, same calibration images; timed at OpenVINO's default precision on this CPU
  (bf16 where AVX512-BF16 exists - how its users run it) and at f32.
- **Torch-Pruning**: ``MetaPruner`` + ``MagnitudeImportance(p=2)``, 50% of channels (the
  ANCHORS.md setting), the classifier ignored, then *the same fine-tune* slimcv gives its
  pruned models (epochs, learning rate, distillation from the unpruned model); timed on ONNX
  Runtime f32.

Top-1 is measured on the digits val split on each model's own runtime. All models, slimcv's
Pareto front included, are timed in this process in interleaved rounds (order rotated per
round) at batch 1 with all cores; each figure is the median over rounds of per-round medians,
so ratios within the table hold even when the machine drifts.

For each anchor, the comparison is at equal or better accuracy: the fastest model on slimcv's
front whose top-1 is at least the anchor's, against that anchor.

    python benchmarks/compare_anchors.py            # about 6 minutes on 2 cores

Writes BENCHMARKS.md (at the repository root) and benchmarks/results/compare_anchors.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from prune_vs_torch_pruning import torch_pruning_defaults  # noqa: E402
from quantize_vs_runtimes import graph_model, nncf_int8, ort_int8  # noqa: E402

import slimcv  # noqa: E402
from slimcv.data import calibration_subset, load_data  # noqa: E402
from slimcv.exporters.onnx import export_onnx  # noqa: E402
from slimcv.measure import BenchConfig, bench  # noqa: E402
from slimcv.measure.machine import machine_info  # noqa: E402
from slimcv.pipeline.auto import AutoConfig, optimize_auto  # noqa: E402
from slimcv.pipeline.auto.candidates import LEVEL_FLOAT_ONNX  # noqa: E402
from slimcv.runtimes import RuntimeOptions  # noqa: E402
from slimcv.runtimes.runner import logits_fn  # noqa: E402
from slimcv.training import TrainConfig, fit, seed_everything  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"


def top1(model: Any, backend: str, path: Path, precision: str, data: Any) -> float:
    run = logits_fn(model, backend, RuntimeOptions(precision=precision), graph_path=path)
    hits = total = 0
    for images, labels in torch.utils.data.DataLoader(data.val, batch_size=64):
        hits += int((run(images).argmax(dim=1) == labels).sum())
        total += len(labels)
    return 100.0 * hits / total


def torch_pruning_anchor(baseline_dir: Path, work: Path, auto: AutoConfig, data: Any) -> Path:
    """Torch-Pruning 50% channels + slimcv's own pruning fine-tune; returns its ONNX file."""
    from slimcv.distillation import teacher_objective

    model = slimcv.load_model(str(baseline_dir))
    module = model.require_module("pruning").eval()
    teacher = teacher_objective(copy.deepcopy(module))
    torch_pruning_defaults(module, torch.zeros(model.input_shape(1)), 0.5)
    fit(
        module,
        data,
        TrainConfig(epochs=auto.finetune_epochs, lr=1e-3, seed=auto.seed, warmup_fraction=0.0),
        objective=teacher if auto.distill else None,
        progress=False,
    )
    path = work / "torch_pruning.onnx"
    export_onnx(module.eval(), path, model.input_shape(1))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="baseline training epochs")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--seconds", type=float, default=0.5, help="timed seconds per round")
    parser.add_argument("--work", type=Path, default=None, help="keep the outputs here")
    parser.add_argument(
        "--markdown-only",
        action="store_true",
        help="rewrite BENCHMARKS.md from results/compare_anchors.json without measuring",
    )
    args = parser.parse_args()
    if args.markdown_only:
        report = json.loads((RESULTS / "compare_anchors.json").read_text())
        (ROOT / "BENCHMARKS.md").write_text(markdown(report))
        return
    started = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="compare-anchors-"))
    work.mkdir(parents=True, exist_ok=True)
    auto = AutoConfig(target="onnxruntime", max_drop=1.0)

    print("training the baseline ...", flush=True)
    seed_everything(0)
    base_model = slimcv.load_model("torchvision:resnet18", num_classes=10, image_size=32)
    slimcv.train(base_model, "digits", work / "baseline", TrainConfig(epochs=args.epochs))
    baseline_dir = work / "baseline"
    base = slimcv.load_model(str(baseline_dir))
    data = load_data("digits", base.preprocess, seed=0)
    fp32 = work / "baseline.onnx"
    export_onnx(base.require_module("export"), fp32, base.input_shape(1))

    print("slimcv optimize ...", flush=True)
    tick = time.perf_counter()
    result = optimize_auto(str(baseline_dir), "digits", work / "slimcv", auto, force=True)
    slimcv_seconds = time.perf_counter() - tick
    selection = result.selection
    candidates_dir = next(
        Path(result.out_dir) / s.directory for s in result.stages if s.name == "candidates"
    )

    print("anchors ...", flush=True)
    subset = calibration_subset(data.train, 256, 0)
    calibration = [subset[i][0][None].numpy() for i in range(len(subset))]
    seconds: dict[str, float] = {}
    tick = time.perf_counter()
    ort_path = ort_int8(fp32, calibration, work / "ort_int8.onnx")
    seconds["onnxruntime quantize_static"] = time.perf_counter() - tick
    tick = time.perf_counter()
    nncf_path, _ = nncf_int8(fp32, calibration, work / "nncf_int8.xml")
    seconds["nncf.quantize"] = time.perf_counter() - tick
    tick = time.perf_counter()
    tp_path = torch_pruning_anchor(baseline_dir, work, auto, data)
    seconds["torch-pruning 50% + fine-tune"] = time.perf_counter() - tick

    # (label, family, runtime, precision, file)
    rows: list[dict[str, Any]] = [
        dict(
            label="baseline (FP32)",
            family="baseline",
            runtime="onnxruntime",
            precision="f32",
            path=fp32,
        ),
        dict(
            label="ONNX Runtime quantize_static (INT8)",
            family="anchor",
            runtime="onnxruntime",
            precision="f32",
            path=ort_path,
        ),
        dict(
            label="NNCF nncf.quantize + OpenVINO (INT8, default precision: bf16 here)",
            family="anchor",
            runtime="openvino",
            precision="bf16",
            path=nncf_path,
        ),
        dict(
            label="NNCF nncf.quantize + OpenVINO (INT8, f32 hint)",
            family="anchor",
            runtime="openvino",
            precision="f32",
            path=nncf_path,
        ),
        dict(
            label="Torch-Pruning 50% channels + same fine-tune (FP32)",
            family="anchor",
            runtime="onnxruntime",
            precision="f32",
            path=tp_path,
        ),
    ]
    for variant in selection.variants:
        if variant.name not in selection.front:
            continue
        path = (
            candidates_dir / variant.artifact / "model.onnx"
            if variant.kind == "int8"
            else candidates_dir / variant.level / LEVEL_FLOAT_ONNX
        )
        chosen = selection.chosen is not None and variant.name == selection.chosen.name
        rows.append(
            dict(
                label=f"slimcv {variant.name}" + (" (chosen)" if chosen else ""),
                family="slimcv",
                runtime="onnxruntime",
                precision=variant.precision,
                path=path,
                macs=variant.macs,
            )
        )
    for row in rows:
        model = graph_model(row["path"], base)
        row["top1"] = top1(model, row["runtime"], row["path"], row["precision"], data)
        row["rounds_ms"] = []

    print(f"timing {len(rows)} models x {args.rounds} rounds ...", flush=True)
    for r in range(args.rounds):
        for row in rows[r % len(rows) :] + rows[: r % len(rows)]:
            config = BenchConfig(
                backends=(row["runtime"],),
                precision=row["precision"],
                min_time_s=args.seconds,
                memory=False,
                energy=False,
                seed=r,
            )
            record = bench(graph_model(row["path"], base), config, progress=False).records[0]
            if record.ok and record.median_ms is not None:
                row["rounds_ms"].append(record.median_ms)
                row["inference_precision"] = record.details.get("inference_precision")
                row["threads"] = record.threads
    for row in rows:
        row["median_ms"] = statistics.median(row["rounds_ms"]) if row["rounds_ms"] else None
        row["path"] = str(row["path"])

    baseline_ms = rows[0]["median_ms"]
    front = [r for r in rows if r["family"] == "slimcv" and r["median_ms"]]
    for row in rows:
        row["speedup_vs_baseline"] = baseline_ms / row["median_ms"] if row["median_ms"] else None
        if row["family"] != "anchor" or not row["median_ms"]:
            continue
        match = [r for r in front if r["top1"] >= row["top1"] - 1e-9]
        best = min(match, key=lambda r: r["median_ms"]) if match else None
        row["slimcv_match"] = best["label"] if best else None
        row["slimcv_speedup"] = row["median_ms"] / best["median_ms"] if best else None
    anchors = [r for r in rows if r["family"] == "anchor" and r["median_ms"]]
    fastest = min(anchors, key=lambda r: r["median_ms"])
    summary = {
        "best_anchor": fastest["label"],
        "best_anchor_ms": fastest["median_ms"],
        "best_anchor_top1": fastest["top1"],
        "slimcv_match": fastest.get("slimcv_match"),
        "slimcv_speedup_at_equal_or_better_accuracy": fastest.get("slimcv_speedup"),
        "slimcv_chosen": selection.chosen.name if selection.chosen else None,
        "slimcv_seconds": slimcv_seconds,
        "anchor_seconds": seconds,
        "baseline_torch_top1": result.selection.baseline.top1,
    }
    report = {
        "rows": rows,
        "summary": summary,
        "machine": machine_info(),
        "python": platform.python_version(),
        "versions": _versions(),
        "rounds": args.rounds,
        "seconds_per_round": args.seconds,
        "total_seconds": time.perf_counter() - started,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compare_anchors.json").write_text(json.dumps(report, indent=2))
    (ROOT / "BENCHMARKS.md").write_text(markdown(report))
    print(markdown(report))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("slimcv", "torch", "onnxruntime", "openvino", "nncf", "torch-pruning"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    return out


def markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [
        "# Benchmarks: slimcv against the anchors",
        "",
        "Generated by `python benchmarks/compare_anchors.py` - do not edit by hand; rerun it.",
        "",
        "resnet18 trained 5 epochs on scikit-learn's digits (32 px, 10 classes). Top-1 on the "
        "val split, measured on each model's own runtime. Latency: batch 1, "
        f"{report['rows'][0].get('threads')} threads, median over {report['rounds']} "
        "interleaved rounds of per-round medians, all in one process on "
        f"{report['machine'].get('cpu', 'this CPU')}.",
        "",
        f"**Result:** the fastest anchor is {s['best_anchor']} at {s['best_anchor_ms']:.3f} ms "
        f"and {s['best_anchor_top1']:.2f}% top-1; at equal or better accuracy "
        f"{s['slimcv_match']} is **{s['slimcv_speedup_at_equal_or_better_accuracy']:.2f}x "
        f"faster**. slimcv's own choice with `--max-drop 1` was {s['slimcv_chosen']}.",
        "",
        "| model | runtime, precision | top-1 % | latency ms | vs FP32 | slimcv at >= this "
        "top-1 | slimcv speedup |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        ms = f"{r['median_ms']:.4f}" if r.get("median_ms") else "-"
        vs = f"{r['speedup_vs_baseline']:.2f}x" if r.get("speedup_vs_baseline") else "-"
        precision = r["precision"] + (
            f" (runs {r['inference_precision']})" if r.get("inference_precision") else ""
        )
        lines.append(
            f"| {r['label']} | {r['runtime']}, {precision} | {r['top1']:.2f} | {ms} | {vs} | "
            f"{r.get('slimcv_match') or ''} | "
            + (f"{r['slimcv_speedup']:.2f}x" if r.get("slimcv_speedup") else "")
            + " |"
        )
    lines += [
        "",
        "How each anchor was applied: ONNX Runtime `quant_pre_process` + `quantize_static` "
        "defaults (QDQ); `nncf.quantize` defaults on the OpenVINO model, timed at OpenVINO's "
        "default precision (bf16 on this CPU, as its users get it) and at an explicit f32 hint; "
        "Torch-Pruning `MetaPruner` + `MagnitudeImportance(p=2)`, 50% of channels, classifier "
        "ignored, then the same fine-tune slimcv gives its pruned models. Calibration: the same "
        "256 training images for every quantizer.",
        "",
        "Time to produce: slimcv optimize "
        f"{s['slimcv_seconds']:.0f} s; "
        + ", ".join(f"{k} {v:.0f} s" for k, v in s["anchor_seconds"].items())
        + f". Whole benchmark {report['total_seconds']:.0f} s.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()) + ".",
        "",
        "Caveats: digits is a small, easy data set (360 val images, 1 image = 0.28 points), so "
        "accuracy differences under a point are within noise; slimcv chooses its model on the "
        "same val split it reports.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
