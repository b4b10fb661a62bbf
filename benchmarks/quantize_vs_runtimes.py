"""slimcv INT8 against the runtimes' own quantizers, in one run on this machine.

Two questions, each answered on the same models and the same images for every quantizer:

1. **Latency** at batch 1, 224x224, of torchvision ``resnet18`` and ``mobilenet_v2`` (seeded
   random weights with randomised BatchNorm statistics, so activations are O(1) as in a trained
   model; latency does not depend on the values). Per model, every variant is timed with
   ``slimcv.bench`` on its runtime, interleaved over several rounds so that drift and
   neighbours' load hit all variants alike; the figure is the median of the rounds' medians
   and each INT8 variant is compared with the f32 of the *same* runtime.

   - ONNX Runtime f32: slimcv's ONNX export (BatchNorm folded, onnxslim-simplified, opset 17).
   - ONNX Runtime INT8: ``quant_pre_process`` then ``quantize_static`` with its defaults (QDQ,
     s8 activations and weights, per-tensor, min-max), as its documentation recommends.
   - OpenVINO f32: the same ONNX file, ``INFERENCE_PRECISION_HINT=f32`` set explicitly (the
     default is bf16 on CPUs that have it).
   - OpenVINO INT8: ``nncf.quantize(ov_model, nncf.Dataset(...))`` with its defaults, saved as
     IR (weights not compressed to f16), run with the same f32 hint for the float parts.
   - slimcv INT8 (``slimcv.quantize``) on both runtimes.

   INT8 models are calibrated on crops of the ``photos`` source; their graphs are inspected too:
   which operator types got Q/DQ (ONNX) or FakeQuantize (NNCF), and which kernels the runtimes
   really execute in int8 after their own fusions.

2. **Fidelity** of ``timm:efficientnet_lite0:imagenet`` (real ImageNet weights): top-1 agreement
   with its FP32 ONNX (on ONNX Runtime) on held-out ``photos`` crops, every quantizer calibrated
   on the same other crops: ``quantize_static`` with defaults and with ``per_channel=True``,
   NNCF with defaults, and slimcv.

Usage: ``python benchmarks/quantize_vs_runtimes.py [--rounds 3] [--seconds 2]
[--models resnet18,mobilenet_v2] [--skip-latency] [--skip-fidelity]``. Needs ``pip install
-e .[bench]`` (NNCF). Writes ``benchmarks/results/quantize_vs_runtimes.{md,json}`` (``--name``
changes the name) and prints the Markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from slimcv.data import load_data
from slimcv.exporters.onnx import export_onnx
from slimcv.measure import BenchConfig, bench, machine_info, top1_agreement
from slimcv.runtimes import RuntimeOptions, get_backend
from slimcv.runtimes.runner import logits_fn
from slimcv.sources import LoadedModel, load_model

RESULTS = Path(__file__).parent / "results"
LATENCY_MODELS = ("resnet18", "mobilenet_v2")
FIDELITY_MODEL = "timm:efficientnet_lite0:imagenet"
NOT_YET = "slimcv quantize not available yet"
CONFIDENT = 0.5


# --------------------------------------------------------------------------------------------
# Models and data


def randomized(name: str, seed: int = 0) -> LoadedModel:
    """A torchvision model with seeded random weights and trained-looking BatchNorm statistics.

    Fresh BatchNorms are identities and leave activations tiny, which would make calibration
    ranges (and so INT8 kernels' inputs) unlike a trained model's.
    """
    torch.manual_seed(seed)
    model = load_model(f"torchvision:{name}")
    generator = torch.Generator().manual_seed(seed)
    for sub in model.module.modules():
        if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
            n = sub.num_features
            sub.running_mean.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
            sub.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            sub.weight.data.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            sub.bias.data.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
    return model


def photo_splits(
    model: LoadedModel, calibration: int, held_out: int = 0
) -> tuple[str, Dataset, Dataset]:
    """Calibration and held-out ``photos`` crops in the model's preprocessing.

    Returns the source string that makes exactly the same calibration crops under
    ``load_data``'s default ``val_fraction`` (0.2) - what slimcv is handed - and both splits.
    Each split is its own random stream, so calibration crops are never held-out crops.
    """
    total = calibration + max(held_out, 1)
    data = load_data(
        f"photos:crops={total}", model.preprocess, val_fraction=(total - calibration) / total
    )
    slimcv_total = round(calibration / 0.8)
    source = f"photos:crops={slimcv_total}"
    assert len(load_data(source, model.preprocess).train) == calibration
    return source, data.train, materialise(data.val) if held_out else data.val


def materialise(dataset: Dataset) -> TensorDataset:
    """The crops as one tensor, so every variant reads identical inputs without re-cropping."""
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])  # type: ignore[arg-type]
    return TensorDataset(images, torch.full((len(images),), -1))


def calibration_arrays(dataset: Dataset) -> list[np.ndarray]:
    """One ``(1, 3, H, W)`` float32 array per crop: how users feed both calibrators."""
    return [dataset[i][0][None].numpy() for i in range(len(dataset))]  # type: ignore[arg-type]


def graph_model(path: Path, like: LoadedModel) -> LoadedModel:
    """A graph file (ONNX or OpenVINO IR) as a model slimcv's graph backends can open.

    ``OpenVino.open`` hands the path to ``Core.read_model``, which reads ``.xml`` IR as well
    as ONNX, so NNCF's output runs through the same backend as everything else.
    """
    return LoadedModel(
        source=str(path), num_classes=like.num_classes, preprocess=like.preprocess, onnx_path=path
    )


@contextlib.contextmanager
def quiet():
    """Silences the quantizers' progress bars and warnings; the table is the output."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------------------------------
# The quantizers


def ort_int8(fp32: Path, calibration: list[np.ndarray], out: Path, **options: Any) -> Path:
    """ONNX Runtime's ``quantize_static`` as its docs apply it: pre-process, then defaults."""
    from onnxruntime.quantization import CalibrationDataReader, quant_pre_process, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": array} for array in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    prepared = fp32.with_name(fp32.stem + "-preprocessed.onnx")  # shared by every variant
    with quiet():
        if not prepared.exists():
            quant_pre_process(str(fp32), str(prepared))
        quantize_static(str(prepared), str(out), Reader(), **options)
    return out


def quint8() -> Any:
    """``QuantType.QUInt8``, imported lazily like the rest of ONNX Runtime."""
    from onnxruntime.quantization import QuantType

    return QuantType.QUInt8


def nncf_int8(fp32: Path, calibration: list[np.ndarray], out: Path) -> tuple[Path, Any]:
    """``nncf.quantize`` with its defaults on the OpenVINO model read from the same ONNX file.

    Saved without f16 weight compression, so the float parts match the f32 baseline exactly.
    Returns the IR path and the quantized in-memory model (for placement analysis).
    """
    import nncf
    import openvino as ov

    with quiet():
        quantized = nncf.quantize(ov.Core().read_model(str(fp32)), nncf.Dataset(calibration))
        ov.save_model(quantized, str(out), compress_to_fp16=False)
    return out, quantized


def slimcv_int8(
    model: LoadedModel,
    calib_source: str,
    workdir: Path,
    calibration: int,
    backend: str,
    **options: Any,
) -> Path:
    """slimcv's INT8 PTQ (its defaults unless ``options`` say otherwise) as a QDQ ONNX file.

    Raises:
        NotImplementedError: ``slimcv.quantize`` does not exist yet.
    """
    import slimcv

    try:
        quantize, config_type = slimcv.quantize, slimcv.QuantizeConfig
    except (ImportError, AttributeError):
        raise NotImplementedError(NOT_YET) from None
    config = config_type(
        precision="int8", method="ptq", calibration_size=calibration, backend=backend, **options
    )
    suffix = "".join(f"-{k}-{v}" for k, v in sorted(options.items()))
    out = workdir / f"slimcv-int8-{backend}{suffix}"
    result = quantize(model, config, data=calib_source, out_dir=out)
    return Path(result.out_dir) / "model.onnx"


def try_slimcv(
    model: LoadedModel,
    calib_source: str,
    workdir: Path,
    calibration: int,
    backend: str,
    **options: Any,
) -> Path | str:
    """The file, or why there is none (missing, or failing while it is being written)."""
    started = time.perf_counter()
    try:
        path = slimcv_int8(model, calib_source, workdir, calibration, backend, **options)
    except NotImplementedError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - report it in the table, keep the baselines
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"slimcv quantize failed: {type(exc).__name__}: {first[:200]}"
    print(f"  slimcv ({backend}): {time.perf_counter() - started:.0f} s", flush=True)
    return path


# --------------------------------------------------------------------------------------------
# Graph inspection: where the quantizers put Q/DQ, and what the runtimes run in int8


def qdq_placement(path: Path) -> dict[str, Any]:
    """Opset and, per operator type, how many nodes read a DequantizeLinear output."""
    import onnx

    proto = onnx.load(str(path))
    producer = {out: node.op_type for node in proto.graph.node for out in node.output}
    consumers: dict[str, list[str]] = {}
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    total: Counter[str] = Counter()
    fed: Counter[str] = Counter()
    requantized: Counter[str] = Counter()
    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        total[node.op_type] += 1
        if any(producer.get(name) == "DequantizeLinear" for name in node.input):
            fed[node.op_type] += 1
        if any("QuantizeLinear" in consumers.get(name, []) for name in node.output):
            requantized[node.op_type] += 1
    ops = Counter(node.op_type for node in proto.graph.node)
    return {
        "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "ops": dict(ops.most_common()),
        "quantized_inputs": {op: f"{fed[op]}/{total[op]}" for op in total},
        "quantized_outputs": {op: f"{requantized[op]}/{total[op]}" for op in total},
        "file_bytes": path.stat().st_size,
    }


def ort_executed(path: Path) -> dict[str, int]:
    """Operator types of the graph ONNX Runtime really runs, after its own QDQ fusions."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        import onnx

        proto = onnx.load(so.optimized_model_filepath)
    return dict(Counter(node.op_type for node in proto.graph.node).most_common())


def ov_executed(path: Path, like: LoadedModel) -> dict[str, int]:
    """``layerType:runtimePrecision`` counts of OpenVINO's compiled model (f32 hint)."""
    session = get_backend("openvino").open(graph_model(path, like), RuntimeOptions(), path)
    counts: Counter[str] = Counter()
    for op in session.compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer, precision = (info[key].astype(str) for key in ("layerType", "runtimePrecision"))
        if layer not in ("Input", "Output", "Const"):
            counts[f"{layer}:{precision}"] += 1
    session.close()
    return dict(counts.most_common())


WEIGHTED = ("Convolution", "GroupConvolution", "MatMul")
_WEIGHT_PATH = ("Convert", "Subtract", "Multiply", "Reshape")


def fake_quantize_placement(ov_model: Any) -> dict[str, dict[str, int]]:
    """Where NNCF quantized: per op type, how many ops read a FakeQuantize output directly
    (``fq_inputs``) and, for convolutions and MatMul, how many have int8 weights (a
    FakeQuantize or an i8/u8 constant on the weight input)."""
    table: dict[str, Counter[str]] = {}
    for op in ov_model.get_ordered_ops():
        kind = op.get_type_name()
        sources = [op.input_value(i).get_node() for i in range(op.get_input_size())]
        on_data = sources[:1] if kind in WEIGHTED else sources
        row = table.setdefault(kind, Counter())
        row["ops"] += 1
        row["fq_inputs"] += any(s.get_type_name() == "FakeQuantize" for s in on_data)
        if kind in WEIGHTED:
            row["int8_weights"] += _int8_weight(sources[1])
    return {
        kind: dict(row)
        for kind, row in sorted(table.items())
        if row["fq_inputs"] or kind in WEIGHTED
    }


def _int8_weight(node: Any) -> bool:
    """Follows a weight input up through decompression ops to an FQ or an integer constant."""
    for _ in range(6):
        kind = node.get_type_name()
        if kind == "FakeQuantize":
            return True
        if kind == "Constant":
            return node.get_element_type().get_type_name() in ("i8", "u8", "i4", "u4")
        if kind not in _WEIGHT_PATH:
            return False
        node = node.input_value(0).get_node()
    return False


# --------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Variant:
    """One model file on one runtime, timed against the f32 file of the same runtime."""

    label: str
    runtime: str
    path: Path | None
    reason: str | None = None  # why there is no file (the quantizer failed or is missing)
    rounds_ms: list[float] = field(default_factory=list)
    other_load: list[float] = field(default_factory=list)  # cores other processes used
    details: dict[str, Any] = field(default_factory=dict)


def time_interleaved(
    variants: list[Variant], like: LoadedModel, rounds: int, seconds: float, threads: int | None
) -> None:
    """Benchmarks every variant once per round, rotating the order each round."""
    ready = [v for v in variants if v.path is not None]
    for r in range(rounds):
        for variant in ready[r % len(ready) :] + ready[: r % len(ready)]:
            config = BenchConfig(
                backends=(variant.runtime,),
                min_time_s=seconds,
                threads=threads,
                memory=False,
                energy=False,
                seed=r,
            )
            record = bench(graph_model(variant.path, like), config, progress=False).records[0]
            if record.ok and record.median_ms is not None:
                variant.rounds_ms.append(record.median_ms)
                variant.other_load.append(record.details.get("other_load_cores", float("nan")))
                variant.details = {
                    k: record.details.get(k) for k in ("inference_precision", "version")
                }
                variant.details["threads"] = record.threads
            else:
                variant.reason = record.reason


def latency_section(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every variant of one model: files, graph facts, interleaved latency."""
    model = randomized(name)
    fp32 = work / f"{name}-fp32.onnx"
    export_onnx(model.module, fp32, model.input_shape(1))
    source, calib, _ = photo_splits(model, args.latency_calibration)
    arrays = calibration_arrays(calib)
    variants = [Variant("f32", "onnxruntime", fp32), Variant("f32", "openvino", fp32)]
    graphs: dict[str, Any] = {"f32": qdq_placement(fp32)}

    started = time.perf_counter()
    ort = ort_int8(fp32, arrays, work / f"{name}-ort-int8.onnx")
    graphs["quantize_static"] = {
        **qdq_placement(ort),
        "seconds": round(time.perf_counter() - started, 1),
        "ort_executes": ort_executed(ort),
    }
    variants.append(Variant("INT8 quantize_static", "onnxruntime", ort))
    # Not the default, but what makes ONNX Runtime fuse every conv and add on x86 (see report).
    u8 = ort_int8(fp32, arrays, work / f"{name}-ort-int8-u8.onnx", activation_type=quint8())
    graphs["quantize_static_u8"] = {**qdq_placement(u8), "ort_executes": ort_executed(u8)}
    variants.append(Variant("INT8 quantize_static, u8 activations", "onnxruntime", u8))

    started = time.perf_counter()
    xml, quantized = nncf_int8(fp32, arrays, work / f"{name}-nncf-int8.xml")
    graphs["nncf"] = {
        "fake_quantize": fake_quantize_placement(quantized),
        "seconds": round(time.perf_counter() - started, 1),
        "file_bytes": xml.stat().st_size + xml.with_suffix(".bin").stat().st_size,
        "ov_executes": ov_executed(xml, model),
    }
    variants.append(Variant("INT8 NNCF", "openvino", xml))

    for runtime in ("onnxruntime", "openvino"):
        ours = try_slimcv(model, source, work / name, args.latency_calibration, runtime)
        if isinstance(ours, Path):
            executes = ort_executed(ours) if runtime == "onnxruntime" else ov_executed(ours, model)
            graphs[f"slimcv_{runtime}"] = {**qdq_placement(ours), "executes": executes}
            variants.append(Variant("INT8 slimcv", runtime, ours))
        else:
            variants.append(Variant("INT8 slimcv", runtime, None, ours))

    time_interleaved(variants, model, args.rounds, args.seconds, args.threads)
    return {"model": f"torchvision:{name}", "variants": _latency_rows(variants), "graphs": graphs}


def _latency_rows(variants: list[Variant]) -> list[dict[str, Any]]:
    base = {v.runtime: v for v in variants if v.label == "f32"}
    rows = []
    for v in variants:
        row: dict[str, Any] = {"variant": v.label, "runtime": v.runtime, "reason": v.reason}
        if v.rounds_ms:
            median, best = statistics.median(v.rounds_ms), min(v.rounds_ms)
            ref = base[v.runtime].rounds_ms
            row.update(
                median_ms=median,
                best_ms=best,
                rounds_ms=v.rounds_ms,
                other_load_cores=v.other_load,
                speedup_vs_f32=statistics.median(ref) / median if ref else None,
                speedup_best_vs_f32=min(ref) / best if ref else None,
                **v.details,
            )
        rows.append(row)
    return rows


def fidelity_section(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Top-1 agreement of each INT8 efficientnet_lite0 with its FP32 ONNX on held-out crops."""
    model = load_model(FIDELITY_MODEL)
    fp32 = work / "lite0-fp32.onnx"
    export_onnx(model.module, fp32, model.input_shape(1))
    source, calib, held_out = photo_splits(model, args.calibration, args.held_out)
    arrays = calibration_arrays(calib)
    reference = logits_fn(graph_model(fp32, model), "onnxruntime", graph_path=fp32)
    confident = confident_subset(reference, held_out, CONFIDENT)

    files: dict[tuple[str, str], Path | str] = {("f32 (sanity)", "openvino"): fp32}
    files[("quantize_static defaults", "onnxruntime")] = _timed(
        lambda: ort_int8(fp32, arrays, work / "lite0-ort-int8.onnx")
    )
    files[("quantize_static per_channel=True", "onnxruntime")] = _timed(
        lambda: ort_int8(fp32, arrays, work / "lite0-ort-int8-pc.onnx", per_channel=True)
    )
    files[("quantize_static per_channel=True, u8 activations", "onnxruntime")] = _timed(
        lambda: ort_int8(
            fp32,
            arrays,
            work / "lite0-ort-int8-pc-u8.onnx",
            per_channel=True,
            activation_type=quint8(),
        )
    )
    files[("NNCF defaults", "openvino")] = _timed(
        lambda: nncf_int8(fp32, arrays, work / "lite0-nncf-int8.xml")[0]
    )
    # One file per slimcv variant; the QDQ file is the same whichever runtime then runs it.
    for label, options in (
        ("slimcv, nearest rounding", {"rounding": "nearest"}),
        ("slimcv defaults (AdaRound on depthwise models)", {}),
    ):
        made = try_slimcv(model, source, work / "lite0", args.calibration, "onnxruntime", **options)
        for runtime in ("onnxruntime", "openvino"):
            files[(label, runtime)] = made

    rows = []
    for (label, runtime), path in files.items():
        row: dict[str, Any] = {"quantizer": label, "runtime": runtime, "images": len(held_out)}
        if isinstance(path, Path):
            run = logits_fn(graph_model(path, model), runtime, graph_path=path)
            row["agreement"] = top1_agreement(run, reference, held_out)
            row["agreement_confident"] = top1_agreement(run, reference, confident)
        else:
            row["reason"] = path
        rows.append(row)
    return {
        "model": FIDELITY_MODEL,
        "reference": "FP32 ONNX on onnxruntime",
        "calibration_crops": len(calib),
        "held_out_crops": len(held_out),
        "confident_crops": len(confident),
        "confident_threshold": CONFIDENT,
        "rows": rows,
    }


def confident_subset(reference: Callable, dataset: TensorDataset, threshold: float) -> Subset:
    """The crops on which the FP32 model's top class has probability above ``threshold``.

    Most random crops are ambiguous to an ImageNet classifier (a patch of gravel or sky), and
    there a tiny logit change flips the top class; agreement on confident crops tells apart
    real damage from such coin flips.
    """
    probs = reference(dataset.tensors[0]).softmax(1).max(1).values
    return Subset(dataset, torch.nonzero(probs > threshold).flatten().tolist())


def _timed(make: Callable[[], Path]) -> Path:
    started = time.perf_counter()
    path = make()
    print(f"  {path.name}: {time.perf_counter() - started:.0f} s", flush=True)
    return path


# --------------------------------------------------------------------------------------------
# Report


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        "# INT8: slimcv vs ONNX Runtime quantize_static vs NNCF",
        "",
        f"Machine: {machine.get('cpu', '?')}, {result['threads']} threads. Batch 1, 224x224, "
        f"median (and best) of {result['args']['rounds']} interleaved rounds, each the median "
        f"of {result['args']['seconds']:g} s of timed calls after 1 s warm-up; on a shared "
        "machine the best round is the figure least disturbed by other processes. OpenVINO with "
        "INFERENCE_PRECISION_HINT=f32 for every model (the INT8 ones run their float parts in "
        "f32). Random weights with randomised BatchNorm statistics; calibration on "
        f"{result['args']['latency_calibration']} `photos` crops.",
        "",
    ]
    if result.get("latency"):
        lines += [
            "| model | runtime | variant | median ms | best ms | rounds ms (other processes' "
            "load, cores) | speed-up vs f32 of the same runtime: median / best |",
            "|---|---|---|---|---|---|---|",
        ]
        for section in result["latency"]:
            for row in section["variants"]:
                if "median_ms" in row:
                    rounds = ", ".join(
                        f"{ms:.2f} ({load:.1f})"
                        for ms, load in zip(row["rounds_ms"], row["other_load_cores"], strict=True)
                    )
                    cells = (
                        f"{row['median_ms']:.2f} | {row['best_ms']:.2f} | {rounds} | "
                        f"{row['speedup_vs_f32']:.2f}x / {row['speedup_best_vs_f32']:.2f}x"
                    )
                else:
                    cells = f"- | - | {row['reason']} | -"
                lines.append(
                    f"| {section['model']} | {row['runtime']} | {row['variant']} | {cells} |"
                )
        lines.append("")
    for section in result.get("latency", []):
        lines += graph_lines(section)
    if result.get("fidelity"):
        fid = result["fidelity"]
        lines += [
            f"Fidelity: `{fid['model']}` (ImageNet weights), top-1 agreement with its "
            f"{fid['reference']} on {fid['held_out_crops']} held-out `photos` crops; every "
            f"quantizer calibrated on the same {fid['calibration_crops']} other crops. The last "
            f"column counts only the {fid['confident_crops']} crops where FP32's top class has "
            f"probability > {fid['confident_threshold']:g}.",
            "",
            "| quantizer | runtime | top-1 agreement | on confident crops |",
            "|---|---|---|---|",
        ]
        for row in fid["rows"]:
            if "agreement" in row:
                value = f"{100 * row['agreement']:.1f}% | {100 * row['agreement_confident']:.1f}%"
            else:
                value = f"{row['reason']} | -"
            lines.append(f"| {row['quantizer']} | {row['runtime']} | {value} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def graph_lines(section: dict[str, Any]) -> list[str]:
    """What each quantizer's graph really executes: the runtime's kernels after fusion."""
    lines = [f"What runs, `{section['model']}` (kernel:count after the runtime's fusions):", ""]
    for name, facts in section["graphs"].items():
        executed = facts.get("ort_executes") or facts.get("ov_executes") or facts.get("executes")
        if executed:
            text = ", ".join(f"{op} {n}" for op, n in executed.items())
            lines.append(f"- {name}: {text}")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(LATENCY_MODELS))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per record")
    parser.add_argument("--threads", type=int, help="runtime threads (default: all cores)")
    parser.add_argument("--latency-calibration", type=int, default=32)
    parser.add_argument("--calibration", type=int, default=100, help="lite0 calibration crops")
    parser.add_argument("--held-out", type=int, default=250, help="lite0 held-out crops")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-fidelity", action="store_true")
    parser.add_argument("--name", default="quantize_vs_runtimes", help="results file name")
    parser.add_argument("--workdir", type=Path, help="keep the model files here (default: temp)")
    args = parser.parse_args()

    result: dict[str, Any] = {"args": vars(args), "machine": machine_info()}
    result["threads"] = RuntimeOptions(threads=args.threads).resolved_threads()
    with tempfile.TemporaryDirectory(prefix="slimcv-quant-bench-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if not args.skip_latency:
            result["latency"] = []
            for name in args.models.split(","):
                print(f"latency: {name}", flush=True)
                result["latency"].append(latency_section(name, args, work))
        if not args.skip_fidelity:
            print("fidelity: efficientnet_lite0", flush=True)
            result["fidelity"] = fidelity_section(args, work)
    text = markdown(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.md").write_text(text)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=str))
    print(text)


if __name__ == "__main__":
    main()
