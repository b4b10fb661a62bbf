"""What an accuracy estimator is: something that scores a candidate architecture.

Estimators differ in cost and fidelity: zero-cost proxies score an untrained network in a
second, short training trains each candidate for a few epochs, and a weight-sharing supernet is
trained once and then scores every sub-network without training it. Search strategies and the
Ray runner see only this interface.

An estimator is created in the driver, :meth:`Estimator.prepare` runs once there (train the
supernet, load data), and then the object is shipped to workers (it must pickle) where
:meth:`Estimator.evaluate` runs once per candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from slimcv.nas.space import Candidate, SearchSpace
from slimcv.registry import Registry


@dataclass(frozen=True)
class EstimatorContext:
    """What every estimator needs to know about the task.

    Attributes:
        data: data source string (``digits``, an image folder...), loaded in each worker.
        num_classes: classifier outputs.
        image_size: the data's native side; candidates may ask for a smaller resolution.
        seed: seeds data splits and initialisation, so runs repeat.
        work_dir: where an estimator may keep files (a trained supernet, caches).
        threads: torch intra-op threads a worker may use.
    """

    data: str
    num_classes: int
    image_size: int
    seed: int = 0
    work_dir: Path | None = None
    threads: int = 1
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Estimate:
    """An estimator's verdict on one candidate.

    Attributes:
        score: higher is better; top-1 in percent for ``short-train`` and ``supernet``, a
            proxy value for zero-cost estimators (``is_accuracy`` False).
        is_accuracy: whether ``score`` is a measured top-1 on held-out data.
        seconds: wall time spent on this candidate.
        state_dict: trained weights for the candidate's :class:`~slimcv.arch.SpecNet`, when the
            estimator produced some (kept so a front member can be saved as an artifact).
    """

    score: float
    is_accuracy: bool
    seconds: float
    state_dict: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Estimator:
    """Base class; subclasses register in :data:`ESTIMATORS` by name."""

    name = ""
    is_accuracy = True

    def __init__(self, context: EstimatorContext) -> None:
        self.context = context

    def prepare(self, space: SearchSpace) -> None:
        """One-time work in the driver before any candidate is evaluated."""

    def evaluate(self, candidate: Candidate) -> Estimate:
        raise NotImplementedError

    def build(self, candidate: Candidate) -> nn.Module:
        """The candidate's model, freshly initialised (seeded by the context)."""
        import torch

        from slimcv.arch import build_network

        torch.manual_seed(self.context.seed)
        return build_network(candidate.spec, self.context.num_classes)


ESTIMATORS: Registry[type[Estimator]] = Registry("estimator")
