"""Training: the shared loop and the supervised ``train`` command."""

from slimcv.training.api import TrainResult, train
from slimcv.training.loop import (
    Checkpointing,
    EpochMetrics,
    TrainConfig,
    best_epoch,
    fit,
    seed_everything,
)
from slimcv.training.objective import CrossEntropyObjective, Objective, StepOutput

__all__ = [
    "Checkpointing",
    "CrossEntropyObjective",
    "EpochMetrics",
    "Objective",
    "StepOutput",
    "TrainConfig",
    "TrainResult",
    "best_epoch",
    "fit",
    "seed_everything",
    "train",
]
