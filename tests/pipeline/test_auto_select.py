"""Auto mode's choice: the fastest candidate within the accuracy bound (and budget)."""

from __future__ import annotations

import pytest

from slimcv.pipeline.auto import Selection, select
from slimcv.pipeline.auto.candidates import Variant


def _v(name: str, keep: float, kind: str, top1: float, ms: float) -> Variant:
    return Variant(name, keep, kind, "f32", name, top1, 100, int(1000 * keep), 10, [], ms, ms)


CANDIDATES = [
    _v("base-f32", 1.0, "float", 99.0, 1.00),
    _v("base-int8", 1.0, "int8", 98.9, 0.40),
    _v("half-f32", 0.5, "float", 98.5, 0.55),
    _v("half-int8", 0.5, "int8", 98.2, 0.25),
    _v("tenth-int8", 0.1, "int8", 96.0, 0.10),
]


def test_the_fastest_candidate_within_the_bound_is_chosen() -> None:
    chosen = select(CANDIDATES, baseline_top1=99.0, max_drop=1.0).chosen
    assert chosen is not None and chosen.name == "half-int8"  # 0.8 points, 4x faster
    tight = select(CANDIDATES, baseline_top1=99.0, max_drop=0.5).chosen
    assert tight is not None and tight.name == "base-int8"


def test_the_pareto_front_holds_only_undominated_candidates() -> None:
    selection = select(CANDIDATES, baseline_top1=99.0, max_drop=1.0)
    # half-f32 is dominated by base-int8 (slower and less accurate); the rest trade off.
    assert selection.front == ["tenth-int8", "half-int8", "base-int8", "base-f32"]


def test_a_latency_budget_no_candidate_in_the_bound_meets_chooses_nothing_and_says_why() -> None:
    selection = select(CANDIDATES, baseline_top1=99.0, max_drop=0.5, latency_budget_ms=0.2)
    assert selection.chosen is None
    assert "0.2 ms" in selection.reason and "base-int8" in selection.reason
    met = select(CANDIDATES, baseline_top1=99.0, max_drop=1.0, latency_budget_ms=0.3).chosen
    assert met is not None and met.name == "half-int8"


def test_no_candidate_in_the_bound_chooses_nothing() -> None:
    worse = [_v("base-f32", 1.0, "float", 90.0, 1.0), _v("x", 0.5, "int8", 80.0, 0.1)]
    selection = select(worse, baseline_top1=99.0, max_drop=1.0)
    assert selection.chosen is None and "98.00" in selection.reason


def test_a_candidate_within_timing_noise_of_the_fastest_wins_by_accuracy() -> None:
    close = [*CANDIDATES, _v("half-f32-fast", 0.5, "float", 98.8, 0.26)]
    chosen = select(close, baseline_top1=99.0, max_drop=1.0).chosen
    assert chosen is not None and chosen.name == "half-f32-fast"  # 4% slower, 0.6 more accurate
    far = [*CANDIDATES, _v("half-f32-slow", 0.5, "float", 98.8, 0.30)]
    chosen = select(far, baseline_top1=99.0, max_drop=1.0).chosen
    assert chosen is not None and chosen.name == "half-int8"  # 20% slower is not a tie


def test_speedups_are_against_the_target_f32_baseline_and_pytorch() -> None:
    selection = select(CANDIDATES, baseline_top1=99.0, max_drop=1.0, torch_ms=2.5)
    headline = selection.headline()
    assert headline["speedup_vs_target_f32"] == pytest.approx(4.0)
    assert headline["speedup_vs_pytorch_f32"] == pytest.approx(10.0)
    again = Selection.from_dict(selection.to_dict())
    assert again.chosen == selection.chosen and again.front == selection.front
