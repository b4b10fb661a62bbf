"""The ``slimcv`` command line: a thin Typer layer over the public API (:mod:`slimcv.api`).

User mistakes (:class:`slimcv.errors.SlimcvError` and bad command-line usage) print one line on
stderr and exit with code 2; ``--json`` prints the result's documented dictionary on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from slimcv.errors import SlimcvError

app = typer.Typer(
    name="slimcv",
    help="Make vision models small and fast on a real target, and prove it by measuring.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_SOURCE_HELP = (
    "Model source: torchvision:NAME, timm:NAME, timm:efficientnet_lite0:imagenet, "
    "arch:FAMILY[:key=value,...] (see slimcv arch list), arch:SPEC, "
    "file.py:factory, package.module:factory, model.onnx, or an artifact directory."
)
ModelArg = Annotated[str, typer.Argument(help=_SOURCE_HELP, show_default=False)]
NumClasses = Annotated[
    int | None, typer.Option("--num-classes", help="Replace the classifier head (N outputs).")
]
Weights = Annotated[
    Path | None,
    typer.Option("--weights", help="Checkpoint to load: .safetensors, .pt or .pth (safe load)."),
]
Trust = Annotated[
    bool,
    typer.Option("--trust-checkpoint", help="Allow full pickle in .pt/.pth files (can run code)."),
]
ImageSize = Annotated[
    int | None, typer.Option("--image-size", help="Input side in pixels (default: the model's).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
DataOpt = Annotated[
    str, typer.Option("--data", help="Data: digits, synthetic, or an image folder path.")
]
OutOpt = Annotated[Path, typer.Option("--out", help="Output artifact directory.")]


def _load(
    source: str, num_classes: int | None, weights: Path | None, trust: bool, image_size: int | None
) -> Any:
    from slimcv.sources import load_model

    if image_size is not None and image_size < 1:
        raise SlimcvError(f"--image-size must be positive, got {image_size}")
    if num_classes is not None and num_classes < 1:
        raise SlimcvError(f"--num-classes must be positive, got {num_classes}")
    return load_model(
        source,
        num_classes=num_classes,
        weights=weights,
        trust_checkpoint=trust,
        image_size=image_size,
    )


def _emit(as_json: bool, data: Any, *tables: Any) -> None:
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        return
    # Piped output is not cut to 80 columns: logs and files are read in wide windows.
    console = Console(width=None if sys.stdout.isatty() else 160)
    for table in tables:
        console.print(table)


def _progress(as_json: bool) -> bool:
    return not as_json


def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise SlimcvError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise SlimcvError(f"{what} must be positive integers, got {text!r}")
    return values


@app.command()
def profile(
    model: ModelArg,
    image_size: Annotated[int, typer.Option("--image-size", help="Input side in pixels.")] = 224,
    num_classes: NumClasses = None,
    weights: Weights = None,
    trust_checkpoint: Trust = False,
    top: Annotated[int, typer.Option(help="Layers to show, heaviest first.")] = 15,
    as_json: AsJson = False,
) -> None:
    """Params, MACs per layer and in total, FP32 size, peak activation memory."""
    from slimcv.api import profile as run_profile
    from slimcv.report.tables import profile_table

    loaded = _load(model, num_classes, weights, trust_checkpoint, image_size)
    result = run_profile(loaded)
    _emit(as_json, {"model": model, **result.to_dict()}, profile_table(result, model, top))


@app.command()
def train(
    model: ModelArg,
    data: DataOpt = "digits",
    out: OutOpt = Path("run"),
    epochs: Annotated[int, typer.Option(help="Passes over the training split.")] = 5,
    batch_size: Annotated[
        int, typer.Option(help="Images per step, over all processes under torchrun.")
    ] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-3,
    optimizer: Annotated[str, typer.Option(help="adamw or sgd.")] = "adamw",
    weight_decay: Annotated[float, typer.Option(help="Weight decay (not on biases/norms).")] = 0.05,
    schedule: Annotated[str, typer.Option(help="cosine, onecycle or constant.")] = "cosine",
    warmup: Annotated[float, typer.Option(help="Share of all steps spent warming up.")] = 0.1,
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing in [0, 1).")] = 0.0,
    augment: Annotated[
        str, typer.Option(help="Batch augmentations, comma-separated: crop, flip, erase.")
    ] = "",
    patience: Annotated[
        int | None,
        typer.Option(help="Stop after N epochs without a better val top-1; keep the best."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[
        str, typer.Option(help="auto (bf16 on a GPU, else fp32), fp32 or bf16.")
    ] = "auto",
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted run in --out.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed for weights, data order and split.")] = 0,
    num_classes: NumClasses = None,
    weights: Weights = None,
    trust_checkpoint: Trust = False,
    image_size: ImageSize = None,
    as_json: AsJson = False,
) -> None:
    """Supervised training; writes a reloadable artifact directory to --out.

    A checkpoint is written to OUT/checkpoints/ after every epoch; rerun the same command with
    --resume to continue after an interruption. Start it with torchrun for data parallelism.
    """
    from slimcv.report.tables import train_table
    from slimcv.training import TrainConfig, seed_everything
    from slimcv.training import train as run_train
    from slimcv.training.distributed import env_context

    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
        schedule=schedule,
        warmup_fraction=warmup,
        label_smoothing=label_smoothing,
        augment=tuple(a.strip() for a in augment.split(",") if a.strip()),
        patience=patience,
        seed=seed,
        device=device,
        precision=precision,
    )
    seed_everything(seed)  # before the model is built, so its initial weights are seeded too
    loaded = _load(model, num_classes, weights, trust_checkpoint, image_size)
    result = run_train(loaded, data, out, config, progress=_progress(as_json), resume=resume)
    if env_context().is_main:  # under torchrun, one report
        _emit(as_json, result.to_dict(), train_table(result))


@app.command("eval")
def eval_(
    model: ModelArg,
    data: DataOpt = "digits",
    split: Annotated[str, typer.Option(help="val or train.")] = "val",
    batch_size: Annotated[int, typer.Option(help="Images per batch.")] = 64,
    seed: Annotated[int, typer.Option(help="Split seed (use the one training used).")] = 0,
    backend: Annotated[
        str | None,
        typer.Option(help="Runtime to evaluate on (default: torch for modules, else onnxruntime)."),
    ] = None,
    num_classes: NumClasses = None,
    weights: Weights = None,
    trust_checkpoint: Trust = False,
    image_size: ImageSize = None,
    as_json: AsJson = False,
) -> None:
    """Top-1, top-5 and per-class accuracy (percent) on a data split."""
    from slimcv.measure.accuracy import evaluate
    from slimcv.report.tables import eval_table

    loaded = _load(model, num_classes, weights, trust_checkpoint, image_size)
    result = evaluate(
        loaded,
        data,
        split=split,
        batch_size=batch_size,
        seed=seed,
        backend=backend,
        progress=_progress(as_json),
    )
    _emit(as_json, {"model": model, **result.to_dict()}, eval_table(result, model))


@app.command()
def predict(
    model: ModelArg,
    images: Annotated[list[Path], typer.Argument(help="Image files.", show_default=False)],
    top_k: Annotated[int, typer.Option("--top-k", help="Classes per image.")] = 5,
    num_classes: NumClasses = None,
    weights: Weights = None,
    trust_checkpoint: Trust = False,
    image_size: ImageSize = None,
    as_json: AsJson = False,
) -> None:
    """Top-k labels with probabilities, using the model's own preprocessing."""
    from slimcv.data.transforms import load_image
    from slimcv.inference import predict as run_predict
    from slimcv.report.tables import predict_table

    for image in images:  # fail on a bad image before loading the model
        load_image(image)
    loaded = _load(model, num_classes, weights, trust_checkpoint, image_size)
    results = run_predict(loaded, list(images), top_k=top_k)
    _emit(as_json, [r.to_dict() for r in results], predict_table(results))


