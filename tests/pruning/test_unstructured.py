import json
import math

import pytest
import torch
import torchvision
from torch import nn

from slimcv.errors import SlimcvError
from slimcv.pruning.schedules import iterative_steps, parse_schedule, polynomial_decay
from slimcv.pruning.unstructured import (
    UnstructuredConfig,
    apply_masks_,
    has_masks,
    make_permanent_,
    sparsity_report,
)


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


def effective(layer: nn.Module) -> torch.Tensor:
    """The weight the layer computes with, independent of the hook's cached attribute."""
    if hasattr(layer, "weight_mask"):
        return (layer.weight_orig * layer.weight_mask).detach()
    return layer.weight.detach()


def weights_of(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    return {name: effective(model.get_submodule(name)).clone() for name in names}


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_scope_reaches_sparsity_and_zeroes_the_smallest_weights(scope: str):
    model = resnet18()
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    before = weights_of(model, convs)
    report = apply_masks_(model, UnstructuredConfig(sparsity=0.6, scope=scope))

    assert [layer.name for layer in report.layers] == convs  # resnet18 has no depthwise conv
    after = weights_of(model, convs)
    zeros = sum(int((w == 0).sum()) for w in after.values())
    total = sum(w.numel() for w in after.values())
    assert abs(zeros / total - 0.6) < 0.005
    assert report.zeros == zeros and report.pruned_params == total
    assert report.total_params == sum(p.numel() for p in resnet18().parameters())
    assert report.model_sparsity < report.overall_sparsity

    per_layer = [layer.sparsity for layer in report.layers]
    if scope == "layer":
        assert max(per_layer) - min(per_layer) < 2e-3
        groups = [[name] for name in convs]
    else:
        assert max(per_layer) - min(per_layer) > 0.1  # one threshold hits layers unequally
        groups = [convs]
    for group in groups:  # every pruned weight is at most as large as every kept one
        pruned = torch.cat([before[n][after[n] == 0].abs() for n in group])
        kept = torch.cat([before[n][after[n] != 0].abs() for n in group])
        assert pruned.max() <= kept.min()


def test_masks_hold_during_fine_tuning():
    model = resnet18()
    apply_masks_(model, UnstructuredConfig(sparsity=0.7))
    masked = [m for m in model.modules() if hasattr(m, "weight_mask")]
    start = [m.weight_orig.detach().clone() for m in masked]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    model.train()
    for _ in range(3):
        x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model(torch.randn(2, 3, 32, 32))  # refresh the hooks' cached weights
    moved = 0
    for layer, old in zip(masked, start, strict=True):
        off = layer.weight_mask == 0
        assert torch.all(layer.weight.detach()[off] == 0)
        assert torch.all(effective(layer)[off] == 0)
        moved += int((layer.weight_orig.detach() != old).sum())
    assert moved > 0  # training did update the model


def test_iterative_pruning_keeps_earlier_zeros():
    model = resnet18()
    apply_masks_(model, UnstructuredConfig(sparsity=0.5))
    names = [n for n, m in model.named_modules() if hasattr(m, "weight_mask")]
    first = {n: w == 0 for n, w in weights_of(model, names).items()}
    report = apply_masks_(model, UnstructuredConfig(sparsity=0.8))
    second = weights_of(model, names)
    for name in names:
        assert torch.all(second[name][first[name]] == 0), name
    assert abs(report.overall_sparsity - 0.8) < 0.005
    # masks only grow: a lower request leaves them as they are
    assert apply_masks_(model, UnstructuredConfig(sparsity=0.3)).zeros == report.zeros


class Mixed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)  # 3 input channels: no room for 2:4
        self.conv = nn.Conv2d(8, 16, 3)
        self.grouped = nn.Conv2d(16, 16, 3, groups=2)  # 8 channels per group
        self.depthwise = nn.Conv2d(16, 16, 3, groups=16)
        self.fc = nn.Linear(16, 12)
        self.odd = nn.Linear(12, 6)
        self.head = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.depthwise(self.grouped(self.conv(self.stem(x))))
        return self.head(self.odd(self.fc(x.mean((2, 3)))))


def test_two_four_keeps_the_two_largest_of_every_four_input_channels():
    torch.manual_seed(0)
    model = Mixed()
    before = {n: m.weight.detach().clone() for n, m in model.named_children()}
    report = apply_masks_(model, UnstructuredConfig(pattern="2:4"))

    assert [layer.name for layer in report.layers] == ["conv", "grouped", "fc", "odd"]
    assert "multiple of 4" in report.skipped["stem"]
    assert "multiple of 4" in report.skipped["head"]
    assert "depthwise" in report.skipped["depthwise"]
    assert report.overall_sparsity == 0.5
    for layer in report.layers:
        weight = effective(model.get_submodule(layer.name))
        # groups run along the input channels, per output channel and kernel position
        groups = weight.movedim(1, -1).reshape(-1, 4)
        original = before[layer.name].movedim(1, -1).reshape(-1, 4).abs()
        assert torch.all((groups == 0).sum(1) >= 2)
        largest_dropped = original.masked_fill(groups != 0, -1.0).max(1).values
        smallest_kept = original.masked_fill(groups == 0, math.inf).min(1).values
        assert torch.all(largest_dropped <= smallest_kept)
    for name in ("stem", "depthwise", "head"):
        assert torch.equal(model.get_submodule(name).weight, before[name])
    assert model(torch.randn(1, 3, 12, 12)).shape == (1, 4)


