"""Regularized evolution (Real et al., 2019, "Regularized Evolution for Image Classifier
Architecture Search"), made multi-objective.

The population is a queue: the first ``population_size`` proposals are random; afterwards each
proposal samples ``sample_size`` members at random (a tournament), mutates the winner in one
dimension (:meth:`SearchSpace.mutate`), and every observed child joins the queue's end while
the *oldest* member leaves it, whatever its fitness. Ageing out rather than killing the worst
is the "regularization": a genotype survives only by being re-discovered through its children,
which favours architectures that train well consistently rather than by luck.

With several objectives the tournament winner is decided by Pareto rank inside the sample
(non-dominated first), ties broken by NSGA-II's crowding distance (the less crowded wins), so
the population spreads along the front instead of collapsing on one trade-off; with one
objective this reduces to picking the best value.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from slimcv.nas.pareto import crowding_distances, pareto_ranks
from slimcv.nas.space import Genotype
from slimcv.nas.strategies.base import STRATEGIES, Strategy


@STRATEGIES.register("evolution")
class RegularizedEvolution(Strategy):
    """Regularized evolution with Pareto-rank tournaments.

    Args:
        population_size: members kept alive (P in the paper).
        sample_size: tournament size (S in the paper); larger means greedier.
    """

    name = "evolution"

    def __init__(
        self,
        *args: Any,
        population_size: int = 16,
        sample_size: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if population_size < 2 or not 1 <= sample_size <= population_size:
            raise ValueError("evolution needs population_size >= 2 and 1 <= sample_size <= it")
        self.population_size = population_size
        self.sample_size = sample_size
        self.population: deque[tuple[Genotype, tuple[float, ...]]] = deque()
        self._proposed = 0

    def propose(self, n: int) -> list[Genotype]:
        proposals = []
        for _ in range(n):
            if self._proposed < self.population_size or len(self.population) < 2:
                proposals.append(self.space.sample(self.rng))
            else:
                proposals.append(self.space.mutate(self._tournament(), self.rng))
            self._proposed += 1
        return proposals

    def observe(self, genotype: Genotype, values: Sequence[float] | None) -> None:
        if values is None:  # infeasible children never become parents
            return
        self.population.append((dict(genotype), self.minimized(values)))
        if len(self.population) > self.population_size:
            self.population.popleft()  # age out the oldest, not the worst

    def _tournament(self) -> Genotype:
        sample = self.rng.sample(list(self.population), min(self.sample_size, len(self.population)))
        points = [point for _, point in sample]
        ranks = pareto_ranks(points)
        best_rank = min(ranks)
        front = [i for i, r in enumerate(ranks) if r == best_rank]
        crowding = crowding_distances([points[i] for i in front])
        winner = max(range(len(front)), key=lambda k: crowding[k])  # first of equals
        return sample[front[winner]][0]