@app.command()
def bench(
    model: ModelArg,
    backends: Annotated[
        str,
        typer.Option(
            help="Comma-separated: torch, torch-compile, onnxruntime, openvino, cuda, tensorrt."
        ),
    ] = "torch,onnxruntime,openvino",
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1",
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads (default: all cores).")
    ] = None,
    precision: Annotated[
        str, typer.Option(help="f32, bf16 or f16 (set on every runtime).")
    ] = "f32",
    min_time: Annotated[float, typer.Option(help="Seconds of timed runs per record.")] = 2.0,
    memory: Annotated[bool, typer.Option(help="Measure peak memory in a subprocess.")] = True,
    num_classes: NumClasses = None,
    weights: Weights = None,
    trust_checkpoint: Trust = False,
    image_size: ImageSize = None,
    as_json: AsJson = False,
) -> None:
    """Latency (median, p90, IQR), throughput, peak memory and energy per runtime and batch."""
    from slimcv.measure import BenchConfig
    from slimcv.measure import bench as run_bench
    from slimcv.report.bench_table import bench_table

    names = tuple(b.strip() for b in backends.split(",") if b.strip())
    config = BenchConfig(
        backends=names,
        batches=_int_list(batch, "--batch"),
        threads=threads,
        precision=precision,
        min_time_s=min_time,
        memory=memory,
    )
    loaded = _load(model, num_classes, weights, trust_checkpoint, image_size)
    result = run_bench(loaded, config, progress=_progress(as_json))
    _emit(as_json, result.to_dict(), bench_table(result))


