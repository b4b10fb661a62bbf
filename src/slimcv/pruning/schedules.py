"""Sparsity schedules: how fast unstructured pruning reaches its final sparsity.

Pruning everything at once removes weights the network still leans on; reaching the target in
steps with fine-tuning in between lets the remaining weights take over. Three schedules cover
common practice:

* ``oneshot``: one step to the final sparsity.
* ``iterative:K``: K prune + fine-tune rounds, each removing the same fraction of the weights that
  are still there (:func:`iterative_steps`), the lottery-ticket style of iterative magnitude
  pruning.
* ``gradual:K``: K mask updates along Zhu & Gupta's cubic curve (:func:`polynomial_decay`), which
  prunes fast while many redundant weights remain and slowly near the end.

The functions only compute sparsities; applying them (and fine-tuning) is the caller's job.
"""

from __future__ import annotations

import re

from slimcv.errors import SlimcvError

_STEPPED = re.compile(r"(?P<kind>iterative|gradual):(?P<steps>[0-9]+)")
SCHEDULE_FORMS = "oneshot, iterative:K or gradual:K (K a positive integer)"


def polynomial_decay(
    step: int,
    *,
    final: float,
    begin: int,
    end: int,
    initial: float = 0.0,
    power: int = 3,
) -> float:
    """Sparsity at ``step`` on Zhu & Gupta's gradual pruning curve.

    ``s_t = s_f + (s_i - s_f) * (1 - (t - begin) / (end - begin)) ** power`` between ``begin`` and
    ``end``, ``initial`` before and ``final`` after ("To prune, or not to prune", Zhu & Gupta 2017,
    where ``end - begin`` is their ``n * dt``). With the default cubic power most weights go early,
    when the network has the most redundancy and the most steps left to recover.

    Args:
        step: the current step (any unit: optimizer steps, epochs, rounds).
        final: sparsity at and after ``end``, in [0, 1).
        begin: the step at which pruning starts.
        end: the step at which ``final`` is reached; must be after ``begin``.
        initial: sparsity at and before ``begin``, in [0, ``final``].
        power: exponent of the curve; 1 is linear.

    Raises:
        SlimcvError: the sparsities, steps or power are out of range.
    """
    if not 0.0 <= final < 1.0:
        raise SlimcvError(f"final sparsity must be in [0, 1), got {final}")
    if not 0.0 <= initial <= final:
        raise SlimcvError(f"initial sparsity must be in [0, final={final}], got {initial}")
    if end <= begin:
        raise SlimcvError(f"the schedule must end after it begins, got begin={begin}, end={end}")
    if power < 1:
        raise SlimcvError(f"power must be at least 1, got {power}")
    if step <= begin:
        return initial
    if step >= end:
        return final
    remaining = 1.0 - (step - begin) / (end - begin)
    return final + (initial - final) * remaining**power


def iterative_steps(final: float, steps: int) -> list[float]:
    """Sparsities after each of ``steps`` one-shot rounds that end at ``final``.

    Round ``k`` of ``K`` reaches ``1 - (1 - final) ** (k / K)``, so every round removes the same
    fraction of the weights that survived the previous one (rather than the same number of
    weights, which would cut ever deeper into what is left).

    Raises:
        SlimcvError: ``final`` is not in (0, 1) or ``steps`` is not positive.
    """
    if not 0.0 < final < 1.0:
        raise SlimcvError(f"final sparsity must be in (0, 1), got {final}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise SlimcvError(f"steps must be a positive integer, got {steps!r}")
    keep = 1.0 - final
    sparsities = [1.0 - keep ** (k / steps) for k in range(1, steps + 1)]
    sparsities[-1] = final  # exactly the requested figure, not its rounded power
    return sparsities


def parse_schedule(text: str) -> tuple[str, int]:
    """Parses a schedule string into its kind and number of steps.

    ``"oneshot"`` gives ``("oneshot", 1)``, ``"iterative:K"`` gives ``("iterative", K)`` and
    ``"gradual:K"`` gives ``("gradual", K)``.

    Raises:
        SlimcvError: anything else; the message lists the accepted forms.
    """
    cleaned = text.strip().lower() if isinstance(text, str) else ""
    if cleaned == "oneshot":
        return "oneshot", 1
    match = _STEPPED.fullmatch(cleaned)
    if match and int(match["steps"]) >= 1:
        return match["kind"], int(match["steps"])
    raise SlimcvError(f"unknown pruning schedule {text!r}; expected {SCHEDULE_FORMS}")
