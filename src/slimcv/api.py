"""The public Python API; every function mirrors a CLI command.

Each takes a model (a :class:`LoadedModel`, an ``nn.Module`` or a source string), a data source
where it needs one, and a config dataclass, and returns a result dataclass whose ``to_dict()``
is the command's ``--json`` output.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from slimcv.sources import LoadedModel, Preprocess, load_model

if TYPE_CHECKING:
    from slimcv.analysis import ProfileResult
    from slimcv.distillation import DistillConfig, DistillResult
    from slimcv.exporters import ExportConfig, ExportResult
    from slimcv.inference import Prediction
    from slimcv.measure import BenchConfig, BenchResult
    from slimcv.measure.accuracy import EvalResult
    from slimcv.nas.api import SearchConfig, SearchResult
    from slimcv.nas.space import SearchSpace
    from slimcv.pruning import PruneConfig, PruneResult
    from slimcv.pruning.sensitivity import SensitivityResult
    from slimcv.quant import QuantizeConfig, QuantizeResult
    from slimcv.training import TrainConfig, TrainResult

ModelLike = LoadedModel | nn.Module | str


def as_loaded(model: ModelLike, **load_kwargs: Any) -> LoadedModel:
    """Accepts a LoadedModel, a bare module or a source string, and returns a LoadedModel."""
    if isinstance(model, LoadedModel):
        if load_kwargs.get("image_size"):
            pre = model.preprocess
            model.preprocess = Preprocess(
                load_kwargs["image_size"], pre.crop_pct, pre.mean, pre.std, pre.interpolation
            )
        return model
    if isinstance(model, nn.Module):
        size = load_kwargs.get("image_size") or 224
        classes = next(
            (m.out_features for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)),
            1000,
        )
        return LoadedModel(
            source=f"<module {type(model).__name__}>",
            num_classes=classes,
            preprocess=Preprocess(image_size=size),
            module=model,
        )
    return load_model(model, **{k: v for k, v in load_kwargs.items() if v is not None})


def profile(model: ModelLike, *, image_size: int | None = None) -> ProfileResult:
    """Params, MACs per layer, FP32 size and peak activation memory (batch 1)."""
    from slimcv.analysis import profile_model

    loaded = as_loaded(model, image_size=image_size)
    module = loaded.require_module("profile")
    return profile_model(module, loaded.input_shape(1))


def evaluate(
    model: ModelLike,
    data: str,
    *,
    split: str = "val",
    image_size: int | None = None,
    progress: bool = False,
) -> EvalResult:
    """Top-1, top-5 and per-class accuracy (percent) on a data source's split."""
    from slimcv.measure.accuracy import evaluate as _evaluate

    return _evaluate(as_loaded(model, image_size=image_size), data, split=split, progress=progress)


def predict(model: ModelLike, images: list[str | Path], *, top_k: int = 5) -> list[Prediction]:
    """Top-k labels with probabilities for image files."""
    from slimcv.inference import predict as _predict

    return _predict(as_loaded(model), images, top_k=top_k)


def train(
    model: ModelLike,
    data: str,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    image_size: int | None = None,
    progress: bool = False,
    resume: bool = False,
) -> TrainResult:
    """Supervised training; the result is saved as an artifact directory.

    ``resume`` continues the interrupted run in ``out_dir`` from its last checkpoint.
    """
    from slimcv.training import train as _train

    return _train(
        as_loaded(model, image_size=image_size),
        data,
        out_dir,
        config,
        progress=progress,
        resume=resume,
    )


def bench(
    model: ModelLike,
    config: BenchConfig | None = None,
    *,
    image_size: int | None = None,
    progress: bool = False,
) -> BenchResult:
    """Latency, throughput, peak memory and energy per runtime and batch size."""
    from slimcv.measure import bench as _bench

    return _bench(as_loaded(model, image_size=image_size), config, progress=progress)


def export(
    model: ModelLike,
    out_dir: str | Path,
    config: ExportConfig | None = None,
    *,
    image_size: int | None = None,
) -> ExportResult:
    """ONNX and OpenVINO files, BatchNorm folded, verified against PyTorch."""
    from slimcv.exporters import export as _export

    return _export(as_loaded(model, image_size=image_size), out_dir, config)


def prune(
    model: ModelLike,
    config: PruneConfig,
    *,
    data: str | None = None,
    out_dir: str | Path | None = None,
    image_size: int | None = None,
    progress: bool = False,
    sensitivity: SensitivityResult | None = None,
) -> PruneResult:
    """Structured or unstructured pruning, to a ratio or a target, optionally fine-tuned.

    ``sensitivity``: curves measured earlier on this model, reused by ``allocation:
    sensitivity`` instead of measuring them again.
    """
    from slimcv.pruning import prune as _prune

    return _prune(
        as_loaded(model, image_size=image_size),
        config,
        data=data,
        out_dir=out_dir,
        progress=progress,
        sensitivity=sensitivity,
    )


def quantize(
    model: ModelLike,
    config: QuantizeConfig | None = None,
    *,
    data: Any,
    out_dir: str | Path,
    image_size: int | None = None,
    progress: bool = False,
) -> QuantizeResult:
    """INT8 (PTQ, QAT, weight-only, dynamic), FP16 or BF16; writes a verified artifact."""
    from slimcv.quant import quantize as _quantize

    return _quantize(
        as_loaded(model, image_size=image_size),
        config,
        data=data,
        out_dir=out_dir,
        progress=progress,
    )


def distill(
    teacher: ModelLike | list[ModelLike] | None,
    student: ModelLike,
    data: Any,
    out_dir: str | Path,
    config: DistillConfig | None = None,
    *,
    image_size: int | None = None,
    progress: bool = False,
) -> DistillResult:
    """Knowledge distillation (kd, feature, attention, ensemble, self, mutual); the student is
    saved as an artifact directory."""
    from slimcv.distillation import distill as _distill

    if isinstance(teacher, list):
        teachers: Any = [as_loaded(t, image_size=image_size) for t in teacher]
    else:
        teachers = None if teacher is None else as_loaded(teacher, image_size=image_size)
    return _distill(
        teachers,
        as_loaded(student, image_size=image_size),
        data,
        out_dir,
        config,
        progress=progress,
    )


def search(
    space: SearchSpace | str,
    data: str,
    config: SearchConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    force: bool = False,
    progress: bool = False,
) -> SearchResult:
    """Hardware-aware architecture search: the Pareto front of accuracy against latency (or
    params, MACs, size); with ``out_dir``, every front member is saved as an artifact."""
    from slimcv.nas.api import search as _search

    return _search(space, data, config, out_dir=out_dir, force=force, progress=progress)