@app.command()
def export(
    model: ModelArg,
    to: Annotated[
        str, typer.Option("--to", help="onnx, openvino, or both: onnx,openvino.")
    ] = "onnx,openvino",
    out: OutOpt = Path("export"),
    opset: Annotated[int, typer.Option(help="ONNX opset (17 or newer).")] = 17,
    num_classes: NumClasses = None,
    weights: Weights = None,
    trust_checkpoint: Trust = False,
    image_size: ImageSize = None,
    as_json: AsJson = False,
) -> None:
    """ONNX / OpenVINO IR with BatchNorm folded, each verified against PyTorch."""
    from slimcv.exporters import ExportConfig
    from slimcv.exporters import export as run_export
    from slimcv.report.tables import export_table

    config = ExportConfig(formats=tuple(f.strip() for f in to.split(",") if f.strip()), opset=opset)
    loaded = _load(model, num_classes, weights, trust_checkpoint, image_size)
    result = run_export(loaded, out, config)
    _emit(as_json, result.to_dict(), export_table(result))


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


@app.command()
def prune(
    model: ModelArg,
    out: OutOpt = Path("pruned"),
    ratio: Annotated[
        float | None, typer.Option(help="Structured: channels removed per layer; else sparsity.")
    ] = None,
    target_macs: Annotated[
        float | None, typer.Option("--target-macs", help="Fraction of MACs to keep.")
    ] = None,
    target_latency_ms: Annotated[
        float | None,
        typer.Option("--target-latency-ms", help="Batch-1 latency to reach on --backend."),
    ] = None,
    backend: Annotated[str, typer.Option(help="Runtime a latency target is measured on.")] = (
        "onnxruntime"
    ),
    criterion: Annotated[str, typer.Option(help="l1, l2, bn, taylor, fpgm or random.")] = "l2",
    mode: Annotated[str, typer.Option(help="structured, unstructured or 2:4.")] = "structured",
    schedule: Annotated[
        str, typer.Option(help="oneshot, iterative:K, or gradual:K (unstructured).")
    ] = "oneshot",
    global_ranking: Annotated[
        bool, typer.Option("--global", help="Rank channels/weights across layers.")
    ] = False,
    allocation: Annotated[
        str, typer.Option(help="uniform, or sensitivity (per-layer ratios; needs --data).")
    ] = "uniform",
    round_to: Annotated[
        int | None, typer.Option("--round-to", help="Round channel counts to a multiple.")
    ] = None,
    ignore: Annotated[
        str | None, typer.Option(help="Comma-separated module names to leave unpruned.")
    ] = None,
    data: Annotated[
        str | None, typer.Option(help="Data for fine-tuning / taylor / sensitivity / accuracy.")
    ] = None,
    finetune_epochs: Annotated[int, typer.Option(help="Fine-tuning epochs in all.")] = 0,
    lr: Annotated[float, typer.Option(help="Fine-tuning learning rate.")] = 1e-3,
    bn_sparsity: Annotated[
        float, typer.Option(help="Network slimming: L1 on BN scales before 'bn' ranking.")
    ] = 0.0,
    distill: Annotated[
        bool, typer.Option("--distill", help="Fine-tune with the unpruned model as teacher.")
    ] = False,
    threads: Annotated[int | None, typer.Option(help="Threads for latency measurement.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for data order and splits.")] = 0,
    num_classes: NumClasses = None,
    weights: Weights = None,
    trust_checkpoint: Trust = False,
    image_size: ImageSize = None,
    as_json: AsJson = False,
) -> None:
    """Structured or unstructured pruning to a ratio, a MACs fraction or a measured latency."""
    from slimcv.pruning import PruneConfig
    from slimcv.pruning import prune as run_prune
    from slimcv.report.tables import prune_table

    config = PruneConfig(
        mode=mode,
        ratio=ratio,
        target_macs=target_macs,
        target_latency_ms=target_latency_ms,
        backend=backend,
        criterion=criterion,
        global_ranking=global_ranking,
        allocation=allocation,
        round_to=round_to,
        ignore=_names(ignore),
        schedule=schedule,
        finetune_epochs=finetune_epochs,
        lr=lr,
        bn_sparsity=bn_sparsity,
        distill=distill,
        threads=threads,
        seed=seed,
    )
    loaded = _load(model, num_classes, weights, trust_checkpoint, image_size)
    result = run_prune(loaded, config, data=data, out_dir=out, progress=_progress(as_json))
    _emit(as_json, result.to_dict(), prune_table(result))


