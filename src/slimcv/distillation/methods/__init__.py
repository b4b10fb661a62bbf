"""The distillation methods, one module each, registered in :data:`METHODS` by import."""

from slimcv.distillation.methods import (  # noqa: F401 - importing registers the methods
    attention,
    ensemble,
    feature,
    kd,
    mutual,
    self_distill,
)
from slimcv.distillation.methods.attention import AttentionConfig
from slimcv.distillation.methods.base import METHODS, DistillContext, Method
from slimcv.distillation.methods.ensemble import EnsembleConfig
from slimcv.distillation.methods.feature import FeatureConfig
from slimcv.distillation.methods.kd import KDConfig, SoftTargetObjective, teacher_objective
from slimcv.distillation.methods.mutual import MutualConfig
from slimcv.distillation.methods.self_distill import SelfConfig

__all__ = [
    "METHODS",
    "AttentionConfig",
    "DistillContext",
    "EnsembleConfig",
    "FeatureConfig",
    "KDConfig",
    "Method",
    "MutualConfig",
    "SelfConfig",
    "SoftTargetObjective",
    "teacher_objective",
]
