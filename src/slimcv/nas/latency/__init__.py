"""Latency lookup tables: a candidate's runtime latency predicted from timed units.

A search asks for an objective such as ``latency:onnxruntime``; :func:`latency_table` turns the
name into a :class:`LatencyTable` for that runtime. The runtime-specific part (exporting and
timing a module) is a strategy in :data:`TIMERS`; each imports its runtime lazily.
"""

from __future__ import annotations

from slimcv.errors import SearchError, UnknownNameError
from slimcv.nas.latency.table import Correction, LatencyTable, covering_genotypes, overhead_key
from slimcv.nas.latency.timers import TIMERS, ModuleTimer, RuntimeTimer, TimingPlan
from slimcv.nas.latency.units import Unit, decompose

OBJECTIVE_PREFIX = "latency:"


def latency_table(
    objective: str, *, threads: int = 1, precision: str = "f32", path: str | None = None
) -> LatencyTable:
    """The table behind a search objective such as ``latency:onnxruntime``.

    Args:
        objective: ``latency:<runtime>`` with a runtime of :data:`TIMERS`.
        threads: runtime threads per measurement.
        precision: runtime precision, set explicitly (OpenVINO's CPU default may be bf16).
        path: a saved table to start from (its runtime, threads and precision must match).

    Raises:
        SearchError: not a latency objective, an unknown runtime, or a saved table measured
            differently.
    """
    if not objective.startswith(OBJECTIVE_PREFIX):
        raise SearchError(f"{objective!r} is not a latency objective (latency:<runtime>)")
    runtime = objective[len(OBJECTIVE_PREFIX) :]
    try:
        TIMERS.get(runtime)
    except UnknownNameError as exc:
        raise SearchError(f"objective {objective!r}: {exc}") from None
    if path is None:
        return LatencyTable(runtime, threads, precision)
    table = LatencyTable.load(path)
    wanted = (runtime, threads, LatencyTable(runtime, threads, precision).precision)
    found = (table.runtime, table.threads, table.precision)
    if found != wanted:
        raise SearchError(
            f"{path} was measured with runtime/threads/precision {found}, not {wanted}"
        )
    return table


__all__ = [
    "TIMERS",
    "Correction",
    "LatencyTable",
    "ModuleTimer",
    "RuntimeTimer",
    "TimingPlan",
    "Unit",
    "covering_genotypes",
    "decompose",
    "latency_table",
    "overhead_key",
]
