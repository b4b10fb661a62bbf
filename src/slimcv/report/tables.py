"""Rich tables for people; the same results go to ``--json`` as plain dictionaries."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from slimcv.analysis import ProfileResult
    from slimcv.distillation import DistillResult
    from slimcv.exporters import ExportResult
    from slimcv.inference import Prediction
    from slimcv.measure.accuracy import EvalResult
    from slimcv.pruning.api import PruneResult
    from slimcv.pruning.sensitivity import SensitivityResult
    from slimcv.quant.api import QuantizeResult
    from slimcv.training import TrainResult


def human_count(value: float, unit: str = "") -> str:
    """1234567 -> '1.23 M'."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".strip()


def human_bytes(value: float) -> str:
    for factor, prefix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= factor:
            return f"{value / factor:.2f} {prefix}"
    return f"{int(value)} B"


def profile_table(result: ProfileResult, model: str, top: int = 15) -> Table:
    """Totals, then the layers with the most MACs."""
    table = Table(title=f"profile {model} input {'x'.join(map(str, result.input_shape))}")
    table.add_column("layer")
    table.add_column("type")
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("% MACs", justify="right")
    table.add_column("output")
    heavy = sorted(result.layers, key=lambda layer: layer.macs, reverse=True)[:top]
    for layer in heavy:
        share = 100 * layer.macs / result.macs if result.macs else 0.0
        table.add_row(
            layer.name,
            layer.type,
            human_count(layer.params),
            human_count(layer.macs),
            f"{share:.1f}",
            "x".join(map(str, layer.output_shape)),
        )
    table.caption = (
        f"total: {result.params:,} params, {result.macs:,} MACs ({human_count(result.macs)}), "
        f"other ops {human_count(result.other_ops)}, FP32 size {human_bytes(result.size_bytes)}, "
        f"peak activations ~{human_bytes(result.peak_activation_bytes)} (estimate); "
        f"top {len(heavy)} of {len(result.layers)} layers by MACs"
    )
    return table


def eval_table(result: EvalResult, model: str) -> Table:
    table = Table(
        title=f"eval {model} on {result.data} ({result.split}, {result.samples} images, "
        f"{result.runtime})"
    )
    table.add_column("class")
    table.add_column("top-1 %", justify="right")
    for name, acc in result.per_class.items():
        table.add_row(name, f"{acc:.2f}")
    table.caption = f"top-1 {result.top1:.2f}%  top-5 {result.top5:.2f}%"
    return table


def predict_table(predictions: list[Prediction]) -> Table:
    table = Table(title="predictions")
    table.add_column("image")
    table.add_column("rank", justify="right")
    table.add_column("index", justify="right")
    table.add_column("label")
    table.add_column("prob", justify="right")
    for pred in predictions:
        for rank, item in enumerate(pred.top, start=1):
            table.add_row(
                pred.image if rank == 1 else "",
                str(rank),
                str(item["index"]),
                item["label"],
                f"{item['prob']:.4f}",
            )
    return table


def train_table(result: TrainResult) -> Table:
    table = Table(title=f"train on {result.data} at {result.image_size}px -> {result.out_dir}")
    for column in ("epoch", "train loss", "train top-1 %", "val loss", "val top-1 %", "s"):
        table.add_column(column, justify="right")
    for e in result.epochs:
        table.add_row(
            str(e.epoch),
            f"{e.train_loss:.4f}",
            f"{e.train_top1:.2f}",
            f"{e.val_loss:.4f}",
            f"{e.val_top1:.2f}",
            f"{e.seconds:.1f}",
        )
    return table


def export_table(result: ExportResult) -> Table:
    table = Table(title=f"export -> {result.out_dir}")
    for column in (
        "format",
        "file",
        "runtime",
        "precision",
        "max |diff|",
        "tolerance",
        "top-1 agree",
        "ok",
    ):
        table.add_column(column)
    for check in result.checks:
        table.add_row(
            check.format,
            result.files.get(check.format, ""),
            check.runtime,
            check.precision,
            f"{check.max_abs_diff:.2e}",
            f"{check.tolerance:.1e}",
            f"{100 * check.top1_agreement:.0f}%",
            "yes" if check.passed else "NO",
        )
    table.caption = (
        f"ONNX opset {result.graph['opset']}, {result.graph['nodes']} nodes, "
        f"{result.graph['batchnorm_nodes']} BatchNormalization"
    )
    return table


