import json

import pytest
import torch
from search_helpers import TinySpace, fake_table

from slimcv.errors import ArtifactError, SearchError
from slimcv.nas.api import SearchConfig, search, smallest_genotype
from slimcv.nas.pareto import pareto_front

FAST = {"proxies": "synflow", "batch_size": 8}


def test_zero_cost_search_writes_every_output_and_front_artifacts_reload(tmp_path):
    from slimcv.sources import load_model

    out = tmp_path / "search"
    config = SearchConfig(
        objectives="accuracy,macs",
        trials=4,
        strategy="random",
        estimator="zero-cost",
        estimator_options=FAST,
    )
    result = search("mobilenetv2", "digits", config, out_dir=out)
    for name in ("trials.json", "front.json", "front.md", "front.png", "search.json"):
        assert (out / name).is_file(), name
    trials = json.loads((out / "trials.json").read_text())
    assert len(trials) == 4 and all(t["status"] == "ok" for t in trials)
    assert {"genotype", "spec", "resolution", "metrics", "seconds", "worker"} <= set(trials[0])
    # The front is exactly the non-dominated set of (accuracy up, MACs down).
    points = [(-t["metrics"]["accuracy"], t["metrics"]["macs"]) for t in trials]
    expected = sorted(pareto_front(points))
    front = json.loads((out / "front.json").read_text())["front"]
    assert sorted(m["trial"] for m in front) == expected
    assert not result.score_is_accuracy and "proxy" in (out / "front.md").read_text()
    assert (out / "front.png").read_bytes()[:4] == b"\x89PNG"
    for position, member in enumerate(result.front):
        loaded = load_model(str(out / "front" / str(position)))
        assert loaded.source == f"arch:{member.spec}"
        assert loaded.preprocess.image_size == member.resolution
        assert loaded.num_classes == 10
        assert loaded.module(torch.zeros(1, 3, member.resolution, member.resolution)).shape == (
            1,
            10,
        )
    with pytest.raises(ArtifactError, match="not empty"):
        search("mobilenetv2", "digits", config, out_dir=out)


def test_duplicates_come_from_the_cache():
    space = TinySpace()  # 16 genotypes: 20 trials cannot all be new
    config = SearchConfig(
        objectives="accuracy,params",
        trials=20,
        strategy="random",
        estimator="zero-cost",
        estimator_options=FAST,
    )
    result = search(space, "digits", config)
    keys = [t.key for t in result.trials]
    assert len(keys) == len(set(keys)) == space.size() == 16
    assert result.duplicates > 0
    assert any("only 16 of 20 trials" in note for note in result.notes)


def test_latency_budget_marks_infeasible_and_front_is_measured():
    space = TinySpace()
    table = fake_table()
    smallest = table.predict(space.decode(smallest_genotype(space)), 10)
    largest = table.predict(space.decode({d.name: max(d.choices) for d in space.dimensions}), 10)
    budget = (smallest + largest) / 2
    config = SearchConfig(
        objectives="accuracy,latency:onnxruntime",
        trials=6,
        strategy="random",
        estimator="zero-cost",
        latency_budget_ms=budget,
        estimator_options=FAST,
    )
    result = search(space, "digits", config, latency_table=table)
    infeasible = [t for t in result.trials if t.status == "infeasible"]
    feasible = [t for t in result.trials if t.status == "ok"]
    assert infeasible and len(feasible) == 6  # infeasible ones are extra, never trained
    assert all(t.metrics["latency:onnxruntime"] > budget for t in infeasible)
    assert all("accuracy" not in t.metrics for t in infeasible)
    assert all(t.metrics["latency:onnxruntime"] <= budget for t in feasible)
    for member in result.front:
        assert member.latency_predicted_ms == member.metrics["latency:onnxruntime"]
        assert member.latency_measured_ms is not None and member.latency_measured_ms > 0


def test_impossible_budget_fails_before_training():
    table = fake_table()
    config = SearchConfig(
        objectives="accuracy,latency:onnxruntime",
        trials=2,
        estimator="zero-cost",
        latency_budget_ms=1e-6,
    )
    with pytest.raises(SearchError, match="even the smallest"):
        search(TinySpace(), "digits", config, latency_table=table)


def test_baseline_is_evaluated_and_compared_on_measured_latency():
    space = TinySpace()
    big = "stem_c32_arelu6,ir_k5_s2_e6_c64"  # far slower under the fake timer
    config = SearchConfig(
        objectives="accuracy,latency:onnxruntime",
        trials=4,
        strategy="random",
        estimator="zero-cost",
        baseline=f"arch:{big}",
        estimator_options=FAST,
    )
    result = search(space, "digits", config, latency_table=fake_table())
    base = result.baseline
    assert base is not None and base.spec == big and base.resolution == 16
    assert base.latency_measured_ms > max(m.latency_measured_ms for m in result.front)
    for member in result.front:
        better = member.metrics["accuracy"] > base.metrics["accuracy"]
        assert member.dominates_baseline is better


def test_two_ray_workers_give_the_same_trials_as_one(tmp_path):
    config = dict(
        objectives="accuracy,params",
        trials=4,
        strategy="random",
        estimator="zero-cost",
        estimator_options=FAST,
        seed=5,
    )
    local = search(TinySpace(), "digits", SearchConfig(workers=1, **config))
    ray = search(TinySpace(), "digits", SearchConfig(workers=2, **config))
    assert [t.key for t in ray.trials] == [t.key for t in local.trials]
    for a, b in zip(local.trials, ray.trials, strict=True):
        assert b.metrics["accuracy"] == pytest.approx(a.metrics["accuracy"], rel=1e-6)
        assert b.metrics["params"] == a.metrics["params"]
    # Ray worker processes did the work, not this one.
    assert not {t.worker for t in local.trials} & {t.worker for t in ray.trials}
