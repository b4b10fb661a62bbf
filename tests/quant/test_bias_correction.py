"""Empirical bias correction removes the mean error that weight rounding adds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimcv.quant.adaround import AdaRoundConfig, adaround_
from slimcv.quant.bias_correction import _solve_shift, correct_bias_
from slimcv.quant.calibrate import calibrate
from slimcv.quant.prepare import PrepareConfig, prepare
from slimcv.quant.spec import QuantSpec

WEIGHT_4BIT = QuantSpec(bits=4, symmetric=True, per_channel=True, narrow=True)


def depthwise_net(seed: int = 0) -> nn.Module:
    """A stem, a depthwise layer without bias (9 weights per channel: rounding shifts each
    channel's mean) and a linear head."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 8),
    ).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    # Positive-mean inputs: with E[x] != 0, rounding errors become mean shifts.
    return torch.rand(96, 3, 12, 12, generator=torch.Generator().manual_seed(3))


def mean_error(qmodel, net, images) -> float:
    """Mean over output channels of |E[quantized - float]| on ``images``."""
    with torch.no_grad():
        return float((qmodel.module(images) - net(images)).mean(0).abs().mean())


def test_bias_correction_removes_the_mean_error(images):
    net = depthwise_net()
    calib, held = images[:64], images[64:]
    qmodel = prepare(net, PrepareConfig(weight=WEIGHT_4BIT))
    calibrate(qmodel, list(calib.split(32)))
    before = mean_error(qmodel, net, held)

    corrected = correct_bias_(qmodel, list(calib.split(32)))

    assert corrected == len(qmodel.layers) == 3
    assert qmodel.module.get_submodule("2").bias is not None  # a bias was added
    assert mean_error(qmodel, net, held) < 0.5 * before
    assert net[2].bias is None  # the float model is not touched


def test_after_adaround_the_float_model_is_the_reference(images):
    net = depthwise_net()
    calib = list(images[:64].split(32))
    qmodel = prepare(net, PrepareConfig(weight=WEIGHT_4BIT))
    calibrate(qmodel, calib)
    adaround_(qmodel, net, calib, config=AdaRoundConfig(iterations=50, samples=512))
    before = mean_error(qmodel, net, images[64:])

    correct_bias_(qmodel, calib, float_module=net)

    assert mean_error(qmodel, net, images[64:]) < 0.2 * before


def test_shift_behind_relu6_matches_the_post_activation_mean():
    rows = torch.randn(4000, 5, generator=torch.Generator().manual_seed(4)) * 3
    true_shift = torch.tensor([-2.0, -0.5, 0.0, 0.7, 3.0])
    target = nn.ReLU6()(rows + true_shift).mean(0)
    target[2] = -1.0  # out of reach of any shift: that channel is left alone
    shift = _solve_shift(nn.ReLU6(), rows, target)
    torch.testing.assert_close(shift[[0, 1, 3, 4]], true_shift[[0, 1, 3, 4]], atol=1e-4, rtol=0)
    assert shift[2] == 0


def test_empty_calibration_is_an_error():
    qmodel = prepare(depthwise_net())
    with pytest.raises(ValueError, match="at least one"):
        correct_bias_(qmodel, [])
