"""Preparing one pruning level and its variants: the unit of work auto mode hands to workers.

A *level* is the baseline pruned to a fraction of its MACs (or left whole at 1.0) and
fine-tuned; its *variants* are the ways it can run on the target: float at each runtime
precision, INT8, and INT8 with sensitive layers left in float when full INT8 costs too much.
Preparing a level trains and quantizes, so it is what runs in parallel (Ray tasks); timing is
not done here - latency is measured later in the driver, one candidate at a time, on a quiet
machine.

Each level is written to its own directory, finished by ``level.json`` written last, so a
level whose ``level.json`` exists is complete and is reused when a crashed run resumes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slimcv.pipeline.auto.config import AutoConfig

LEVEL_FILE = "level.json"
#: The float model's ONNX export in each level directory (what float variants run).
LEVEL_FLOAT_ONNX = "float.onnx"


@dataclass
class Variant:
    """One way a candidate runs on the target, with what was measured before timing.

    Attributes:
        name: ``keep0.25-int8`` style: pruning level and variant.
        keep_macs: the fraction of the baseline's MACs the level was pruned to.
        level: the level's directory in the candidates stage (``keep0.25``,
            ``keep0.25-uniform``).
        kind: ``float`` or ``int8``.
        precision: the runtime precision it is timed and evaluated at.
        artifact: the artifact directory (relative to the workspace).
        top1: top-1 on the validation split, measured on the target runtime.
        params / macs: of the pruned network (MACs at batch 1).
        size_bytes: the model file the runtime loads.
        float_layers: layers kept in float by mixed precision.
        latency_ms / p90_ms: filled in by the latency stage.
    """

    name: str
    keep_macs: float
    kind: str
    precision: str
    artifact: str
    top1: float
    params: int
    macs: int
    size_bytes: int
    float_layers: list[str] = field(default_factory=list)
    latency_ms: float | None = None
    p90_ms: float | None = None
    level: str = ""
    allocation: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LevelJob:
    """What every worker needs to prepare any level (shipped once per pool)."""

    baseline: str  # artifact directory of the trained baseline
    data: str
    config: AutoConfig
    sensitivity: dict[str, Any] | None
    baseline_top1: float
    staging: str
    threads: int


def level_dir_name(keep: float, allocation: str = "sensitivity") -> str:
    """``keep0.25`` (sensitivity allocation, and the unpruned ``keep1.00``) or
    ``keep0.25-uniform``."""
    return (
        f"keep{keep:.2f}"
        if allocation == "sensitivity" or keep >= 1.0
        else (f"keep{keep:.2f}-{allocation}")
    )


def prepare_level(job: LevelJob, level: tuple[float, str]) -> dict[str, Any]:
    """Prunes, fine-tunes and quantizes one level; never raises (a failure is recorded)."""
    import torch

    keep, allocation = level
    started = time.perf_counter()
    final = Path(job.staging) / level_dir_name(keep, allocation)
    if (final / LEVEL_FILE).is_file():
        return json.loads((final / LEVEL_FILE).read_text())
    previous = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=job.staging))
    work.chmod(0o755)  # mkdtemp makes it private; it becomes an ordinary output directory
    try:
        variants = _prepare(job, keep, allocation, work)
        result = {
            "keep_macs": keep,
            "allocation": allocation,
            "level": final.name,
            "variants": [v.to_dict() for v in variants],
            "seconds": time.perf_counter() - started,
            "worker": f"{os.uname().nodename}:{os.getpid()}",
            "error": None,
        }
    except Exception as exc:  # one failing level must not stop the others
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        result = {
            "keep_macs": keep,
            "allocation": allocation,
            "level": final.name,
            "variants": [],
            "error": last,
        }
        result["seconds"] = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)
    (work / LEVEL_FILE).write_text(json.dumps(result, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)  # complete, or absent
    return result


def _prepare(job: LevelJob, keep: float, allocation: str, work: Path) -> list[Variant]:
    import slimcv
    from slimcv.pruning import PruneConfig
    from slimcv.pruning.sensitivity import SensitivityResult

    config = job.config
    name = level_dir_name(keep, allocation)
    model_dir = Path(job.baseline)
    if keep < 1.0:
        sensitivity = (
            SensitivityResult.from_dict(job.sensitivity)
            if job.sensitivity and allocation == "sensitivity"
            else None
        )
        slimcv.prune(
            job.baseline,
            PruneConfig(
                target_macs=keep,
                allocation=allocation,
                criterion=config.criterion,
                round_to=config.round_to,
                finetune_epochs=config.finetune_epochs,
                distill=config.distill,
                sensitivity_samples=config.sensitivity_samples,
                seed=config.seed,
            ),
            data=job.data,
            out_dir=work / "float",
            sensitivity=sensitivity,
        )
        model_dir = work / "float"
    loaded = slimcv.load_model(str(model_dir))
    profile = slimcv.profile(loaded)
    float_artifact = f"{name}/float" if keep < 1.0 else "baseline"
    variants: list[Variant] = []
    onnx_path = work / LEVEL_FLOAT_ONNX
    from slimcv.exporters.onnx import export_onnx

    export_onnx(loaded.require_module("export"), onnx_path, loaded.input_shape(1))
    for variant, kind, precision in config.variants():
        if kind != "float":
            continue
        top1 = _top1_on(loaded, job.data, config.target, precision, onnx_path, config.seed)
        variants.append(
            Variant(
                f"{name}-{variant}",
                keep,
                kind,
                precision,
                float_artifact,
                top1,
                profile.params,
                profile.macs,
                onnx_path.stat().st_size,
            )
        )
    if any(kind == "int8" for _, kind, _ in config.variants()):
        variants.extend(_int8_variants(job, keep, model_dir, work, name, profile))
    for variant in variants:
        variant.level, variant.allocation = name, allocation if keep < 1.0 else "none"
    return variants


def _int8_variants(
    job: LevelJob, keep: float, model_dir: Path, work: Path, name: str, profile: Any
) -> list[Variant]:
    """Full INT8, and mixed precision when full INT8 falls out of the accuracy bound."""
    import slimcv
    from slimcv.quant import QuantizeConfig

    config = job.config
    floor = job.baseline_top1 - config.max_drop
    result = slimcv.quantize(
        str(model_dir),
        QuantizeConfig(backend=config.target, seed=config.seed),
        data=job.data,
        out_dir=work / "int8",
    )
    variants = [_int8_variant(f"{name}-int8", keep, f"{name}/int8", result, profile)]
    if config.mixed_precision and result.quant_score < floor <= result.float_score:
        mixed = slimcv.quantize(
            str(model_dir),
            QuantizeConfig(
                backend=config.target,
                seed=config.seed,
                max_drop=max(0.0, result.float_score - floor),
            ),
            data=job.data,
            out_dir=work / "int8-mixed",
        )
        variants.append(
            _int8_variant(f"{name}-int8-mixed", keep, f"{name}/int8-mixed", mixed, profile)
        )
    return variants


def _int8_variant(name: str, keep: float, artifact: str, result: Any, profile: Any) -> Variant:
    return Variant(
        name,
        keep,
        "int8",
        "f32",  # the runtime precision hint; the QDQ layers run integer kernels
        artifact,
        result.quant_score,
        profile.params,
        profile.macs,
        result.onnx_bytes,
        sorted(result.float_layers),
    )


def _top1_on(
    model: Any, data: str, target: str, precision: str, onnx_path: Path, seed: int
) -> float:
    """Top-1 (percent) of the val split, run by ``target`` at ``precision``."""
    from torch.utils.data import DataLoader

    from slimcv.data import load_data
    from slimcv.runtimes import RuntimeOptions
    from slimcv.runtimes.runner import logits_fn

    bundle = load_data(data, model.preprocess, seed=seed)
    run = logits_fn(model, target, RuntimeOptions(precision=precision), graph_path=onnx_path)
    hits = total = 0
    for images, labels in DataLoader(bundle.val, batch_size=64):
        hits += int((run(images).argmax(dim=1) == labels).sum())
        total += len(labels)
    return 100.0 * hits / total
