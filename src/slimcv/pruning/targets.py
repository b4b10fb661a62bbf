"""Finding the pruning ratio that meets a target: a MACs fraction or a measured latency.

Both searches bisect the uniform channel ratio. MACs fall monotonically with the ratio, so the
MACs search is exact to a tolerance. Latency is measured on the named runtime at each probe
(exported and timed the way ``slimcv bench`` does), because FLOPs are not latency: the point
of a latency target is that the runtime, not a proxy, decides.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from slimcv.errors import SlimcvError

#: Ratios are searched inside these bounds: removing (almost) everything is never an answer.
MIN_RATIO, MAX_RATIO = 0.02, 0.95

PruneFn = Callable[[nn.Module, float], None]


@dataclass
class SearchStep:
    ratio: float
    value: float  # MACs fraction, or latency in ms


@dataclass
class SearchResult:
    """Where a bisection ended and how it got there."""

    ratio: float
    value: float
    target: float
    unit: str
    steps: list[SearchStep] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "ratio": self.ratio,
            "value": self.value,
            "target": self.target,
            "unit": self.unit,
            "steps": [{"ratio": s.ratio, "value": s.value} for s in self.steps],
        }


def bisect_ratio(
    measure: Callable[[float], float],
    target: float,
    *,
    unit: str,
    tolerance: float,
    max_steps: int = 10,
) -> SearchResult:
    """Finds the smallest ratio whose ``measure`` is at or below ``target`` (within tolerance).

    ``measure`` must fall (noisily, for latency) as the ratio grows. The search stops early
    once a probe lands within ``tolerance`` of the target.

    Raises:
        SlimcvError: the target is out of reach even at the largest ratio.
    """
    steps: list[SearchStep] = []

    def probe(ratio: float) -> float:
        value = measure(ratio)
        steps.append(SearchStep(ratio, value))
        return value

    at_max = probe(MAX_RATIO)
    if at_max > target * (1 + tolerance):
        raise SlimcvError(
            f"the target {target:g} {unit} cannot be reached: pruning {MAX_RATIO:.0%} of the "
            f"channels still gives {at_max:.4g} {unit}"
        )
    low, high = MIN_RATIO, MAX_RATIO
    best = SearchResult(MAX_RATIO, at_max, target, unit, steps)
    for _ in range(max_steps):
        mid = (low + high) / 2
        value = probe(mid)
        if value <= target * (1 + tolerance):
            high = mid
            best = SearchResult(mid, value, target, unit, steps)
            if value >= target * (1 - tolerance):
                break
        else:
            low = mid
    return best


def macs_fraction_fn(
    module: nn.Module, input_shape: tuple[int, ...], prune_copy: PruneFn
) -> Callable[[float], float]:
    """A function ratio -> MACs of the pruned copy over MACs of ``module``."""
    from slimcv.analysis import profile_model

    base = profile_model(module, input_shape).macs

    def measure(ratio: float) -> float:
        trial = copy.deepcopy(module)
        prune_copy(trial, ratio)
        return profile_model(trial, input_shape).macs / base

    return measure


def latency_fn(
    module: nn.Module,
    input_shape: tuple[int, ...],
    prune_copy: PruneFn,
    backend: str,
    threads: int | None,
    min_time_s: float = 1.0,
) -> Callable[[float], float]:
    """A function ratio -> median batch-1 latency (ms) of the pruned copy on ``backend``."""

    def measure(ratio: float) -> float:
        trial = copy.deepcopy(module)
        prune_copy(trial, ratio)
        return measure_latency_ms(trial, input_shape, backend, threads, min_time_s)

    return measure


def measure_latency_ms(
    module: nn.Module,
    input_shape: tuple[int, ...],
    backend: str,
    threads: int | None,
    min_time_s: float = 1.0,
) -> float:
    """Median batch-1 latency (ms) of ``module`` on ``backend``, measured as ``bench`` does."""
    from slimcv.measure import BenchConfig, bench
    from slimcv.sources.model import LoadedModel, Preprocess

    model = LoadedModel(
        source="<pruning trial>",
        num_classes=0,
        preprocess=Preprocess(image_size=input_shape[-1]),
        module=module.eval(),
    )
    config = BenchConfig(
        backends=(backend,),
        batches=(1,),
        threads=threads,
        warmup_s=0.5,
        min_time_s=min_time_s,
        memory=False,
        energy=False,
    )
    [record] = bench(model, config, progress=False).records
    if record.status != "ok" or record.median_ms is None:
        raise SlimcvError(f"cannot measure latency on {backend}: {record.reason}")
    return record.median_ms
