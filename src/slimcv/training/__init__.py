"""Training: the shared loop and the supervised ``train`` command."""

from slimcv.training.api import TrainResult, train
from slimcv.training.loop import EpochMetrics, TrainConfig, fit, seed_everything
from slimcv.training.objective import CrossEntropyObjective, Objective, StepOutput

__all__ = [
    "CrossEntropyObjective",
    "EpochMetrics",
    "Objective",
    "StepOutput",
    "TrainConfig",
    "TrainResult",
    "fit",
    "seed_everything",
    "train",
]
