import math
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from slimcv.analysis.profile import profile_model
from slimcv.arch import SpecNet, build_network
from slimcv.errors import SearchError, SlimcvError
from slimcv.nas.latency import (
    Correction,
    LatencyTable,
    TimingPlan,
    covering_genotypes,
    decompose,
    latency_table,
    overhead_key,
)
from slimcv.nas.space import Candidate, get_space

OVERHEAD_MS = 0.005


def _candidates(image_size: int, count: int, seed: int = 0) -> list[Candidate]:
    space = get_space("mobilenetv2", image_size)
    rng = random.Random(seed)
    return [space.decode(space.sample(rng)) for _ in range(count)]


class FakeTimer:
    """Milliseconds from the parameter count (additive over units, like real time roughly);
    whole networks are reported as ``2 * raw + 0.01`` so a calibration has something to fit."""

    def __init__(self) -> None:
        self.jobs: list[tuple[nn.Module, tuple[int, ...]]] = []

    @staticmethod
    def unit_ms(module: nn.Module) -> float:
        return OVERHEAD_MS + 1e-6 * sum(p.numel() for p in module.parameters())

    def __call__(self, jobs: Sequence[tuple[nn.Module, tuple[int, ...]]]) -> list[float]:
        self.jobs += jobs
        return [
            2 * self.unit_ms(m) + 0.01 if isinstance(m, SpecNet) else self.unit_ms(m)
            for m, _ in jobs
        ]


def _input_shapes(net: nn.Module, names: list[str], size: int) -> dict[str, tuple[int, ...]]:
    """The input shape each named submodule of ``net`` really gets."""
    seen: dict[str, tuple[int, ...]] = {}
    by_id = {id(net.get_submodule(n)): n for n in names}

    def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.setdefault(by_id[id(module)], tuple(args[0].shape))

    hooks = [net.get_submodule(n).register_forward_pre_hook(record) for n in names]
    with torch.no_grad():
        net(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return seen


@pytest.mark.parametrize("image_size", [32, 96])
def test_units_cover_every_module_once_and_add_up_to_the_network_macs(image_size: int):
    for candidate in _candidates(image_size, 1, seed=3):
        net = build_network(candidate.spec, 10).eval()
        units = decompose(candidate.spec, candidate.image_size, 10)
        covered = [name for unit in units for name in unit.modules]
        assert len(covered) == len(set(covered))
        # SpecNet's top-level modules and its blocks, less identity placeholders.
        top = ["stem", "head", "pool", "flatten", "dropout", "classifier"]
        blocks = [f"stages.{i}.{j}" for i, st in enumerate(net.stages) for j in range(len(st))]
        computing = {n for n in top + blocks if not isinstance(net.get_submodule(n), nn.Identity)}
        assert {n for n in covered if not isinstance(net.get_submodule(n), nn.Identity)} == (
            computing
        )
        # Each unit's recorded input shape is what the network really feeds it.
        seen = _input_shapes(net, [u.modules[0] for u in units], candidate.image_size)
        assert {u.modules[0]: u.input_shape for u in units} == seen
        size = candidate.image_size
        total = profile_model(net, (1, 3, size, size)).macs
        parts = sum(profile_model(u.build(), u.input_shape).macs for u in units)
        assert parts == total > 0


def test_cache_hits_are_not_measured_again():
    timer = FakeTimer()
    table = LatencyTable(timer=timer)
    first, second = _candidates(32, 2)
    table.predict(first, 10)
    timed = len(timer.jobs)
    assert timed == table.timed_modules > 0
    assert len({key for key in table.entries}) == timed
    table.predict(first, 10)
    assert len(timer.jobs) == timed
    table.predict(second, 10)
    new = {u.key for u in table.units(second, 10)} - {u.key for u in table.units(first, 10)}
    assert 0 < len(timer.jobs) - timed <= len(new) + 4  # new units and their overhead shapes


def test_predict_is_the_sum_of_units_minus_overheads_plus_the_correction():
    timer = FakeTimer()
    table = LatencyTable(timer=timer)
    table.correction = Correction(intercept_ms=0.03, slope=1.5, networks=3)
    for candidate in _candidates(32, 3, seed=5):
        units = decompose(candidate.spec, candidate.image_size, 10)
        raw = OVERHEAD_MS + sum(FakeTimer.unit_ms(u.build()) - OVERHEAD_MS for u in units)
        assert table.predict_raw(candidate, 10) == pytest.approx(raw, rel=1e-12)
        assert table.predict(candidate, 10) == pytest.approx(0.03 + 1.5 * raw, rel=1e-12)
        size = candidate.image_size
        assert table.entries[overhead_key((1, 3, size, size))] == OVERHEAD_MS


def test_calibration_recovers_a_linear_relation():
    table = LatencyTable(timer=FakeTimer())
    fit = table.calibrate(_candidates(32, 4, seed=1), 10)
    assert fit.slope == pytest.approx(2.0, rel=1e-6)
    assert fit.intercept_ms == pytest.approx(0.01, abs=1e-6)
    assert fit.networks == 4 and fit.mean_abs_error_pct < 1e-6
    with pytest.raises(SearchError):
        table.calibrate(_candidates(32, 1), 10)
    ratio = table.calibrate(_candidates(32, 4, seed=1), 10, model="ratio")
    assert ratio.intercept_ms == 0 and 2.0 < ratio.slope < 2.0 + 0.01 / 0.005


def test_save_and_load_round_trip(tmp_path: Path):
    table = LatencyTable(threads=1, timer=FakeTimer())
    candidates = _candidates(32, 3)
    table.prefill(candidates, 10, progress=False)
    table.correction = Correction(0.002, 1.1, 5, 3.5)
    path = table.save(tmp_path / "lut.json")

    def no_timing(jobs):  # a loaded table answers from its entries
        raise AssertionError("loaded table measured again")

    loaded = LatencyTable.load(path, timer=no_timing)
    assert loaded.entries == table.entries
    assert loaded.correction == table.correction
    assert (loaded.runtime, loaded.threads, loaded.precision) == ("onnxruntime", 1, "f32")
    assert loaded.metadata["batch"] == 1 and loaded.metadata["threads"] == 1
    for candidate in candidates:
        assert loaded.predict(candidate, 10) == table.predict(candidate, 10)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SearchError):
        LatencyTable.load(tmp_path / "bad.json")