@app.command()
def quantize(
    model: ModelArg,
    data: Annotated[
        str,
        typer.Option(
            help="Calibration/evaluation data: digits, photos, an image folder, or a .npy "
            "array of preprocessed N x C x H x W images."
        ),
    ],
    out: OutOpt = Path("quantized"),
    precision: Annotated[str, typer.Option(help="int8, fp16 or bf16.")] = "int8",
    method: Annotated[str, typer.Option(help="ptq, qat, weight-only or dynamic (int8).")] = "ptq",
    calibration: Annotated[
        str, typer.Option(help="Activation ranges: minmax, percentile, mse or entropy.")
    ] = "minmax",
    calibration_size: Annotated[
        int, typer.Option("--calibration-size", help="Calibration images.")
    ] = 256,
    rounding: Annotated[
        str,
        typer.Option(
            help="Weight rounding: auto (AdaRound for depthwise models), nearest, adaround."
        ),
    ] = "auto",
    equalize: Annotated[bool, typer.Option(help="Cross-layer equalization first.")] = False,
    bias_correction: Annotated[
        bool, typer.Option("--bias-correction", help="Correct biases for quantization error.")
    ] = False,
    weight_bits: Annotated[int, typer.Option("--weight-bits", help="Weight bits (8, or 4).")] = 8,
    activation: Annotated[str, typer.Option(help="u8 (asymmetric) or s8 (symmetric).")] = "u8",
    max_drop: Annotated[
        float | None,
        typer.Option("--max-drop", help="Keep sensitive layers float until the drop is <= this."),
    ] = None,
    backend: Annotated[
        str, typer.Option(help="onnxruntime or openvino: where accuracy is measured.")
    ] = "onnxruntime",
    qat_epochs: Annotated[int, typer.Option("--qat-epochs", help="QAT epochs.")] = 3,
    qat_lr: Annotated[float, typer.Option("--qat-lr", help="QAT learning rate.")] = 1e-4,
    distill: Annotated[
        bool, typer.Option("--distill", help="QAT with the float model as teacher.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed for calibration subset, split and QAT.")] = 0,
    num_classes: NumClasses = None,
    weights: Weights = None,
    trust_checkpoint: Trust = False,
    image_size: ImageSize = None,
    as_json: AsJson = False,
) -> None:
    """INT8 (PTQ/QAT), FP16 or BF16, exported as ONNX the runtimes run on integer kernels."""
    from slimcv.quant import QuantizeConfig
    from slimcv.quant import quantize as run_quantize
    from slimcv.report.tables import quantize_table

    config = QuantizeConfig(
        precision=precision,
        method=method,
        calibration=calibration,
        calibration_size=calibration_size,
        rounding=rounding,
        equalize=equalize,
        bias_correction=bias_correction,
        weight_bits=weight_bits,
        activation=activation,
        max_drop=max_drop,
        backend=backend,
        qat_epochs=qat_epochs,
        qat_lr=qat_lr,
        distill=distill,
        seed=seed,
    )
    loaded = _load(model, num_classes, weights, trust_checkpoint, image_size)
    source = _array_data(data)
    result = run_quantize(loaded, config, data=source, out_dir=out, progress=_progress(as_json))
    _emit(as_json, result.to_dict(), quantize_table(result))


