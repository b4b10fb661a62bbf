"""Distillation losses as plain functions of tensors (no modules, no hooks, no state)."""

from slimcv.distillation.losses.attention import attention_map, attention_transfer_loss
from slimcv.distillation.losses.feature import FEATURE_LOSSES, feature_loss
from slimcv.distillation.losses.soft_targets import soft_target_loss, soft_targets

__all__ = [
    "FEATURE_LOSSES",
    "attention_map",
    "attention_transfer_loss",
    "feature_loss",
    "soft_target_loss",
    "soft_targets",
]
