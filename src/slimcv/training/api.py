"""Supervised training (``slimcv.train``): a baseline saved as a reloadable artifact."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slimcv.data import load_data
from slimcv.errors import DataError
from slimcv.runtimes.runner import check_input_size
from slimcv.sources.artifact import check_output_dir, save_artifact
from slimcv.sources.model import LoadedModel
from slimcv.training.loop import EpochMetrics, TrainConfig, fit


@dataclass
class TrainResult:
    out_dir: str
    data: str
    image_size: int
    config: dict[str, Any]
    epochs: list[EpochMetrics]

    @property
    def final_val_top1(self) -> float:
        return self.epochs[-1].val_top1

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir,
            "data": self.data,
            "image_size": self.image_size,
            "config": self.config,
            "final_val_top1": self.final_val_top1,
            "epochs": [e.to_dict() for e in self.epochs],
        }


def train(
    model: LoadedModel,
    data: str,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    progress: bool = True,
) -> TrainResult:
    """Trains ``model`` on the data source ``data`` and saves it to ``out_dir``.

    The model's classifier must already have one output per class of the data (load it with
    ``num_classes``); its preprocessing (size, mean, std) is used for the data.

    Raises:
        DataError: the data is unlabeled, or has a different number of classes than the model.
        InputShapeError: the model cannot take the configured image size.
    """
    config = config or TrainConfig()
    inputs = [model.meta["artifact"]] if "artifact" in model.meta else []
    out = check_output_dir(out_dir, inputs)
    module = model.require_module("training")
    bundle = load_data(data, model.preprocess, seed=config.seed)
    bundle.require_labels("training")
    if bundle.num_classes != model.num_classes:
        raise DataError(
            f"{data} has {bundle.num_classes} classes but the model outputs {model.num_classes}; "
            f"pass --num-classes {bundle.num_classes}"
        )
    check_input_size(module.eval(), model.input_shape(2))
    history = fit(module, bundle, config, progress=progress)
    model.labels = bundle.classes
    metrics = {"val_top1": history[-1].val_top1, "data": data}
    args = {"data": data, "image_size": model.preprocess.image_size, **asdict(config)}
    save_artifact(out, model, command="train", args=args, metrics=metrics)
    return TrainResult(str(out), data, model.preprocess.image_size, asdict(config), history)
