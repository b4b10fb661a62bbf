import random
import statistics

import pytest

from slimcv.nas.objectives import parse_objectives
from slimcv.nas.space import get_space
from slimcv.nas.strategies import STRATEGIES, genotype_key
from slimcv.nas.strategies.evolution import RegularizedEvolution

OBJECTIVES = parse_objectives("accuracy,macs")


def toy_values(space, genotype):
    """A toy trade-off where 'accuracy' peaks at the last choice of every dimension while
    'macs' prefers small widths only: the best of the sum is one corner of the space."""
    score = sum(d.choices.index(genotype[d.name]) / (len(d.choices) - 1) for d in space.dimensions)
    width = space.dimensions[1].choices.index(genotype["width"])
    return [score, 1.0 + width]


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_proposes_valid_genotypes_in_batches(name):
    space = get_space("mobilenetv2", 32)
    strategy = STRATEGIES.get(name)(space, OBJECTIVES, seed=3)
    seen = 0
    for _ in range(5):
        batch = strategy.propose(4)
        assert len(batch) == 4
        for genotype in batch:
            space.check(genotype)  # raises on an invalid point
            space.decode(genotype)
            strategy.observe(genotype, toy_values(space, genotype))
            seen += 1
    assert seen == 20


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_is_seeded(name):
    space = get_space("mobilenetv2", 32)

    def run(seed):
        strategy = STRATEGIES.get(name)(space, OBJECTIVES, seed=seed)
        keys = []
        for _ in range(4):
            for genotype in strategy.propose(3):
                keys.append(genotype_key(space, genotype))
                strategy.observe(genotype, toy_values(space, genotype))
        return keys

    assert run(1) == run(1)
    assert run(1) != run(2)


def _best_after(name, seed, evaluations=160):
    space = get_space("mobilenetv2", 32)
    options = {"population_size": 16} if name != "random" else {}
    strategy = STRATEGIES.get(name)(space, parse_objectives("accuracy"), seed=seed, **options)
    best = 0.0
    for _ in range(evaluations // 8):
        for genotype in strategy.propose(8):
            value = toy_values(space, genotype)[0]
            best = max(best, value)
            strategy.observe(genotype, [value])
    return best


@pytest.mark.parametrize("name", ["nsga2", "evolution"])
def test_evolutionary_strategies_beat_random_on_a_toy_objective(name):
    seeds = range(3)
    random_best = statistics.mean(_best_after("random", s) for s in seeds)
    evolved_best = statistics.mean(_best_after(name, s) for s in seeds)
    # 18 dimensions, the optimum is 18; random search stalls far below it.
    assert evolved_best > random_best + 1.0, (evolved_best, random_best)


def test_regularized_evolution_ages_out_the_oldest_not_the_worst():
    space = get_space("mobilenetv2", 32)
    strategy = RegularizedEvolution(space, OBJECTIVES, seed=0, population_size=3, sample_size=2)
    rng = random.Random(0)
    genotypes = [space.sample(rng) for _ in range(4)]
    values = [[99.0, 1.0], [1.0, 9.0], [2.0, 9.0], [3.0, 9.0]]  # the first is the best
    for genotype, value in zip(genotypes, values, strict=True):
        strategy.observe(genotype, value)
    members = [g for g, _ in strategy.population]
    assert members == genotypes[1:]  # the best one was the oldest, so it left
    strategy.observe(space.sample(rng), None)  # infeasible: never a parent
    assert len(strategy.population) == 3


def test_nsga2_tells_failed_trials_and_keeps_directions():
    space = get_space("mobilenetv2", 32)
    strategy = STRATEGIES.get("nsga2")(space, OBJECTIVES, seed=0)
    batch = strategy.propose(2)
    strategy.observe(batch[0], [50.0, 1e6])
    strategy.observe(batch[1], None)
    states = [t.state.name for t in strategy.study.trials]
    assert states == ["COMPLETE", "FAIL"]
    assert [d.name for d in strategy.study.directions] == ["MAXIMIZE", "MINIMIZE"]
