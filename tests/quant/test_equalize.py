"""Cross-layer equalization keeps the float function and balances per-channel weight ranges."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import fx, nn

from conftest import randomize_batchnorm
from slimcv.exporters.fold import fold_batchnorm
from slimcv.quant.calibrate import calibrate
from slimcv.quant.equalize import equalize_, find_pairs
from slimcv.quant.prepare import PrepareConfig, prepare
from slimcv.quant.spec import QuantSpec

PER_TENSOR_WEIGHTS = QuantSpec(bits=8, symmetric=True, per_channel=False, narrow=True)


def imbalanced_net(seed: int = 0) -> nn.Module:
    """conv -> ReLU -> depthwise -> ReLU -> pointwise, with channel ranges spread over 100x
    (what BatchNorm folding does to real depthwise layers)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.ReLU(),
        nn.Conv2d(8, 6, 1),
    )
    with torch.no_grad():
        for index in (0, 2):
            gains = torch.logspace(-1, 1, 8)[torch.randperm(8)]
            net[index].weight.mul_(gains.view(-1, 1, 1, 1))
            net[index].bias.mul_(gains)
    return net.eval()


def spread(weight: torch.Tensor) -> float:
    """Largest over smallest per-output-channel range."""
    ranges = weight.detach().abs().flatten(1).amax(1)
    return float(ranges.max() / ranges.min())


def relu6_to_relu(module: nn.Module) -> nn.Module:
    module = copy.deepcopy(module)
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, nn.ReLU())
    return module


def test_function_unchanged_and_ranges_balanced():
    net = imbalanced_net()
    x = torch.randn(4, 3, 12, 12)
    expected = net(x)
    before = [spread(net[i].weight) for i in (0, 2)]

    pairs = equalize_(net)  # a plain module: its layers change in place

    assert pairs == 2
    torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=1e-5)
    after = [spread(net[i].weight) for i in (0, 2)]
    assert after[0] < before[0] / 3 and after[1] < before[1] / 3
    # Equalized: each channel's output range equals the next layer's input range for it.
    r1 = net[2].weight.abs().flatten(1).amax(1)
    r2 = net[4].weight.abs().transpose(0, 1).flatten(1).amax(1)
    torch.testing.assert_close(r1, r2, rtol=1e-3, atol=0)


def test_per_tensor_weight_quantization_gains():
    images = torch.randn(32, 3, 12, 12, generator=torch.Generator().manual_seed(2))

    def output_error(net: nn.Module) -> float:
        qmodel = prepare(net, PrepareConfig(weight=PER_TENSOR_WEIGHTS))
        calibrate(qmodel, [images])
        with torch.no_grad():
            return float(((qmodel.module(images) - net(images)) ** 2).mean())

    plain = imbalanced_net()
    equalized = copy.deepcopy(plain)
    equalize_(equalized)
    assert output_error(equalized) < 0.5 * output_error(plain)


def test_mobilenet_v2_relu6_choices():
    model = randomize_batchnorm(torchvision.models.mobilenet_v2(num_classes=10)).eval()
    folded = fold_batchnorm(model)
    assert isinstance(folded, fx.GraphModule)
    x = torch.randn(2, 3, 32, 32)

    # skip: ReLU6 pairs are left alone; only the linear bottleneck -> expansion pairs remain.
    kept = copy.deepcopy(folded)
    skipped = equalize_(kept, relu6="skip")
    assert 0 < skipped < 10
    torch.testing.assert_close(kept(x), folded(x), atol=1e-5, rtol=1e-4)
    assert sum(isinstance(m, nn.ReLU6) for m in kept.modules()) == 35

    # relu: DFQ's choice; the result computes the ReLU version of the network exactly.
    replaced = copy.deepcopy(folded)
    pairs = equalize_(replaced, relu6="relu")
    assert pairs > 30
    reference = fold_batchnorm(relu6_to_relu(model))
    torch.testing.assert_close(replaced(x), reference(x), atol=1e-5, rtol=1e-4)
    relu6_left = [
        n
        for n in replaced.graph.nodes
        if n.op == "call_module" and isinstance(replaced.get_submodule(n.target), nn.ReLU6)
    ]
    assert len(relu6_left) < 35


def test_batchnorm_between_layers_blocks_the_pair():
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1))
    assert find_pairs(fx.symbolic_trace(net.eval())) == []


def test_unknown_relu6_choice():
    with pytest.raises(ValueError, match="relu6"):
        equalize_(imbalanced_net(), relu6="clip")
