"""Evaluates batches of candidates: in this process, or in parallel as Ray tasks.

One trial = build the candidate, count its params/MACs/size, and score it with the estimator.
``workers=1`` without a Ray address runs trials here, one after another (no Ray at all);
otherwise every trial is a ``ray.remote`` task and the batch is collected with ``ray.wait`` as
tasks finish, so progress moves trial by trial (see :class:`slimcv.parallel.TaskPool`). Every
task limits torch to ``threads`` intra-op threads so that ``workers`` tasks share the machine
instead of fighting over it.

The estimator is shipped once per batch-runner with ``ray.put`` and must pickle; estimators
drop their data caches when pickled and reload data in each worker process.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from slimcv.nas.estimators.base import Estimate, Estimator
from slimcv.nas.space import Candidate
from slimcv.parallel import TaskPool


@dataclass
class TrialOutcome:
    """What one trial produced, in the worker that ran it.

    Attributes:
        estimate: the estimator's verdict, ``None`` if the trial failed.
        params: parameters of the built network.
        macs: multiply-accumulates at batch 1 and the candidate's resolution.
        size_bytes: FP32 weight size.
        seconds: wall time of the whole trial (profile and estimate).
        worker: ``host:pid`` of the process that ran it.
        error: one line saying why the trial failed, ``None`` on success.
    """

    estimate: Estimate | None
    params: int
    macs: int
    size_bytes: int
    seconds: float
    worker: str
    error: str | None = None


def run_trial(
    estimator: Estimator, candidate: Candidate, num_classes: int, threads: int
) -> TrialOutcome:
    """One trial; never raises, so one bad candidate cannot stop a search."""
    import torch

    from slimcv.analysis.profile import profile_model
    from slimcv.arch import build_network

    start = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    params = macs = size = 0
    try:
        net = build_network(candidate.spec, num_classes)
        profile = profile_model(net, (1, 3, candidate.image_size, candidate.image_size))
        params, macs, size = profile.params, profile.macs, profile.size_bytes
        estimate = estimator.evaluate(candidate)
    except Exception as exc:  # a failing candidate is recorded, not fatal
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return TrialOutcome(None, params, macs, size, time.perf_counter() - start, worker, last)
    finally:
        torch.set_num_threads(previous)
    return TrialOutcome(estimate, params, macs, size, time.perf_counter() - start, worker)


def _trial(shared: tuple[Estimator, int, int], candidate: Candidate) -> TrialOutcome:
    estimator, num_classes, threads = shared
    return run_trial(estimator, candidate, num_classes, threads)


class TrialRunner:
    """Runs batches of trials; use as a context manager (it starts and stops Ray).

    Args:
        estimator: prepared estimator (``prepare`` already ran in the driver).
        num_classes: classifier outputs of every candidate.
        workers: trials run at once; 1 without ``address`` runs in this process.
        address: an existing Ray cluster (``ray://host:10001`` or ``host:6379``); otherwise a
            local Ray instance with ``workers`` CPUs is started and stopped with the runner.
        threads: torch intra-op threads per trial.
    """

    def __init__(
        self,
        estimator: Estimator,
        num_classes: int,
        *,
        workers: int = 1,
        address: str | None = None,
        threads: int = 1,
    ) -> None:
        self.estimator = estimator
        self.num_classes = num_classes
        self.workers = workers
        self.address = address
        self.threads = threads
        self._pool: TaskPool[Candidate, TrialOutcome] = TaskPool(
            _trial, (estimator, num_classes, threads), workers=workers, address=address
        )
        self.uses_ray = self._pool.uses_ray

    def __enter__(self) -> TrialRunner:
        self._pool.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.__exit__(*exc)

    def run(
        self,
        candidates: Sequence[Candidate],
        on_done: Callable[[int, TrialOutcome], None] | None = None,
    ) -> list[TrialOutcome]:
        """Evaluates ``candidates`` and returns their outcomes in the same order.

        ``on_done(index, outcome)`` is called as each trial finishes (in finishing order).
        """
        return self._pool.run(candidates, on_done)
