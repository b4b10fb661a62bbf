"""AdaRound: learned rounding beats nearest rounding, and lands exactly on the INT8 grid."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimcv.quant.adaround import AdaRoundConfig, _apply, _gather_inputs, adaround_
from slimcv.quant.calibrate import calibrate
from slimcv.quant.layers import QuantConv2d
from slimcv.quant.prepare import PrepareConfig, prepare
from slimcv.quant.spec import QuantSpec, quantize_to_int

#: 4-bit weights make rounding decisions matter, so the test can tell good ones from bad.
WEIGHT_4BIT = QuantSpec(bits=4, symmetric=True, per_channel=True, narrow=True)
FAST = AdaRoundConfig(iterations=150, samples=1024, batch_size=256)


def tiny_net(seed: int = 0, inplace: bool = False) -> nn.Module:
    """Dense, depthwise, pointwise and linear layers, with ReLU, ReLU6 and a bare output."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(inplace=inplace),
        nn.Conv2d(16, 16, 3, padding=1, groups=16),
        nn.ReLU6(inplace=inplace),
        nn.Conv2d(16, 24, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(24, 10),
    )
    with torch.no_grad():
        bn = net[1]
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 2.0)
    return net.eval()


def quantized(net: nn.Module, images: torch.Tensor):
    qmodel = prepare(net, PrepareConfig(weight=WEIGHT_4BIT))
    calibrate(qmodel, list(images.split(16)))
    return qmodel


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(80, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_learned_rounding_beats_nearest_and_is_on_the_grid(images):
    net = tiny_net()
    calib, held = images[:48], images[48:]
    qmodel = quantized(net, calib)
    with torch.no_grad():
        float_out = net(held)
        nearest_error = float(((qmodel.module(held) - float_out) ** 2).mean())

    report = adaround_(qmodel, net, list(calib.split(16)), config=FAST)

    assert list(report) == qmodel.layers
    for name, row in report.items():
        assert row["adaround"] <= row["nearest"], name
    ratios = sorted(r["adaround"] / r["nearest"] for r in report.values())
    assert ratios[len(ratios) // 2] < 0.9  # the median layer gains 10 % or more
    assert any(r["flipped"] > 0.05 for r in report.values())
    # The end-to-end output, on images AdaRound never saw, is closer to the float model's.
    with torch.no_grad():
        adaround_error = float(((qmodel.module(held) - float_out) ** 2).mean())
    assert adaround_error < 0.5 * nearest_error
    # Weights are grid values: the fake-quant leaves them alone, the integers are in range.
    for name in qmodel.layers:
        layer = qmodel.module.get_submodule(name)
        quantizer = layer.weight_quantizer
        weight = layer.weight.detach()
        assert torch.equal(quantizer(weight), weight), name
        codes = quantize_to_int(weight, quantizer.scale, quantizer.zero_point, quantizer.spec)
        assert codes.min() >= WEIGHT_4BIT.qmin and codes.max() <= WEIGHT_4BIT.qmax
        shape = (-1,) + (1,) * (weight.dim() - 1)
        assert torch.equal(codes.float() * quantizer.scale.view(shape), weight), name


def test_float_module_and_own_float_function_give_the_same_rounding(images):
    net = tiny_net()
    calib = list(images[:32].split(16))
    with_reference, own = quantized(net, images[:32]), quantized(net, images[:32])
    adaround_(with_reference, net, calib, config=FAST)
    adaround_(own, None, calib, config=FAST)
    for name in own.layers:
        a = with_reference.module.get_submodule(name).weight
        b = own.module.get_submodule(name).weight
        # BatchNorm folded twice in float32 may flip a rounding tie; nothing more.
        assert (a == b).float().mean() > 0.98, name


def test_in_place_activations_give_the_same_rounding(images):
    """The loss applies the layer's activation to stored targets: an in-place module (timm's
    default) must not clip them behind AdaRound's back."""
    calib = list(images[:32].split(16))
    results = []
    for inplace in (False, True):
        net = tiny_net(inplace=inplace)
        qmodel = quantized(net, images[:32])
        report = adaround_(qmodel, net, calib, config=FAST)
        results.append((report, qmodel.module.get_submodule("3").weight.detach()))
    assert results[0][0] == results[1][0]
    assert torch.equal(results[0][1], results[1][1])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 3, "stride": 2, "padding": 1},
        {"kernel_size": 3, "padding": 2, "dilation": 2, "groups": 4},
        {"kernel_size": 5, "padding": "same", "groups": 8},
        {"kernel_size": 1},
    ],
)
def test_gathered_patches_reproduce_the_convolution(kwargs):
    conv = nn.Conv2d(8, 8, **kwargs)
    layer = QuantConv2d.from_float(conv, WEIGHT_4BIT)
    x = torch.randn(3, 8, 9, 9)
    out = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    rows = out.permute(0, 2, 3, 1).reshape(-1, 8)
    index = torch.randperm(len(rows))[:50]
    patches = _gather_inputs(layer, x, index)
    with torch.no_grad():
        got = _apply(layer, patches, conv.weight)
    torch.testing.assert_close(got, rows[index], atol=1e-5, rtol=1e-5)


def test_empty_calibration_is_an_error(images):
    qmodel = quantized(tiny_net(), images[:16])
    with pytest.raises(ValueError, match="at least one"):
        adaround_(qmodel, None, [], config=FAST)
