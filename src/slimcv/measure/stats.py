"""Latency statistics from per-call timings.

The median and the interquartile range lead because a shared machine adds one-sided noise (a
neighbour's burst only ever makes a call slower); the mean and standard deviation are kept so
that noise stays visible rather than hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from slimcv.errors import SlimcvError


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one timed loop, in milliseconds per call.

    Percentiles use linear interpolation between order statistics (numpy's default, Hyndman
    and Fan type 7), so they are exact and reproducible for a given set of samples.

    Attributes:
        median_ms: 50th percentile.
        p90_ms: 90th percentile.
        iqr_ms: 75th minus 25th percentile.
        mean_ms: arithmetic mean.
        min_ms: fastest call.
        std_ms: sample standard deviation (0 for a single call).
        runs: number of timed calls.
    """

    median_ms: float
    p90_ms: float
    iqr_ms: float
    mean_ms: float
    min_ms: float
    std_ms: float
    runs: int

    @classmethod
    def from_ns(cls, samples_ns: Sequence[int] | np.ndarray) -> LatencyStats:
        """Summarises per-call durations given in nanoseconds (``perf_counter_ns`` deltas).

        Raises:
            SlimcvError: no samples.
        """
        ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
        if ms.size == 0:
            raise SlimcvError("no timed calls to summarise")
        q25, median, q75, p90 = np.percentile(ms, [25, 50, 75, 90])
        return cls(
            median_ms=float(median),
            p90_ms=float(p90),
            iqr_ms=float(q75 - q25),
            mean_ms=float(ms.mean()),
            min_ms=float(ms.min()),
            std_ms=float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
            runs=int(ms.size),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
