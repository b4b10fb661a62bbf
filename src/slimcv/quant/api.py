"""``slimcv.quantize``: INT8 (PTQ, QAT, weight-only, dynamic), FP16 and BF16, with proof.

This module only sequences the pieces: load calibration data and check it, build the
simulation (:mod:`.prepare`), calibrate (:mod:`.calibrate`), improve the rounding
(:mod:`.adaround`, :mod:`.equalize`, :mod:`.bias_correction`), train (QAT through
:mod:`slimcv.training`), keep sensitive layers float until the drop is within ``max_drop``
(:mod:`.mixed`), write QDQ ONNX (:mod:`.onnx_qdq`), prove the runtimes run it on integer kernels
(:mod:`.int8_check`), measure the accuracy on the runtime itself, and save an artifact.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from slimcv.data import DataBundle, calibration_subset, load_data
from slimcv.errors import DataError, SlimcvError
from slimcv.sources.artifact import check_output_dir
from slimcv.sources.model import LoadedModel

PRECISIONS = ("int8", "fp16", "bf16")
METHODS = ("ptq", "qat", "weight-only", "dynamic")
CALIBRATIONS = ("minmax", "percentile", "mse", "entropy")
ROUNDINGS = ("auto", "nearest", "adaround")
BACKENDS = ("onnxruntime", "openvino")
ACTIVATIONS = ("u8", "s8")


@dataclass
class QuantizeConfig:
    """How to quantize.

    Attributes:
        precision: ``int8``, or a float cast: ``fp16`` / ``bf16``.
        method: INT8 only: ``ptq`` (static, calibrated), ``qat`` (fine-tune with fake
            quantization, then convert), ``weight-only`` (int8 weights, float compute: a
            smaller file) or ``dynamic`` (activation ranges computed at run time, by ONNX
            Runtime's dynamic quantizer).
        calibration: activation range method: ``minmax``, ``percentile``, ``mse``, ``entropy``.
        calibration_size: images used to calibrate (and to learn the rounding).
        rounding: ``nearest``, ``adaround`` (learned per-layer rounding, Nagel et al. 2020;
            about a minute per 50 layers on 2 cores), or ``auto``: AdaRound for models with
            depthwise convolutions (MobileNet, EfficientNet), whose few weights per channel
            make nearest rounding costly, nearest otherwise.
        equalize: cross-layer equalization before quantizing (DFQ).
        bias_correction: correct each layer's bias for the mean error quantization adds.
        weight_bits: weight bit width (8; 4 for lower-precision studies, stored in int8).
        activation: ``u8`` (asymmetric) or ``s8`` (symmetric) activations.
        max_drop: keep the most sensitive layers in float until the metric drops by at most
            this many points (top-1, or agreement with the float model on unlabeled data).
        backend: the runtime whose execution is measured and checked.
        qat_epochs: QAT fine-tuning epochs.
        qat_lr: QAT learning rate.
        distill: QAT learns from the float model's soft targets (the float model as teacher,
            see :mod:`slimcv.distillation`) as well as the labels.
        batch_size: images per calibration / evaluation batch.
        seed: seeds the calibration subset, data split and QAT.
    """

    precision: str = "int8"
    method: str = "ptq"
    calibration: str = "minmax"
    calibration_size: int = 256
    rounding: str = "auto"
    equalize: bool = False
    bias_correction: bool = False
    weight_bits: int = 8
    activation: str = "u8"
    max_drop: float | None = None
    backend: str = "onnxruntime"
    qat_epochs: int = 3
    qat_lr: float = 1e-4
    distill: bool = False
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        _choice("precision", self.precision, PRECISIONS)
        _choice("method", self.method, METHODS)
        _choice("calibration", self.calibration, CALIBRATIONS)
        _choice("rounding", self.rounding, ROUNDINGS)
        _choice("backend", self.backend, BACKENDS)
        _choice("activation", self.activation, ACTIVATIONS)
        if self.calibration_size < 1:
            raise DataError(f"calibration size must be at least 1, got {self.calibration_size}")
        if not 2 <= self.weight_bits <= 8:
            raise SlimcvError(f"weight bits must be 2..8, got {self.weight_bits}")
        if self.max_drop is not None and self.max_drop < 0:
            raise SlimcvError(f"max drop must be >= 0 points, got {self.max_drop}")
        if self.qat_epochs < 1:
            raise SlimcvError(f"QAT epochs must be at least 1, got {self.qat_epochs}")
        if self.precision == "bf16" and self.backend != "openvino":
            raise SlimcvError(
                "bf16 runs on OpenVINO here (ONNX Runtime's CPU provider has no bf16 kernels); "
                "add --backend openvino"
            )
        if self.distill and self.method != "qat":
            raise SlimcvError("--distill teaches QAT's training; use it with --method qat")
        if self.precision != "int8" and self.method != "ptq":
            raise SlimcvError(f"--method {self.method} applies to int8 only")


@dataclass
class QuantizeResult:
    """What was quantized, and how it measures on the runtime.

    Attributes:
        metric: ``top1`` (labeled data) or ``agreement`` (top-1 agreement with the float
            model, in percent, on unlabeled data).
        float_score / quant_score / drop: the metric before and after, and the difference.
        float_layers: layers left in float, with the reason (mixed precision, unsupported).
        sensitivity: per-layer drop when only that layer is quantized (mixed precision).
        int8_checks: what each runtime compiled (integer vs float layers).
    """

    out_dir: str
    precision: str
    method: str
    backend: str
    metric: str
    float_score: float
    quant_score: float
    drop: float
    data: str
    samples: int
    calibration_images: int
    quantized_layers: list[str] = field(default_factory=list)
    float_layers: dict[str, str] = field(default_factory=dict)
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    int8_checks: list[dict[str, Any]] = field(default_factory=list)
    onnx_bytes: int = 0
    float_onnx_bytes: int = 0
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def size_ratio(self) -> float:
        return self.onnx_bytes / self.float_onnx_bytes if self.float_onnx_bytes else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "size_ratio": self.size_ratio}


def _choice(what: str, value: str, known: tuple[str, ...]) -> None:
    if value not in known:
        from slimcv.errors import UnknownNameError

        raise UnknownNameError(f"unknown {what} {value!r}; known: {', '.join(known)}")


def quantize(
    model: LoadedModel,
    config: QuantizeConfig | None = None,
    *,
    data: str | DataBundle | torch.Tensor,
    out_dir: str | Path,
    progress: bool = False,
) -> QuantizeResult:
    """Quantizes ``model`` and writes an artifact whose ``model.onnx`` the runtimes execute.

    Args:
        model: a PyTorch model (the quantizer needs the module, not an ONNX file).
        config: how; defaults to static INT8 PTQ, min-max calibration, ONNX Runtime.
        data: a data source string, a :class:`DataBundle`, or a tensor of preprocessed
            calibration images (N, C, H, W). Labeled data reports top-1; unlabeled data
            (``photos``, a tensor) reports top-1 agreement with the float model.
        out_dir: the artifact directory (written atomically; never an input).

    Raises:
        DataError: empty calibration set, NaN/Inf values, images of the wrong size.
        ExportError: the runtime would run the INT8 model in float.
    """
    from slimcv.quant.pipeline import run_quantize

    config = config or QuantizeConfig()
    module = model.require_module("quantization")
    inputs = [model.meta["artifact"]] if "artifact" in model.meta else []
    out = check_output_dir(out_dir, inputs)
    started = time.perf_counter()
    calib, evaluation, bundle_name = load_quant_data(model, data, config)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        result = run_quantize(
            model, module, config, calib, evaluation, bundle_name, out, Path(tmp), progress
        )
    result.seconds = time.perf_counter() - started
    return result


@dataclass
class EvalSet:
    """Held-out images as one tensor, with labels when the data has them."""

    images: torch.Tensor
    labels: torch.Tensor | None
    #: The data set it came from (QAT trains on its train split); None for a tensor.
    bundle: DataBundle | None = None

    @property
    def metric(self) -> str:
        return "top1" if self.labels is not None else "agreement"


def load_quant_data(
    model: LoadedModel, data: str | DataBundle | torch.Tensor, config: QuantizeConfig
) -> tuple[torch.Tensor, EvalSet, str]:
    """Calibration images and the evaluation set, checked before any work starts.

    Raises:
        DataError: empty set, NaN/Inf, or images whose size the model does not take.
    """
    expected = tuple(model.input_shape(1)[1:])
    if isinstance(data, torch.Tensor):
        images = data.float()
        if images.dim() != 4:
            raise DataError(f"calibration images must be N x C x H x W, got {tuple(images.shape)}")
        _check_images(images, expected, "calibration data")
        count = min(config.calibration_size, len(images))
        return images[:count], EvalSet(images, None), "tensor"
    bundle = (
        data
        if isinstance(data, DataBundle)
        else load_data(data, model.preprocess, seed=config.seed)
    )
    if bundle.labeled and bundle.num_classes != model.num_classes:
        raise DataError(
            f"{bundle.name} has {bundle.num_classes} classes but the model outputs "
            f"{model.num_classes}"
        )
    if len(bundle.train) == 0:  # type: ignore[arg-type]
        raise DataError(f"the calibration set from {bundle.name} is empty")
    subset = calibration_subset(bundle.train, config.calibration_size, config.seed)
    calib = _stack(subset)[0]
    _check_images(calib, expected, f"calibration data from {bundle.name}")
    images, labels = _stack(bundle.val)
    _check_images(images, expected, f"evaluation data from {bundle.name}")
    return calib, EvalSet(images, labels if bundle.labeled else None, bundle), bundle.name


def _stack(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    from torch.utils.data import DataLoader

    images, labels = [], []
    for x, y in DataLoader(dataset, batch_size=64):
        images.append(x)
        labels.append(torch.as_tensor(y))
    if not images:
        raise DataError("the calibration set is empty: give it at least one image")
    return torch.cat(images), torch.cat(labels)


def _check_images(images: torch.Tensor, expected: tuple[int, ...], what: str) -> None:
    if len(images) == 0:
        raise DataError(f"{what} is empty: give it at least one image")
    if tuple(images.shape[1:]) != expected:
        got = "x".join(map(str, images.shape[1:]))
        want = "x".join(map(str, expected))
        raise DataError(f"{what} has images of {got} but the model takes {want}")
    if not torch.isfinite(images).all():
        bad = int((~torch.isfinite(images)).flatten(1).any(1).sum())
        raise DataError(f"{what} contains NaN or Inf values (in {bad} of {len(images)} images)")
