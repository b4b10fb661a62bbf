"""Knowledge distillation: a small student learns from a teacher (``slimcv.distill``).

=================  ==========================================================================
``losses/``        the losses as functions of tensors: soft targets, features, attention
``wiring/``        forward-hook layer reading, 1x1 adapters, frozen teachers
``methods/``       one module per method (kd, feature, attention, ensemble, self, mutual),
                   each a config dataclass plus an :class:`~slimcv.training.Objective`
``cache/``         teacher logits cached on disk, keyed by weights + data + transform
``api.py``         the ``distill`` entry point
``students.py``    small student networks usable as model sources
=================  ==========================================================================

The package is ``distillation``, not ``distill``: a subpackage called like the public function
``slimcv.distill`` would replace it on the ``slimcv`` module once imported (see
docs/architecture.md).
"""

from slimcv.distillation.api import DistillConfig, DistillResult, distill
from slimcv.distillation.methods import (
    METHODS,
    AttentionConfig,
    EnsembleConfig,
    FeatureConfig,
    KDConfig,
    MutualConfig,
    SelfConfig,
    teacher_objective,
)

__all__ = [
    "METHODS",
    "AttentionConfig",
    "DistillConfig",
    "DistillResult",
    "EnsembleConfig",
    "FeatureConfig",
    "KDConfig",
    "MutualConfig",
    "SelfConfig",
    "distill",
    "teacher_objective",
]