def test_covering_genotypes_reach_every_unit_of_random_samples():
    space = get_space("mobilenetv2", 32)
    covering = covering_genotypes(space)
    assert len(covering) < space.size() / 1000
    table = LatencyTable(timer=FakeTimer())
    keys = {u.key for g in covering for u in table.units(space.decode(g), 10)}
    for candidate in _candidates(32, 30, seed=7):
        assert {u.key for u in table.units(candidate, 10)} <= keys


def test_objective_names():
    assert latency_table("latency:onnxruntime").runtime == "onnxruntime"
    assert latency_table("latency:openvino", precision="fp32").precision == "f32"
    with pytest.raises(SearchError, match="known"):
        latency_table("latency:tensorrtx")
    with pytest.raises(SearchError):
        latency_table("accuracy")
    with pytest.raises(SlimcvError, match="precision"):
        latency_table("latency:onnxruntime", precision="int3")


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_runtime_timers_time_a_real_unit(runtime: str):
    pytest.importorskip(runtime)
    plan = TimingPlan(rounds=1, min_time_s=0.0, min_runs=3, max_runs=3, warmup_runs=1)
    table = LatencyTable(runtime, threads=1, plan=plan)
    candidate = _candidates(32, 1)[0]
    unit = table.units(candidate, 10)[0]
    values = table._time([(unit.build(), unit.input_shape), (nn.Identity(), unit.input_shape)])
    assert all(math.isfinite(v) and 0 < v < 50 for v in values)
    assert np.all(np.array(values) > 0)