def test_two_four_ignores_the_requested_sparsity():
    model = Mixed()
    report = apply_masks_(model, UnstructuredConfig(sparsity=0.29, pattern="2:4"))
    assert report.overall_sparsity == 0.5


def test_make_permanent_folds_masks_into_plain_weights():
    model = resnet18().eval()
    apply_masks_(model, UnstructuredConfig(sparsity=0.75, scope="layer", ignore=("fc",)))
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    assert has_masks(model)
    make_permanent_(model)
    assert not has_masks(model)
    keys = model.state_dict().keys()
    assert not any(k.endswith(("_orig", "_mask")) for k in keys)
    assert torch.equal(model(x), expected)
    report = sparsity_report(model)  # without masks: the layers that hold zeros
    assert abs(report.overall_sparsity - 0.75) < 0.005
    assert report.skipped == {"fc": "no zero weight"} and len(report.layers) == 20
    for layer in report.layers:
        weight = model.get_submodule(layer.name).weight
        assert not torch.any(torch.signbit(weight[weight == 0]))  # +0.0, not -0.0
    data = json.loads(json.dumps(report.to_dict()))
    assert "storage" in data["note"] and "2:4" in data["note"] and "Ampere" in data["note"]


def test_ignore_leaves_layers_dense_and_unknown_names_fail():
    model = resnet18()
    report = apply_masks_(model, UnstructuredConfig(sparsity=0.5, ignore=("conv1", "layer4")))
    names = [layer.name for layer in report.layers]
    assert "conv1" not in names and not any(n.startswith("layer4") for n in names)
    assert report.skipped["conv1"] == "ignored" and report.skipped["layer4.0.conv1"] == "ignored"
    assert int((model.layer4[0].conv1.weight == 0).sum()) == 0
    with pytest.raises(SlimcvError, match="'layer9'.*not a module"):
        apply_masks_(model, UnstructuredConfig(ignore=("layer9",)))
    with pytest.raises(SlimcvError, match="no layer left"):
        apply_masks_(nn.Sequential(nn.Linear(3, 3)), UnstructuredConfig(ignore=("0",)))


@pytest.mark.parametrize("sparsity", [0.0, 1.0, -0.1, 1.5, float("nan"), True])
def test_out_of_range_sparsity_is_refused(sparsity: float):
    with pytest.raises(SlimcvError, match="sparsity"):
        UnstructuredConfig(sparsity=sparsity)


@pytest.mark.parametrize("field", [{"scope": "model"}, {"pattern": "4:8"}])
def test_unknown_scope_or_pattern_is_refused(field: dict):
    with pytest.raises(SlimcvError, match="expected one of"):
        UnstructuredConfig(**field)


def test_polynomial_decay_endpoints_shape_and_monotonicity():
    curve = [polynomial_decay(t, final=0.8, begin=10, end=20) for t in range(0, 31)]
    assert curve[:11] == [0.0] * 11
    assert curve[20:] == [0.8] * 11
    assert all(b > a for a, b in zip(curve[10:20], curve[11:21], strict=True))
    # cubic: at half time 1 - 0.5 ** 3 = 7/8 of the way
    assert polynomial_decay(15, final=0.8, begin=10, end=20) == pytest.approx(0.7)
    assert polynomial_decay(0, final=0.9, begin=0, end=4, initial=0.5) == 0.5
    for bad in ({"final": 1.0}, {"final": 0.5, "initial": 0.6}, {"final": 0.5, "end": 10}):
        args = {"begin": 10, "end": 20} | bad
        with pytest.raises(SlimcvError):
            polynomial_decay(12, **args)


def test_iterative_steps_remove_the_same_fraction_each_time():
    steps = iterative_steps(0.8, 4)
    assert len(steps) == 4 and steps[-1] == 0.8
    kept = [1.0] + [1 - s for s in steps]
    ratios = [b / a for a, b in zip(kept, kept[1:], strict=False)]
    assert max(ratios) - min(ratios) < 1e-12
    assert ratios[0] == pytest.approx(0.2**0.25)
    assert iterative_steps(0.5, 1) == [0.5]
    with pytest.raises(SlimcvError):
        iterative_steps(0.5, 0)
    with pytest.raises(SlimcvError):
        iterative_steps(1.0, 3)


def test_parse_schedule():
    assert parse_schedule("oneshot") == ("oneshot", 1)
    assert parse_schedule("iterative:3") == ("iterative", 3)
    assert parse_schedule(" Gradual:10 ") == ("gradual", 10)
    for bad in ("", "iterative", "iterative:0", "gradual:x", "cosine:3", "oneshot:2", "gradual:²"):
        with pytest.raises(SlimcvError, match="oneshot, iterative:K or gradual:K"):
            parse_schedule(bad)
