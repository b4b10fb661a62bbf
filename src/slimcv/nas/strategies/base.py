"""What a search strategy is: something that proposes genotypes and learns from their figures.

Strategies see only genotypes and objective values, never models, so one strategy serves every
space and estimator. They work in batches (``propose(n)`` then one ``observe`` per proposal) so
that the runner can evaluate a batch in parallel.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from slimcv.nas.objectives import Objective
from slimcv.nas.space import Genotype, SearchSpace
from slimcv.registry import Registry


def genotype_key(space: SearchSpace, genotype: Genotype) -> tuple[Any, ...]:
    """A hashable form of ``genotype`` (its choices in dimension order)."""
    return tuple(genotype[d.name] for d in space.dimensions)


class Strategy:
    """Base class; subclasses register in :data:`STRATEGIES`.

    Args:
        space: the space to search.
        objectives: what is optimised; ``observe`` receives values in this order.
        seed: seeds every random choice, so a search repeats.
    """

    name = ""

    def __init__(
        self, space: SearchSpace, objectives: Sequence[Objective], seed: int = 0, **options: Any
    ) -> None:
        if options:
            raise TypeError(f"{self.name} takes no options {sorted(options)}")
        self.space = space
        self.objectives = tuple(objectives)
        self.rng = random.Random(seed)

    def propose(self, n: int) -> list[Genotype]:
        """``n`` genotypes to evaluate next (duplicates possible; the runner caches)."""
        raise NotImplementedError

    def observe(self, genotype: Genotype, values: Sequence[float] | None) -> None:
        """The objective values of a proposed genotype, in :attr:`objectives` order, or
        ``None`` when it is infeasible (over the latency budget) or failed."""

    def minimized(self, values: Sequence[float]) -> tuple[float, ...]:
        """``values`` with maximised objectives negated, so lower is better everywhere."""
        return tuple(o.minimized(v) for o, v in zip(self.objectives, values, strict=True))


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
