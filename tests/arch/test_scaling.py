"""Compound scaling: the coefficients' constraint, the rounding formulas, and the point of it
all, that each step of phi roughly doubles the MACs (measured by profile_model)."""

from __future__ import annotations

import math

import pytest

from slimcv.analysis.profile import profile_model
from slimcv.arch import build_network
from slimcv.arch.families import FAMILIES
from slimcv.arch.layers import make_divisible
from slimcv.arch.scaling import compound_coefficients, compound_scale
from slimcv.arch.spec import parse_network
from slimcv.errors import SpecError


def test_paper_coefficients_cost_about_two_per_step() -> None:
    coefficients = compound_coefficients()
    assert (coefficients.alpha, coefficients.beta, coefficients.gamma) == (1.2, 1.1, 1.15)
    assert coefficients.cost_factor == pytest.approx(1.92, abs=0.005)


@pytest.mark.parametrize(
    ("alpha", "beta", "gamma", "message"),
    [
        (1.5, 1.2, 1.2, "within 10% of 2"),  # 3.1: each step would triple the cost
        (1.0, 1.0, 1.0, "within 10% of 2"),
        (0.9, 1.2, 1.25, "alpha >= 1"),
    ],
)
def test_coefficients_off_the_constraint_are_rejected(alpha, beta, gamma, message) -> None:
    with pytest.raises(SpecError, match=message):
        compound_coefficients(alpha, beta, gamma)


def test_coefficients_within_tolerance_pass() -> None:
    assert compound_coefficients(2.0, 1.0, 1.0).cost_factor == 2.0
    assert compound_coefficients(1.0, 1.19, 1.19).cost_factor == pytest.approx(2.005, abs=1e-3)


@pytest.mark.parametrize("phi", [1, 2, 3, 7])
def test_depth_width_resolution_follow_the_formulas(phi: int) -> None:
    base = FAMILIES.get("efficientnet")().spec
    scaled, resolution = compound_scale(base, 224, phi)
    assert scaled == FAMILIES.get("efficientnet")(phi=phi).spec
    for before, after in zip(base.blocks, scaled.blocks, strict=True):
        assert after.repeats == math.ceil(before.repeats * 1.2**phi)
        assert after.out_channels == make_divisible(before.out_channels * 1.1**phi, 8)
        assert after.out_channels % 8 == 0
        assert (after.kernel_size, after.stride, after.expansion) == (
            before.kernel_size,
            before.stride,
            before.expansion,
        )
    assert scaled.stem_channels == make_divisible(32 * 1.1**phi, 8)
    assert scaled.head_channels == make_divisible(1280 * 1.1**phi, 8)
    assert resolution == round(224 * 1.15**phi / 8) * 8
    assert resolution % 8 == 0 and abs(resolution / (224 * 1.15**phi) - 1) < 0.02


def test_known_resolutions_and_rounding_to_32() -> None:
    base = parse_network("stem_c32_s2,ir_c16,head_c1280")
    assert [compound_scale(base, 224, phi)[1] for phi in range(8)] == [
        224,
        256,
        296,
        344,
        392,
        448,
        520,
        592,
    ]
    assert compound_scale(base, 224, 2, resolution_divisor=32)[1] == 288
    assert compound_scale(base, 224, 0) == (base, 224)


def test_bad_phi_and_divisors() -> None:
    base = parse_network("stem_c16,ir_c16")
    with pytest.raises(SpecError, match="phi must be >= 0"):
        compound_scale(base, 224, -1)
    with pytest.raises(SpecError, match="divisors must be positive"):
        compound_scale(base, 224, 1, resolution_divisor=0)


def test_each_step_of_phi_about_doubles_the_macs() -> None:
    macs = []
    for phi in range(3):
        network = FAMILIES.get("efficientnet")(phi=phi)
        side = network.resolution
        macs.append(profile_model(build_network(network.spec), (1, 3, side, side)).macs)
    # B0 is the paper's 0.39 G MACs; then ~alpha*beta^2*gamma^2 = 1.92 per step, a bit more
    # because a 1-block stage rounds up to 2.
    assert macs[0] == pytest.approx(0.39e9, rel=0.02)
    ratios = [macs[1] / macs[0], macs[2] / macs[1]]
    print("MACs", macs, "ratios", [round(r, 3) for r in ratios])
    for ratio in ratios:
        assert 1.6 <= ratio <= 2.6
