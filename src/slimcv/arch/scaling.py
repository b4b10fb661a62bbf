"""EfficientNet compound scaling: grow depth, width and resolution together.

Tan & Le (2019) observed that scaling one dimension alone saturates quickly, and that a
network's cost grows roughly as ``depth * width^2 * resolution^2`` (a conv's MACs are linear
in the number of layers, quadratic in channels, quadratic in the input side). Compound scaling
picks ``alpha, beta, gamma >= 1`` with ``alpha * beta^2 * gamma^2 ~ 2`` once, then scales a
base network by ``alpha^phi`` (depth), ``beta^phi`` (width) and ``gamma^phi`` (resolution),
so each step of ``phi`` roughly doubles the MACs.

Rounding, which is why the doubling is only rough:

- depth: every stage's repeats become ``ceil(repeats * alpha^phi)`` (a 1-block stage becomes
  2 at ``phi=1``, so small networks grow a little faster than ``alpha``);
- width: every channel count becomes ``make_divisible(channels * beta^phi, 8)``; the head conv
  is widened as well (never narrowed, see :meth:`NetworkSpec.scaled`);
- resolution: ``resolution * gamma^phi`` rounded to the nearest multiple of
  ``resolution_divisor`` (8 by default: fine enough to follow ``gamma^phi`` within 2% at 224
  px, and a whole number of 8x8 tiles; pass 32 to make every feature map of a stride-32
  network exact).
"""

from __future__ import annotations

from dataclasses import dataclass

from slimcv.arch.spec import NetworkSpec
from slimcv.errors import SpecError

#: The paper's grid-searched coefficients for EfficientNet-B0.
EFFICIENTNET_ALPHA, EFFICIENTNET_BETA, EFFICIENTNET_GAMMA = 1.2, 1.1, 1.15


@dataclass(frozen=True)
class CompoundCoefficients:
    """Per-step multipliers of depth (``alpha``), width (``beta``) and resolution (``gamma``)."""

    alpha: float
    beta: float
    gamma: float

    @property
    def cost_factor(self) -> float:
        """``alpha * beta^2 * gamma^2``: the growth of MACs per step of ``phi``."""
        return self.alpha * self.beta**2 * self.gamma**2


def compound_coefficients(
    alpha: float = EFFICIENTNET_ALPHA,
    beta: float = EFFICIENTNET_BETA,
    gamma: float = EFFICIENTNET_GAMMA,
    *,
    tolerance: float = 0.1,
) -> CompoundCoefficients:
    """Checks and returns compound-scaling coefficients.

    Args:
        alpha, beta, gamma: depth, width and resolution multipliers per step; each at least 1
            (compound scaling grows networks; shrink the base instead).
        tolerance: allowed relative distance of ``alpha * beta^2 * gamma^2`` from 2.

    Raises:
        SpecError: a coefficient is below 1, or the cost factor is not within ``tolerance`` of
            2 (then ``phi`` would no longer mean "twice the MACs per step").
    """
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        if not value >= 1:
            raise SpecError(f"compound scaling needs {name} >= 1, got {value}")
    coefficients = CompoundCoefficients(float(alpha), float(beta), float(gamma))
    factor = coefficients.cost_factor
    if abs(factor - 2.0) > tolerance * 2.0:
        raise SpecError(
            f"alpha * beta^2 * gamma^2 = {factor:.3f} for alpha={alpha}, beta={beta}, "
            f"gamma={gamma}; compound scaling needs it within {tolerance:.0%} of 2"
        )
    return coefficients


def compound_scale(
    spec: NetworkSpec,
    resolution: int,
    phi: float,
    *,
    coefficients: CompoundCoefficients | None = None,
    divisor: int = 8,
    resolution_divisor: int = 8,
) -> tuple[NetworkSpec, int]:
    """Scales a base network and its input resolution by the compound coefficient ``phi``.

    Args:
        spec: the base network (EfficientNet-B0 for the B-series).
        resolution: its input side in pixels.
        phi: the compound coefficient, >= 0; 0 returns the base unchanged.
        coefficients: from :func:`compound_coefficients`; the paper's 1.2, 1.1, 1.15 by default.
        divisor: channel counts are rounded to multiples of this.
        resolution_divisor: the resolution is rounded to the nearest multiple of this.

    Returns:
        The scaled spec and resolution.

    Raises:
        SpecError: ``phi`` is negative or a divisor is not positive.
    """
    if phi < 0:
        raise SpecError(f"compound coefficient phi must be >= 0, got {phi}")
    if divisor < 1 or resolution_divisor < 1:
        raise SpecError(
            f"divisors must be positive, got divisor={divisor}, "
            f"resolution_divisor={resolution_divisor}"
        )
    if resolution < 1:
        raise SpecError(f"resolution must be positive, got {resolution}")
    coefficients = coefficients or compound_coefficients()
    if phi == 0:
        return spec, resolution
    scaled = spec.scaled(
        width=coefficients.beta**phi, depth=coefficients.alpha**phi, divisor=divisor
    )
    side = resolution * coefficients.gamma**phi
    side_rounded = max(resolution_divisor, round(side / resolution_divisor) * resolution_divisor)
    return scaled, int(side_rounded)
