"""Rich table for ``slimcv search``: the Pareto front, the baseline and who beats it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from slimcv.report.tables import human_count

if TYPE_CHECKING:
    from slimcv.nas.api import SearchResult


def search_table(result: SearchResult) -> Table:
    """One row per front member (plus the baseline), in front order."""
    latency = next((o["key"] for o in result.objectives if o["key"].startswith("latency:")), None)
    score = "top-1 %" if result.score_is_accuracy else "proxy"
    ok = sum(t.status == "ok" for t in result.trials)
    table = Table(
        title=f"Pareto front: {result.space} on {result.data} ({result.estimator}, "
        f"{ok}/{len(result.trials)} trials ok, {result.seconds:.0f} s)",
        caption="\n".join(result.notes + ([result.message] if result.message else [])),
    )
    table.add_column("#", justify="right")
    table.add_column("trial", justify="right")
    table.add_column(score, justify="right")
    if latency:
        table.add_column("pred. ms", justify="right")
        table.add_column("meas. ms", justify="right")
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("res", justify="right")
    if result.baseline is not None:
        table.add_column("beats baseline")
    table.add_column("spec", overflow="fold")

    def fmt(value: float | None, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    def add(label: str, trial: str, metrics: dict, pred: float | None, meas: float | None,
            res: int, spec: str, beats: str) -> None:  # fmt: skip
        cells = [label, trial, fmt(metrics.get("accuracy"), 2)]
        if latency:
            cells += [fmt(pred), fmt(meas)]
        cells += [human_count(metrics.get("params", 0)), human_count(metrics.get("macs", 0))]
        cells.append(str(res))
        if result.baseline is not None:
            cells.append(beats)
        cells.append(spec)
        table.add_row(*cells)

    for i, m in enumerate(result.front):
        beats = {True: "yes", False: "no", None: "-"}[m.dominates_baseline]
        add(str(i), str(m.trial), m.metrics, m.latency_predicted_ms, m.latency_measured_ms,
            m.resolution, m.spec, beats)  # fmt: skip
    base = result.baseline
    if base is not None:
        add("base", "-", base.metrics, base.latency_predicted_ms, base.latency_measured_ms,
            base.resolution, base.source, "")  # fmt: skip
    return table
