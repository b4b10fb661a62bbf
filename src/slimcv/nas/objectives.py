"""What a search optimises: named objectives, each with a direction.

``--objectives accuracy,latency:onnxruntime`` parses into two :class:`Objective` values.
``accuracy`` is the estimator's score (top-1 for ``short-train``, a proxy for ``zero-cost``);
``latency:RUNTIME`` is milliseconds per image on that runtime, *predicted* from a per-unit
lookup table during the search and *measured* end to end for the final Pareto front;
``params``, ``macs`` and ``size`` (FP32 bytes) are counted on the built network.
"""

from __future__ import annotations

from dataclasses import dataclass

from slimcv.errors import SearchError

MAXIMIZE = "maximize"
MINIMIZE = "minimize"

#: Objectives without an argument and their directions.
SIMPLE_OBJECTIVES = {
    "accuracy": MAXIMIZE,
    "params": MINIMIZE,
    "macs": MINIMIZE,
    "size": MINIMIZE,
}
#: Runtimes a ``latency:RUNTIME`` objective may name.
LATENCY_RUNTIMES = ("onnxruntime", "openvino")
KNOWN_OBJECTIVES = (*SIMPLE_OBJECTIVES, *(f"latency:{r}" for r in LATENCY_RUNTIMES))


@dataclass(frozen=True)
class Objective:
    """One searched figure.

    Attributes:
        name: ``accuracy``, ``params``, ``macs``, ``size`` or ``latency``.
        direction: ``maximize`` or ``minimize``.
        runtime: the runtime of a latency objective, else ``None``.
    """

    name: str
    direction: str
    runtime: str | None = None

    @property
    def key(self) -> str:
        """The name in trial metrics and reports (``latency:onnxruntime``)."""
        return f"{self.name}:{self.runtime}" if self.runtime else self.name

    @property
    def maximize(self) -> bool:
        return self.direction == MAXIMIZE

    def minimized(self, value: float) -> float:
        """``value`` turned into a figure where lower is better (for Pareto ranking)."""
        return -value if self.maximize else value


def parse_objectives(text: str | list[str] | tuple[str, ...]) -> tuple[Objective, ...]:
    """Parses ``accuracy,latency:onnxruntime`` (or a list of names) into objectives.

    Raises:
        SearchError: an unknown or repeated objective, or none at all; the message lists the
            known ones.
    """
    names = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise SearchError(f"no objectives given; known: {', '.join(KNOWN_OBJECTIVES)}")
    objectives: list[Objective] = []
    for name in names:
        objective = _parse_one(name)
        if any(o.key == objective.key for o in objectives):
            raise SearchError(f"objective {name!r} is given twice")
        objectives.append(objective)
    if sum(o.name == "latency" for o in objectives) > 1:
        raise SearchError("one latency objective at a time (a search targets one runtime)")
    return tuple(objectives)


def _parse_one(name: str) -> Objective:
    base, _, arg = name.partition(":")
    if base in SIMPLE_OBJECTIVES and not arg:
        return Objective(base, SIMPLE_OBJECTIVES[base])
    if base == "latency" and arg in LATENCY_RUNTIMES:
        return Objective("latency", MINIMIZE, arg)
    if base == "latency":
        raise SearchError(
            f"unknown latency runtime {arg!r} in {name!r}; known: "
            f"{', '.join(f'latency:{r}' for r in LATENCY_RUNTIMES)}"
        )
    raise SearchError(f"unknown objective {name!r}; known: {', '.join(KNOWN_OBJECTIVES)}")
