"""Choosing among measured candidates: the fastest within the bounds, and the Pareto front."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slimcv.nas.pareto import pareto_front
from slimcv.pipeline.auto.candidates import Variant

#: Candidates within this fraction of the fastest one's latency count as equally fast (the
#: spread of repeated medians on a shared 2-core VM is about this size); among them the most
#: accurate is chosen, so a point of accuracy is never traded for a difference in noise.
TIE_TOLERANCE = 0.05


@dataclass
class Selection:
    """What auto mode chose and why.

    Attributes:
        chosen: the fastest variant within both bounds, ``None`` if none is.
        baseline: the unpruned float model at f32 on the target.
        floor: the lowest top-1 allowed (baseline top-1 minus the allowed drop).
        front: names of the variants on the Pareto front of top-1 against latency.
        variants: every measured variant, latency filled in.
        torch_ms: the baseline in PyTorch eager f32, same batch, same threads.
        reason: one line saying how the choice was made, or why nothing was chosen.
    """

    chosen: Variant | None
    baseline: Variant
    floor: float
    latency_budget_ms: float | None
    front: list[str]
    variants: list[Variant] = field(default_factory=list)
    torch_ms: float | None = None
    reason: str = ""

    def speedup(self, reference_ms: float | None) -> float | None:
        if self.chosen is None or not reference_ms or not self.chosen.latency_ms:
            return None
        return reference_ms / self.chosen.latency_ms

    def headline(self) -> dict[str, Any]:
        if self.chosen is None:
            return {"chosen": None, "reason": self.reason}
        return {
            "chosen": self.chosen.name,
            "top1": self.chosen.top1,
            "drop": self.baseline.top1 - self.chosen.top1,
            "latency_ms": self.chosen.latency_ms,
            "speedup_vs_target_f32": self.speedup(self.baseline.latency_ms),
            "speedup_vs_pytorch_f32": self.speedup(self.torch_ms),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.to_dict() if self.chosen else None,
            "baseline": self.baseline.to_dict(),
            "floor": self.floor,
            "latency_budget_ms": self.latency_budget_ms,
            "front": self.front,
            "variants": [v.to_dict() for v in self.variants],
            "torch_ms": self.torch_ms,
            "reason": self.reason,
            "headline": self.headline(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Selection:
        return cls(
            chosen=Variant(**data["chosen"]) if data.get("chosen") else None,
            baseline=Variant(**data["baseline"]),
            floor=data["floor"],
            latency_budget_ms=data.get("latency_budget_ms"),
            front=list(data["front"]),
            variants=[Variant(**v) for v in data["variants"]],
            torch_ms=data.get("torch_ms"),
            reason=data.get("reason", ""),
        )


def select(
    variants: list[Variant],
    *,
    baseline_top1: float,
    max_drop: float,
    latency_budget_ms: float | None = None,
    torch_ms: float | None = None,
) -> Selection:
    """The fastest variant with top-1 >= baseline - ``max_drop`` (and within the budget).

    Variants within :data:`TIE_TOLERANCE` of the fastest one's latency are ties, and a tie
    goes to the more accurate variant (then to the faster). The baseline is the unpruned float
    variant at f32 (``keep_macs`` 1.0), which must be among ``variants``.
    """
    measured = [v for v in variants if v.latency_ms is not None]
    baseline = next(
        v for v in measured if v.keep_macs >= 1.0 and v.kind == "float" and v.precision == "f32"
    )
    floor = baseline_top1 - max_drop
    points = [(-v.top1, float(v.latency_ms or 0.0)) for v in measured]
    front = sorted(
        (measured[i] for i in pareto_front(points)), key=lambda v: float(v.latency_ms or 0.0)
    )
    feasible = [v for v in measured if v.top1 >= floor - 1e-9]
    within = [
        v
        for v in feasible
        if latency_budget_ms is None or float(v.latency_ms or 0.0) <= latency_budget_ms
    ]
    chosen = None
    if within:
        fastest = min(float(v.latency_ms or 0.0) for v in within)
        ties = [v for v in within if float(v.latency_ms or 0.0) <= fastest * (1 + TIE_TOLERANCE)]
        chosen = min(ties, key=lambda v: (-v.top1, v.latency_ms))
    if chosen is not None:
        reason = (
            f"fastest of {len(feasible)} candidates with top-1 >= {floor:.2f} "
            f"(baseline {baseline_top1:.2f} - {max_drop:g})"
            + (f" and latency <= {latency_budget_ms:g} ms" if latency_budget_ms else "")
            + f"; candidates within {TIE_TOLERANCE:.0%} of the fastest count as ties, won by "
            "the most accurate"
        )
    elif not feasible:
        reason = (
            f"no candidate reached top-1 {floor:.2f} (baseline {baseline_top1:.2f} - {max_drop:g})"
        )
    else:
        fastest = min(feasible, key=lambda v: float(v.latency_ms or 0.0))
        reason = (
            f"no candidate within the accuracy bound meets {latency_budget_ms:g} ms; the fastest "
            f"that holds accuracy, {fastest.name}, runs {fastest.latency_ms:.3f} ms"
        )
    return Selection(
        chosen=chosen,
        baseline=baseline,
        floor=floor,
        latency_budget_ms=latency_budget_ms,
        front=[v.name for v in front],
        variants=measured,
        torch_ms=torch_ms,
        reason=reason,
    )
