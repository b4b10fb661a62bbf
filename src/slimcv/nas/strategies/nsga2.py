"""NSGA-II (Deb et al., 2002) through Optuna's :class:`~optuna.samplers.NSGAIISampler`.

Each space dimension is one categorical parameter; Optuna's ask/tell interface lets the search
ask a whole batch before telling any result, so batches run in parallel. Optuna handles
selection (non-dominated sorting plus crowding distance), uniform crossover and mutation;
infeasible or failed genotypes are told as failed trials, which NSGA-II ignores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slimcv.nas.space import Genotype
from slimcv.nas.strategies.base import STRATEGIES, Strategy, genotype_key


@STRATEGIES.register("nsga2")
class NSGA2(Strategy):
    """Multi-objective evolution with Optuna's NSGA-II sampler.

    Args:
        population_size: individuals per generation; the first generation is random.
        mutation_prob: chance that each parameter is resampled in a child (Optuna's default,
            ``1 / number of dimensions``, when ``None``).
    """

    name = "nsga2"

    def __init__(
        self,
        *args: Any,
        population_size: int = 16,
        mutation_prob: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.NSGAIISampler(
            population_size=population_size,
            mutation_prob=mutation_prob,
            seed=self.rng.randrange(2**31),
        )
        self.study = optuna.create_study(
            directions=[o.direction for o in self.objectives], sampler=sampler
        )
        self._pending: dict[tuple[Any, ...], list[Any]] = {}

    def propose(self, n: int) -> list[Genotype]:
        proposals = []
        for _ in range(n):
            trial = self.study.ask()
            genotype = {
                d.name: trial.suggest_categorical(d.name, list(d.choices))
                for d in self.space.dimensions
            }
            self._pending.setdefault(genotype_key(self.space, genotype), []).append(trial)
            proposals.append(genotype)
        return proposals

    def observe(self, genotype: Genotype, values: Sequence[float] | None) -> None:
        from optuna.trial import TrialState

        waiting = self._pending.get(genotype_key(self.space, genotype))
        if not waiting:
            return  # not one of ours (e.g. a baseline); nothing to tell
        trial = waiting.pop(0)
        if values is None:
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, [float(v) for v in values])
