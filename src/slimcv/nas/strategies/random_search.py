"""Random search: uniform samples of the space, the baseline every strategy must beat."""

from __future__ import annotations

from typing import Any

from slimcv.nas.space import Genotype
from slimcv.nas.strategies.base import STRATEGIES, Strategy, genotype_key


@STRATEGIES.register("random")
class RandomSearch(Strategy):
    """Uniform samples; a genotype already proposed is redrawn (a few times) so the budget is
    not spent on repeats when the space is large enough to avoid them."""

    name = "random"
    retries = 20

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._seen: set[tuple[object, ...]] = set()

    def propose(self, n: int) -> list[Genotype]:
        proposals = []
        for _ in range(n):
            genotype = self.space.sample(self.rng)
            for _ in range(self.retries):
                if genotype_key(self.space, genotype) not in self._seen:
                    break
                genotype = self.space.sample(self.rng)
            self._seen.add(genotype_key(self.space, genotype))
            proposals.append(genotype)
        return proposals