def _array_data(data: str) -> Any:
    """A ``.npy`` file of preprocessed images becomes a tensor (loaded without pickle)."""
    if not data.endswith(".npy"):
        return data
    import numpy as np
    import torch

    from slimcv.errors import DataError

    try:
        array = np.load(data, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"calibration file not found: {data}") from None
    except ValueError as exc:
        raise DataError(f"{data} is not a plain numeric .npy array: {exc}") from None
    if array.dtype.kind not in "fiu":
        raise DataError(f"{data} holds {array.dtype} values, not numbers")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


@app.command()
def distill(
    student: Annotated[str, typer.Option("--student", help="The model to train (a model source).")],
    teacher: Annotated[
        list[str] | None,
        typer.Option(
            "--teacher",
            help="Teacher model source or artifact dir; repeat for --method ensemble; "
            "the peer's start for mutual; none for self.",
        ),
    ] = None,
    data: DataOpt = "digits",
    out: OutOpt = Path("distilled"),
    method: Annotated[
        str, typer.Option(help="kd, feature, attention, ensemble, self or mutual.")
    ] = "kd",
    temperature: Annotated[
        float | None, typer.Option(help="Soft-target temperature (default 4; mutual 1).")
    ] = None,
    alpha: Annotated[
        float | None,
        typer.Option(help="Weight of the soft targets vs the labels (default 0.9; mutual 0.5)."),
    ] = None,
    feature_pairs: Annotated[
        str | None,
        typer.Option("--feature-pairs", help="feature/attention: teacher_layer:student_layer,..."),
    ] = None,
    feature_loss: Annotated[
        str | None, typer.Option("--feature-loss", help="feature: mse or cosine.")
    ] = None,
    beta: Annotated[
        float | None, typer.Option(help="Weight of the feature/attention/exit term.")
    ] = None,
    exits: Annotated[
        str | None, typer.Option(help="self: student layers that get early-exit heads.")
    ] = None,
    teacher_weights: Annotated[
        str | None, typer.Option("--teacher-weights", help="ensemble: one weight per teacher.")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training split.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 2e-3,
    seed: Annotated[int, typer.Option(help="Seed for the student's weights and data order.")] = 0,
    split_seed: Annotated[
        int, typer.Option("--split-seed", help="Train/val split seed (the teacher's).")
    ] = 0,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir", help="Cache teacher logits here (kd, ensemble; no augmentation)."
        ),
    ] = None,
    num_classes: NumClasses = None,
    trust_checkpoint: Trust = False,
    image_size: ImageSize = None,
    as_json: AsJson = False,
) -> None:
    """Knowledge distillation: train --student from --teacher; writes the student to --out."""
    from slimcv.distillation import DistillConfig
    from slimcv.distillation import distill as run_distill
    from slimcv.report.tables import distill_table
    from slimcv.training import seed_everything

    try:
        weights = tuple(float(w) for w in _names(teacher_weights))
    except ValueError:
        raise SlimcvError(f"--teacher-weights must be numbers, got {teacher_weights!r}") from None
    config = DistillConfig(
        method=method,
        temperature=temperature,
        alpha=alpha,
        feature_pairs=feature_pairs or (),
        feature_loss=feature_loss,
        beta=beta,
        exits=_names(exits),
        teacher_weights=weights,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        split_seed=split_seed,
        cache_dir=str(cache_dir) if cache_dir is not None else None,
    )
    teachers = [
        _load(t, _classes_for(t, num_classes), None, trust_checkpoint, image_size)
        for t in teacher or []
    ]
    seed_everything(seed)  # before the student is built, so its initial weights are seeded
    loaded = _load(student, _classes_for(student, num_classes), None, trust_checkpoint, image_size)
    result = run_distill(
        teachers if len(teachers) != 1 else teachers[0],
        loaded,
        data,
        out,
        config,
        progress=_progress(as_json),
    )
    _emit(as_json, result.to_dict(), distill_table(result))


def _classes_for(source: str, num_classes: int | None) -> int | None:
    """--num-classes for a source string; an artifact directory keeps its own head."""
    from slimcv.sources.grammar import parse_source

    return None if parse_source(source).kind == "artifact" else num_classes


