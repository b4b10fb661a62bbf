"""Learning-rate (and momentum) schedules as pure functions of the step.

A schedule's whole state is the step count, so a resumed run continues exactly where it
stopped: the scheduler's ``state_dict`` (saved in checkpoints) is just that count.

- ``cosine``: linear warm-up from ~0 to the peak over the warm-up steps, then cosine decay to 0.
- ``onecycle`` (Smith & Topin): cosine warm-up from peak/25 to the peak, cosine decay to
  peak/25e4; momentum (SGD's, or AdamW's beta1) cycles the other way, 0.95 -> 0.85 -> 0.95.
- ``constant``: linear warm-up, then the peak.
"""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("cosine", "onecycle", "constant")
_DIV_START = 25.0
_DIV_END = 1e4
_MOMENTUM = (0.95, 0.85)


def _cos_ramp(start: float, end: float, t: float) -> float:
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0)))


def lr_factor(schedule: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """The multiplier of the peak learning rate at each step (for ``LambdaLR``)."""
    total = max(1, total_steps)

    def factor(step: int) -> float:
        if schedule == "onecycle":
            if step < warmup_steps:
                return _cos_ramp(1 / _DIV_START, 1.0, step / warmup_steps)
            t = (step - warmup_steps) / max(1, total - warmup_steps)
            return _cos_ramp(1.0, 1 / (_DIV_START * _DIV_END), t)
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        t = (step - warmup_steps) / max(1, total - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return factor


def momentum_at(schedule: str, total_steps: int, warmup_steps: int, step: int) -> float | None:
    """One-cycle's momentum at ``step``; ``None`` for schedules that leave momentum alone."""
    if schedule != "onecycle":
        return None
    high, low = _MOMENTUM
    if step < warmup_steps:
        return _cos_ramp(high, low, step / warmup_steps)
    return _cos_ramp(low, high, (step - warmup_steps) / max(1, total_steps - warmup_steps))