def prune_table(result: PruneResult) -> Table:
    """Before/after figures of a pruning run."""
    table = Table(title=f"prune ({result.mode}) -> {result.out_dir}")
    for column in ("", "before", "after", "ratio"):
        table.add_column(column, justify="right" if column else "left")

    def row(name: str, before: float | None, after: float | None, fmt: str) -> None:
        if before is None or after is None:
            return
        ratio = f"{after / before:.3f}x" if before else ""
        table.add_row(name, format(before, fmt), format(after, fmt), ratio)

    row("params", result.params_before, result.params_after, ",")
    row("MACs", result.macs_before, result.macs_after, ",")
    row("top-1 %", result.top1_before, result.top1_after, ".2f")
    row("latency ms", result.latency_ms_before, result.latency_ms_after, ".3f")
    if result.sparsity:
        table.add_row("weight sparsity", "", f"{result.sparsity['overall_sparsity']:.1%}", "")
    table.caption = "; ".join(result.notes) if result.notes else None
    return table


def sensitivity_table(result: SensitivityResult) -> Table:
    """Top-1 per layer and ratio, most sensitive layers first."""
    table = Table(
        title=f"sensitivity ({result.criterion}); baseline top-1 "
        f"{result.baseline_top1:.2f}% on {result.samples} val images"
    )
    table.add_column("layer")
    table.add_column("channels", justify="right")
    ratios = result.curves[0].ratios if result.curves else []
    for ratio in ratios:
        table.add_column(f"top-1 @ {ratio:g}", justify="right")
    for curve in sorted(result.curves, key=lambda c: min(c.top1)):
        table.add_row(curve.layer, str(curve.channels), *(f"{v:.2f}" for v in curve.top1))
    return table


def quantize_table(result: QuantizeResult) -> Table:
    """Float vs quantized: accuracy on the runtime, file size, layers kept float."""
    metric = "top-1 %" if result.metric == "top1" else "agreement with float %"
    table = Table(
        title=f"quantize ({result.precision} {result.method}) on {result.backend} "
        f"-> {result.out_dir}"
    )
    for column in ("", "float", "quantized", "change"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row(
        metric,
        f"{result.float_score:.2f}",
        f"{result.quant_score:.2f}",
        f"{result.quant_score - result.float_score:+.2f} pt",
    )
    table.add_row(
        "ONNX file bytes",
        f"{result.float_onnx_bytes:,}",
        f"{result.onnx_bytes:,}",
        f"{result.size_ratio:.1%}",
    )
    for check in result.int8_checks:
        table.add_row(
            f"{check['backend']} integer / float layers",
            "",
            f"{check['integer_layers']} / {check['float_layers']}",
            "ok" if check["passed"] else "FLOAT FALLBACK",
        )
    notes = [f"{result.samples} {result.data} images, calibrated on {result.calibration_images}"]
    if result.float_layers:
        notes.append(
            "kept float: " + "; ".join(f"{k} ({v})" for k, v in result.float_layers.items())
        )
    table.caption = "\n".join(notes)
    return table


def distill_table(result: DistillResult) -> Table:
    """Teacher(s) vs the distilled student: val top-1, MACs, params."""
    table = Table(
        title=f"distill ({result.method}) on {result.data} at {result.image_size}px "
        f"-> {result.out_dir}"
    )
    for column in ("model", "role", "val top-1 %", "MACs", "MACs vs teacher"):
        table.add_column(column, justify="left" if column in ("model", "role") else "right")
    base = result.teacher_macs[0] if result.teacher_macs else None
    for source, top1, macs in zip(
        result.teachers, result.teacher_top1, result.teacher_macs, strict=True
    ):
        role = "peer (start)" if result.method == "mutual" else "teacher"
        table.add_row(source, role, f"{top1:.2f}", human_count(macs), "")
    share = f"{result.student_macs / base:.3f}x" if base else ""
    table.add_row(
        result.student,
        "student",
        f"{result.student_top1:.2f}",
        human_count(result.student_macs),
        share,
    )
    if result.peer_top1 is not None:
        table.add_row("peer", "peer (trained)", f"{result.peer_top1:.2f}", "", "")
    last = result.epochs[-1]
    notes = [
        f"{len(result.epochs)} epochs, final train loss {last.train_loss:.4f}",
        f"{result.seconds:.1f} s",
    ]
    for info in result.cache:
        notes.append(f"teacher logits {'read from' if info['hit'] else 'cached to'} {info['path']}")
    table.caption = "; ".join(notes + result.notes)
    return table