@app.command()
def sensitivity(
    model: ModelArg,
    data: DataOpt = "digits",
    ratios: Annotated[str, typer.Option(help="Comma-separated ratios per layer.")] = (
        "0.25,0.5,0.75"
    ),
    criterion: Annotated[str, typer.Option(help="l1, l2, fpgm or random.")] = "l2",
    samples: Annotated[int, typer.Option(help="Validation images per probe.")] = 256,
    layers: Annotated[
        str | None, typer.Option(help="Comma-separated layers (default: all prunable).")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the curves as a PNG here.")] = None,
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    num_classes: NumClasses = None,
    weights: Weights = None,
    trust_checkpoint: Trust = False,
    image_size: ImageSize = None,
    as_json: AsJson = False,
) -> None:
    """Per-layer accuracy against pruning ratio (each layer pruned alone)."""
    from slimcv.pruning import analyze_sensitivity as run_sensitivity
    from slimcv.pruning.sensitivity import plot_sensitivity
    from slimcv.report.tables import sensitivity_table

    try:
        grid = tuple(float(r) for r in ratios.split(",") if r.strip())
    except ValueError:
        raise SlimcvError(f"--ratios must be comma-separated numbers, got {ratios!r}") from None
    loaded = _load(model, num_classes, weights, trust_checkpoint, image_size)
    result = run_sensitivity(
        loaded,
        data,
        ratios=grid,
        criterion=criterion,
        samples=samples,
        layers=_names(layers) or None,
        seed=seed,
        progress=_progress(as_json),
    )
    if plot is not None:
        plot_sensitivity(result, plot)
    _emit(as_json, result.to_dict(), sensitivity_table(result))


@app.command()
def demo(
    out: OutOpt = Path("slimcv-demo"),
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 5,
    workers: Annotated[int, typer.Option(help="Candidates prepared at once (Ray).")] = 1,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted demo in --out.")] = False,
    force: Annotated[bool, typer.Option(help="Replace what --out holds.")] = False,
    as_json: AsJson = False,
) -> None:
    """Train resnet18 on digits, then optimize it for ONNX Runtime within 1 point of top-1:
    the fastest model, the Pareto front and report.html in --out."""
    from slimcv.cli_optimize import auto_tables
    from slimcv.pipeline.demo import run_demo

    result = run_demo(
        out,
        epochs=epochs,
        workers=workers,
        resume=resume,
        force=force,
        progress=_progress(as_json),
    )
    _emit(as_json, result.to_dict(), *auto_tables(result.to_dict()))


@app.command()
def version() -> None:
    """Print slimcv's version and those of the runtimes it found."""
    import importlib.metadata as md

    for package in ("slimcv", "torch", "torchvision", "timm", "onnx", "onnxruntime", "openvino"):
        try:
            print(f"{package} {md.version(package)}")
        except md.PackageNotFoundError:
            print(f"{package} not installed")


def _click_exceptions() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(usage errors, exits) of whichever click Typer runs on (recent Typer vendors its own)."""
    import importlib

    usage: list[type[BaseException]] = []
    exits: list[type[BaseException]] = [typer.Exit]
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        usage += [c for c in (getattr(module, "UsageError", None),) if c is not None]
        exits += [c for c in (getattr(module, "Exit", None),) if c is not None]
    return tuple(usage), tuple(exits)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns user mistakes into one line and exit code 2."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    usage_errors, exits = _click_exceptions()
    try:
        app(args=argv, standalone_mode=False, prog_name="slimcv")
    except SlimcvError as exc:
        err.print(f"error: {exc}", markup=False)
        return 2
    except usage_errors as exc:
        message = exc.format_message()  # type: ignore[attr-defined]
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `slimcv`: help is the answer
            print(message)
            return 0
        err.print(f"error: {message}", markup=False)
        return 2
    except exits as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted", markup=False)
        return 130
    return 0


# Larger command groups live in their own modules and register on ``app`` when imported.
from slimcv import cli_arch, cli_optimize, cli_search  # noqa: E402,F401


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    # ``python -m slimcv.cli``: run the imported module's app, on which the command groups in
    # cli_arch, cli_search and cli_optimize registered (this ``__main__`` copy has none).
    from slimcv.cli import run as _run

    _run()
