"""Training: the shared loop and the supervised ``train`` command."""

from slimcv.training.api import TrainResult, train
from slimcv.training.loop import EpochMetrics, TrainConfig, fit, seed_everything

__all__ = ["EpochMetrics", "TrainConfig", "TrainResult", "fit", "seed_everything", "train"]
