"""The weight-sharing supernet: extraction, elastic dimensions, progressive shrinking, estimator."""

from __future__ import annotations

import math
import pickle
import random

import pytest
import torch

from slimcv.analysis.profile import profile_model
from slimcv.arch import build_network
from slimcv.errors import SearchError
from slimcv.nas.estimators import ESTIMATORS, EstimatorContext
from slimcv.nas.space import get_space
from slimcv.nas.supernet.elastic import (
    ElasticMobileNet,
    extract,
    max_genotype,
    min_genotype,
    recalibrate_bn,
)
from slimcv.nas.supernet.shrinking import (
    CONFIG,
    PHASES,
    WEIGHTS,
    ShrinkingConfig,
    TensorSplits,
    load_splits,
    phase_choices,
    train_supernet,
)

TINY = {"epochs": [1, 1, 1, 1], "max_steps_per_epoch": 1, "batch_size": 16}


def _trained_looking(net: ElasticMobileNet, seed: int = 0) -> ElasticMobileNet:
    """Random BN statistics, kernel transforms and classifier, so outputs are not ~0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                module.weight.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
                module.bias.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
        for name, param in net.named_parameters():
            if "transforms" in name:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
        net.classifier.weight.normal_(0, 0.5, generator=generator)
    return net.eval()


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on the shared 2-core machine two threads run 10-30x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def digits16() -> TensorSplits:
    return load_splits("digits", (12, 16), seed=0)


@pytest.mark.parametrize("image_size", [16, 72])  # small layout; large layout with a head conv
def test_extracted_network_computes_what_the_supernet_computes(image_size: int) -> None:
    space = get_space("mobilenetv2", image_size)
    torch.manual_seed(0)
    net = _trained_looking(ElasticMobileNet(space, 10))
    rng = random.Random(1)
    for _ in range(4):
        candidate = space.decode(space.sample(rng))
        x = torch.randn(2, 3, candidate.image_size, candidate.image_size)
        sub = extract(net, candidate)
        fresh = build_network(candidate.spec, 10)
        result = fresh.load_state_dict(net.subnet_state(candidate.spec), strict=True)
        assert not result.missing_keys and not result.unexpected_keys
        with torch.no_grad():
            expected, got = net(x, candidate.spec), sub(x)
        assert expected.abs().max() > 0.1  # a comparison of near-zero outputs proves nothing
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_every_dimension_changes_the_subnetwork() -> None:
    space = get_space("mobilenetv2", 16)
    net = ElasticMobileNet(space, 10)
    base = {d.name: d.choices[len(d.choices) // 2] for d in space.dimensions}
    base.update({f"se{i}": 0.0 for i in range(len(space.stages))})

    def macs(genotype: dict) -> int:
        candidate = space.decode(genotype)
        shape = (1, 3, candidate.image_size, candidate.image_size)
        return profile_model(extract(net, candidate), shape).macs

    reference = macs(base)
    for dim in space.dimensions:
        other = next(c for c in dim.choices if c != base[dim.name])
        assert macs({**base, dim.name: other}) != reference, dim.name


def test_kernel_transform_starts_as_centre_crop_and_learns_away_from_it() -> None:
    space = get_space("mobilenetv2", 16)
    net = ElasticMobileNet(space, 10)
    depthwise = net.stages[0][0].depthwise
    full = depthwise.kernel(8, 7)
    torch.testing.assert_close(depthwise.kernel(8, 5), full[:, :, 1:6, 1:6])
    torch.testing.assert_close(depthwise.kernel(8, 3), full[:, :, 2:5, 2:5])
    with torch.no_grad():
        depthwise.transforms["7to5"].add_(0.1)
    assert not torch.allclose(depthwise.kernel(8, 3), full[:, :, 2:5, 2:5])
    plain = ElasticMobileNet(space, 10, kernel_transform=False).stages[0][0].depthwise
    assert len(plain.transforms) == 0 and plain.kernel(8, 3).shape == (8, 1, 3, 3)


def test_sorting_hidden_channels_keeps_the_full_network_and_orders_by_importance() -> None:
    space = get_space("mobilenetv2", 16)
    torch.manual_seed(0)
    net = _trained_looking(ElasticMobileNet(space, 10))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = net(x)
        net.sort_hidden_channels_()
        after = net(x)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)
    importance = net.stages[1][0].project.conv.weight.abs().sum(dim=(0, 2, 3))
    assert torch.all(importance[:-1] >= importance[1:])


def test_foreign_spec_is_refused() -> None:
    net = ElasticMobileNet(get_space("mobilenetv2", 16), 10)
    bigger = get_space("mobilenetv2", 72).decode(max_genotype(get_space("mobilenetv2", 72)))
    with pytest.raises(SearchError, match="not a sub-network"):
        extract(net, bigger)


def test_recalibration_replaces_the_statistics() -> None:
    space = get_space("mobilenetv2", 16)
    net = _trained_looking(ElasticMobileNet(space, 10))
    sub = extract(net, space.decode(max_genotype(space)))
    batch = torch.randn(8, 3, 16, 16) * 3 + 1
    recalibrate_bn(sub, [batch])
    stem_bn = sub.stem[1]
    mean = sub.stem[0](batch).mean(dim=(0, 2, 3))
    torch.testing.assert_close(stem_bn.running_mean, mean, atol=1e-5, rtol=1e-4)
    assert not sub.training and stem_bn.momentum == 0.1


def test_phases_open_dimensions_progressively() -> None:
    space = get_space("mobilenetv2", 16)
    opened = [
        {name for name, choices in phase_choices(space, phase).items() if len(choices) > 1}
        for phase in PHASES
    ]
    assert opened[0] == {"resolution"}
    assert opened[1] - opened[0] == {f"k{i}" for i in range(4)} | {f"se{i}" for i in range(4)}
    assert opened[2] - opened[1] == {f"d{i}" for i in range(4)}
    assert opened[3] - opened[2] == {f"e{i}" for i in range(4)} | {"width"}


def test_full_phase_loss_decreases(digits16: TensorSplits) -> None:
    space = get_space("mobilenetv2", 16)
    torch.manual_seed(0)
    net = ElasticMobileNet(space, 10)
    config = ShrinkingConfig(epochs=(3, 0, 0, 0), max_steps_per_epoch=4, batch_size=32, lr=5e-3)
    (phase,) = train_supernet(net, digits16, config, evaluate=False)
    losses = phase.step_losses
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1


def test_all_phases_run(digits16: TensorSplits) -> None:
    space = get_space("mobilenetv2", 16)
    net = ElasticMobileNet(space, 10)
    config = ShrinkingConfig(**{**TINY, "max_steps_per_epoch": 2})
    history = train_supernet(net, digits16, config)
    assert [m.phase for m in history] == list(PHASES)
    for metrics in history:
        assert len(metrics.step_losses) == 2
        assert all(math.isfinite(v) for v in metrics.step_losses)
        assert 0 <= metrics.val_top1_min <= 100 and 0 <= metrics.val_top1_max <= 100
    # two sub-networks per step in the depth phase: two losses of ~ln(10) summed
    assert history[2].step_losses[0] > 1.5 * math.log(10)


def test_estimator_pickles_reuses_and_evaluates(tmp_path) -> None:
    space = get_space("mobilenetv2", 16)
    context = EstimatorContext(
        "digits", 10, 16, work_dir=tmp_path, options={"supernet": TINY, "bn_images": 64}
    )
    estimator = ESTIMATORS.get("supernet")(context)
    estimator.prepare(space)
    assert (tmp_path / WEIGHTS).is_file() and (tmp_path / CONFIG).is_file()
    blob = pickle.dumps(estimator)
    assert len(blob) < 50_000  # weights stay on disk, not in the pickle
    stamp = (tmp_path / WEIGHTS).stat().st_mtime_ns
    again = ESTIMATORS.get("supernet")(context)
    again.prepare(space)  # same setting: the stored supernet is reused, not retrained
    assert (tmp_path / WEIGHTS).stat().st_mtime_ns == stamp

    worker = pickle.loads(blob)
    candidate = space.decode(space.sample(random.Random(3)))
    estimate = worker.evaluate(candidate)
    assert estimate.is_accuracy and 0 <= estimate.score <= 100
    build_network(candidate.spec, 10).load_state_dict(estimate.state_dict, strict=True)
    assert worker.evaluate(candidate).score == estimate.score  # deterministic

    other = EstimatorContext(
        "digits", 10, 16, work_dir=tmp_path, options={"supernet": {**TINY, "lr": 1e-3}}
    )
    retrained = ESTIMATORS.get("supernet")(other)
    retrained.prepare(space)
    assert retrained.info["hash"] != again.info["hash"]


def test_sandwich_rule_trains_the_smallest_subnetwork_every_step(digits16: TensorSplits) -> None:
    space = get_space("mobilenetv2", 16)
    net = ElasticMobileNet(space, 10)
    seen = []
    original = net.forward

    def recording(x, spec=None):
        seen.append(spec)
        return original(x, spec)

    net.forward = recording  # type: ignore[method-assign]
    config = ShrinkingConfig(
        epochs=(1, 0, 0, 1), max_steps_per_epoch=3, batch_size=16, kd_weight=0.0
    )  # no teacher: a deep copy would carry the recording forward along
    train_supernet(net, digits16, config, evaluate=False)
    smallest = space.decode(min_genotype(space)).spec
    # 3 full-network steps, then 3 expand steps of 2 draws
    expand_draws = seen[3:]
    assert len(expand_draws) == 6
    assert expand_draws[0::2] == [smallest] * 3
    assert smallest not in seen[:3]
