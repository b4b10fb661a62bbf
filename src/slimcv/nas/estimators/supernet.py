"""The ``supernet`` estimator: train one weight-sharing network, then score candidates by slicing.

:meth:`SupernetEstimator.prepare` trains the supernet by progressive shrinking (see
:mod:`slimcv.nas.supernet.shrinking`) in the driver, or reuses the one stored in
``work_dir`` for the same space, data, classes and training settings. Workers load the stored
weights lazily (the estimator object itself stays small, so it pickles for Ray) and evaluate a
candidate by extracting its sub-network, re-estimating its BatchNorm statistics on a few
training images and measuring val top-1 at the candidate's resolution: a fraction of a second
to a few seconds instead of minutes of training.

Options (``context.options``): ``supernet`` - a dict of
:class:`~slimcv.nas.supernet.shrinking.ShrinkingConfig` fields (e.g. ``{"epochs": [4, 2, 2,
3]}``); ``bn_images`` - training images for BatchNorm re-estimation (default 512).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slimcv.errors import SearchError
from slimcv.nas.estimators.base import ESTIMATORS, Estimate, Estimator, EstimatorContext
from slimcv.nas.space import Candidate, SearchSpace


@contextmanager
def _threads(count: int) -> Iterator[None]:
    """Runs torch on ``count`` intra-op threads, restoring the previous count afterwards.

    On a busy machine more threads than free cores make small convolutions 10-30x slower
    (the OpenMP workers wait on each other), so the estimator keeps to the context's share.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@ESTIMATORS.register("supernet")
class SupernetEstimator(Estimator):
    """Scores a candidate by its sub-network of a once-trained supernet (Once-for-All)."""

    name = "supernet"
    is_accuracy = True

    def __init__(self, context: EstimatorContext) -> None:
        super().__init__(context)
        from slimcv.nas.supernet.shrinking import ShrinkingConfig

        options = dict(context.options.get("supernet") or {})
        options.setdefault("seed", context.seed)
        try:
            self.config = ShrinkingConfig(**options)
        except TypeError as exc:
            raise SearchError(f"bad supernet option: {exc}") from None
        self.bn_images = int(context.options.get("bn_images", 512))
        if self.bn_images < 1:
            raise SearchError(f"bn_images must be at least 1, got {self.bn_images}")
        self.space: SearchSpace | None = None
        self.directory: Path | None = None
        self.info: dict[str, Any] = {}
        self._cache: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Workers reload the weights and data from disk; only paths and settings travel.
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def prepare(self, space: SearchSpace) -> None:
        """Trains the supernet (or loads the stored one) and keeps it for this process."""
        from slimcv.nas.supernet.shrinking import prepare_supernet

        directory = self.context.work_dir
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="slimcv-supernet-"))
        self.directory = Path(directory)
        self.space = space
        with _threads(self.context.threads):
            supernet, self.info = prepare_supernet(
                self.directory, space, self.context.data, self.context.num_classes, self.config
            )
        self._cache["supernet"] = supernet

    def evaluate(self, candidate: Candidate) -> Estimate:
        """Extracts the candidate, re-estimates its BN statistics, measures val top-1."""
        from slimcv.nas.supernet.elastic import extract
        from slimcv.nas.supernet.shrinking import calibrated_top1

        start = time.perf_counter()
        with _threads(self.context.threads):
            supernet = self._supernet()
            network = extract(supernet, candidate)
            splits = self._splits(candidate.image_size)
            top1 = calibrated_top1(
                network,
                splits,
                candidate.image_size,
                bn_images=self.bn_images,
                seed=self.context.seed,
            )
        state = {k: v.detach().contiguous().clone() for k, v in network.state_dict().items()}
        return Estimate(
            score=top1,
            is_accuracy=True,
            seconds=time.perf_counter() - start,
            state_dict=state,
            details={"bn_images": self.bn_images, "supernet_hash": self.info.get("hash")},
        )

    def _supernet(self) -> Any:
        if "supernet" not in self._cache:
            from slimcv.nas.supernet.shrinking import config_hash, load_supernet

            if self.space is None or self.directory is None:
                raise SearchError("the supernet estimator was not prepared (call prepare first)")
            digest = config_hash(
                self.space, self.context.data, self.context.num_classes, self.config
            )
            loaded = load_supernet(self.directory, self.space, self.context.num_classes, digest)
            if loaded is None:
                raise SearchError(f"no trained supernet for this search in {self.directory}")
            self._cache["supernet"], self.info = loaded
        return self._cache["supernet"]

    def _splits(self, resolution: int) -> Any:
        from slimcv.nas.supernet.shrinking import load_splits

        key = f"data{resolution}"
        if key not in self._cache:
            self._cache[key] = load_splits(self.context.data, (resolution,), self.config.seed)
        return self._cache[key]
