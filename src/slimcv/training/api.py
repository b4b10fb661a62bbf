"""Supervised training (``slimcv.train``): a baseline saved as a reloadable artifact.

While it trains, ``OUT/checkpoints/`` holds ``last.pt`` (rewritten atomically after every
epoch), ``best.pt`` (with early stopping) and ``metrics.json``; the final artifact that
replaces ``OUT`` carries them along (hard links, no copy), so ``--resume`` works after a crash
at any moment, including during the final save.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slimcv.data import load_data
from slimcv.errors import ArtifactError, CheckpointError, DataError
from slimcv.runtimes.runner import check_input_size
from slimcv.sources.artifact import MANIFEST, check_output_dir, save_artifact
from slimcv.sources.model import LoadedModel
from slimcv.training.checkpoint import LAST
from slimcv.training.distributed import env_context
from slimcv.training.loop import Checkpointing, EpochMetrics, TrainConfig, best_epoch, fit

CHECKPOINTS = "checkpoints"


@dataclass
class TrainResult:
    out_dir: str
    data: str
    image_size: int
    config: dict[str, Any]
    epochs: list[EpochMetrics]

    @property
    def final_epoch(self) -> int:
        """The epoch whose weights were saved: the best one with early stopping, else the last."""
        if self.config.get("patience") is not None:
            return best_epoch(self.epochs)
        return self.epochs[-1].epoch

    @property
    def final_val_top1(self) -> float:
        return next(e.val_top1 for e in self.epochs if e.epoch == self.final_epoch)

    @property
    def stopped_early(self) -> bool:
        return self.epochs[-1].epoch < int(self.config.get("epochs", 0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir,
            "data": self.data,
            "image_size": self.image_size,
            "config": self.config,
            "final_val_top1": self.final_val_top1,
            "final_epoch": self.final_epoch,
            "stopped_early": self.stopped_early,
            "checkpoints": str(Path(self.out_dir) / CHECKPOINTS),
            "epochs": [e.to_dict() for e in self.epochs],
        }


def train(
    model: LoadedModel,
    data: str,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
    resume: bool = False,
) -> TrainResult:
    """Trains ``model`` on the data source ``data`` and saves it to ``out_dir``.

    The model's classifier must already have one output per class of the data (load it with
    ``num_classes``); its preprocessing (size, mean, std) is used for the data. A checkpoint
    is written to ``out_dir/checkpoints/`` after every epoch. Under ``torchrun`` every
    process calls this; only rank 0 writes.

    Args:
        resume: continue the interrupted run in ``out_dir`` from its last checkpoint, with the
            same model source, data and config (the optimizer, schedule, random states and data
            order continue exactly).

    Raises:
        DataError: the data is unlabeled, or has a different number of classes than the model.
        InputShapeError: the model cannot take the configured image size.
        CheckpointError: ``resume`` without a checkpoint in ``out_dir``, or with one from
            another model, data or config; nothing is written.
        ArtifactError: ``out_dir`` holds an unfinished run and ``resume`` is not set.
    """
    config = config or TrainConfig()
    inputs = [model.meta["artifact"]] if "artifact" in model.meta else []
    out = _check_out(out_dir, inputs, resume)
    module = model.require_module("training")
    bundle = load_data(data, model.preprocess, seed=config.seed)
    bundle.require_labels("training")
    if bundle.num_classes != model.num_classes:
        raise DataError(
            f"{data} has {bundle.num_classes} classes but the model outputs {model.num_classes}; "
            f"pass --num-classes {bundle.num_classes}"
        )
    check_input_size(module.eval(), model.input_shape(2))
    identity = {
        "source": model.source,
        "num_classes": model.num_classes,
        "image_size": model.preprocess.image_size,
        "data": data,
        "architecture_changes": model.meta.get("architecture_changes", []),
    }
    checkpoints = Checkpointing(out / CHECKPOINTS, resume=resume, identity=identity)
    history = fit(module, bundle, config, progress=progress, checkpoints=checkpoints)
    model.labels = bundle.classes
    result = TrainResult(str(out), data, model.preprocess.image_size, asdict(config), history)
    if env_context().is_main:
        metrics = {"val_top1": result.final_val_top1, "data": data, "epoch": result.final_epoch}
        args = {"data": data, "image_size": model.preprocess.image_size, **asdict(config)}
        save_artifact(
            out,
            model,
            command="train",
            args=args,
            metrics=metrics,
            write_extra=lambda tmp, _: _carry_checkpoints(out / CHECKPOINTS, tmp / CHECKPOINTS),
        )
    return result


def _check_out(out_dir: str | Path, inputs: list[str], resume: bool) -> Path:
    out = Path(out_dir).resolve()
    last = out / CHECKPOINTS / LAST
    if resume:
        if not last.is_file():
            raise CheckpointError(f"--resume: no checkpoint in {out / CHECKPOINTS} to resume from")
        for item in inputs:
            src = Path(item).resolve()
            if src == out or out in src.parents:
                raise ArtifactError(f"--out {out_dir} would overwrite the input {item}")
        return out
    if last.is_file() and not (out / MANIFEST).is_file():
        raise ArtifactError(
            f"--out {out_dir} holds an unfinished run; add --resume to continue it, "
            "or choose another --out"
        )
    return check_output_dir(out, inputs)


def _carry_checkpoints(source: Path, dest: Path) -> None:
    """Hard-links (or copies) the run's checkpoints into the artifact being staged."""
    if not source.is_dir():
        return
    dest.mkdir()
    for path in source.iterdir():
        if path.is_file() and not path.name.startswith("."):
            try:
                os.link(path, dest / path.name)
            except OSError:
                shutil.copy2(path, dest / path.name)
