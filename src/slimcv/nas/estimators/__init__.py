"""Accuracy estimators for search; importing this package registers them all."""

from slimcv.nas.estimators import short_train, supernet, zero_cost  # noqa: F401
from slimcv.nas.estimators.base import ESTIMATORS, Estimate, Estimator, EstimatorContext

__all__ = ["ESTIMATORS", "Estimate", "Estimator", "EstimatorContext"]
