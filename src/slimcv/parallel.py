"""Runs one function over many items: in this process, or in parallel as Ray tasks.

Both the architecture search (one item = one candidate network) and auto mode (one item = one
pruning level with its quantized variants) hand work to a :class:`TaskPool`. ``workers=1``
without a Ray address runs items here, one after another, with no Ray at all; otherwise each
item is a ``ray.remote`` task (one CPU each) and results are collected with ``ray.wait`` as
tasks finish. There is no scheduler of our own: Ray places the tasks. The function and its
shared arguments must pickle.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class TaskPool(Generic[Item, Result]):
    """Calls ``fn(shared, item)`` for every item; use as a context manager (starts/stops Ray).

    Args:
        fn: a module-level function (Ray ships it by reference) that never raises for one bad
            item if the caller wants the others to go on.
        shared: the argument every call gets; put in Ray's object store once per pool.
        workers: items run at once; 1 without ``address`` runs in this process.
        address: an existing Ray cluster (``ray://host:10001`` or ``host:6379``); otherwise a
            local Ray instance with ``workers`` CPUs is started and stopped with the pool.
    """

    def __init__(
        self,
        fn: Callable[[Any, Item], Result],
        shared: Any,
        *,
        workers: int = 1,
        address: str | None = None,
    ) -> None:
        self.fn = fn
        self.shared = shared
        self.workers = workers
        self.address = address
        self.uses_ray = address is not None or workers > 1
        self._started_ray = False
        self._remote: Any = None
        self._shared_ref: Any = None

    def __enter__(self) -> TaskPool[Item, Result]:
        if self.uses_ray:
            self._start_ray()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started_ray:
            import ray

            ray.shutdown()
            self._started_ray = False

    def _start_ray(self) -> None:
        import ray

        # No usage report leaves the machine (slimcv runs offline and quietly).
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if not ray.is_initialized():
            common = {"logging_level": logging.ERROR, "log_to_driver": False}
            if self.address is not None:
                ray.init(address=self.address, **common)
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False, **common)
            self._started_ray = True
        self._remote = ray.remote(num_cpus=1, max_retries=0)(self.fn)
        self._shared_ref = ray.put(self.shared)

    def run(
        self,
        items: Sequence[Item],
        on_done: Callable[[int, Result], None] | None = None,
    ) -> list[Result]:
        """Returns the results in the order of ``items``.

        ``on_done(index, result)`` is called as each item finishes (in finishing order).
        """
        if not self.uses_ray:
            results = []
            for index, item in enumerate(items):
                result = self.fn(self.shared, item)
                results.append(result)
                if on_done is not None:
                    on_done(index, result)
            return results
        import ray

        refs = [self._remote.remote(self._shared_ref, item) for item in items]
        position = {ref: i for i, ref in enumerate(refs)}
        collected: list[Result | None] = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                result = ray.get(ref)
                collected[position[ref]] = result
                if on_done is not None:
                    on_done(position[ref], result)
        return [r for r in collected if r is not None]
