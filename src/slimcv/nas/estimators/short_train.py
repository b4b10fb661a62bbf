"""``short-train``: train each candidate for a few epochs and report its val top-1.

The highest-fidelity estimator and the slowest: it runs slimcv's one training engine
(:func:`slimcv.training.loop.fit`) on the data's train split at the candidate's resolution, so
a few epochs rank architectures the way full training would far better than any proxy (though
short training favours networks that learn fast, usually the smaller ones). The trained weights
come back in :attr:`Estimate.state_dict`, so a front member is saved without retraining.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from slimcv.data import DataBundle, load_data
from slimcv.nas.estimators.base import ESTIMATORS, Estimate, Estimator, EstimatorContext
from slimcv.nas.space import Candidate
from slimcv.training.loop import TrainConfig, fit


@ESTIMATORS.register("short-train")
class ShortTrain(Estimator):
    """Trains every candidate from the same seeded start for ``epochs`` epochs.

    Options (``EstimatorContext.options``): ``epochs`` (default 2), ``batch_size`` (32),
    ``lr`` (5e-3), ``device`` (``auto``). Training is seeded by the context's seed, so the
    same candidate scores the same in any worker.
    """

    name = "short-train"
    is_accuracy = True

    def __init__(self, context: EstimatorContext) -> None:
        super().__init__(context)
        options = context.options
        self.config = TrainConfig(
            epochs=int(options.get("epochs", 2)),
            batch_size=int(options.get("batch_size", 32)),
            lr=float(options.get("lr", 5e-3)),
            seed=context.seed,
            device=str(options.get("device", "auto")),
        )
        self._data: dict[int, DataBundle] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_data"] = {}  # each worker loads its own copy
        return state

    def bundle(self, image_size: int) -> DataBundle:
        """The data at ``image_size`` pixels (loaded once per resolution per worker)."""
        if image_size not in self._data:
            self._data[image_size] = load_data(
                self.context.data, image_size=image_size, seed=self.context.seed
            )
        return self._data[image_size]

    def evaluate(self, candidate: Candidate) -> Estimate:
        start = time.perf_counter()
        data = self.bundle(candidate.image_size)
        # channels_last: PyTorch's CPU backward of NCHW depthwise convolutions has slow paths
        # (a 5x5 one measured 48 s for a batch where channels_last took 0.08 s).
        model = self.build(candidate).to(memory_format=torch.channels_last)
        history = fit(model, data, self.config, progress=False, description=candidate.key)
        last = history[-1]
        state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        return Estimate(
            score=last.val_top1,
            is_accuracy=True,
            seconds=time.perf_counter() - start,
            state_dict=state,
            details={
                "epochs": last.epoch,
                "train_top1": last.train_top1,
                "val_loss": last.val_loss,
            },
        )
