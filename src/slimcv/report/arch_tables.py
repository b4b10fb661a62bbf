"""Rich tables for ``slimcv arch list`` and ``slimcv arch show``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from slimcv.report.tables import human_count

if TYPE_CHECKING:
    from slimcv.arch.describe import NetworkSummary


def catalog_tables(catalog: dict[str, Any]) -> list[Table]:
    """Families (parameters with defaults, resolution) and block kinds (options, summary)."""
    families = Table(title="network families (arch:FAMILY[:key=value,...])")
    families.add_column("family")
    families.add_column("parameters (defaults)")
    families.add_column("input", justify="right")
    families.add_column("summary")
    for family in catalog["families"]:
        params = ", ".join(
            f"{p['name']}={str(p['default']).lower() if p['type'] == 'bool' else p['default']}"
            for p in family["params"]
        )
        families.add_row(family["name"], params, str(family["resolution"]), family["summary"])
    kinds = Table(title="block kinds (arch:SPEC tokens)")
    kinds.add_column("kind")
    kinds.add_column("options")
    kinds.add_column("summary")
    for kind in catalog["block_kinds"]:
        kinds.add_row(kind["name"], " ".join(kind["options"]), kind["summary"])
    return [families, kinds]


def network_table(summary: NetworkSummary) -> Table:
    """One row per stage, the totals as caption (the spec string is printed apart: a table
    would wrap it)."""
    table = Table(title=f"{summary.source} input {summary.image_size}x{summary.image_size}")
    for name, justify in (
        ("stage", "left"),
        ("kind", "left"),
        ("r", "right"),
        ("c", "right"),
        ("s", "right"),
        ("k", "right"),
        ("e", "right"),
        ("se", "right"),
        ("output", "right"),
        ("params", "right"),
        ("MACs", "right"),
        ("% MACs", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for stage in summary.stages:
        share = 100 * stage.macs / summary.macs if summary.macs else 0.0
        table.add_row(
            stage.name,
            stage.kind,
            str(stage.repeats),
            str(stage.channels),
            str(stage.stride),
            "-" if stage.kernel is None else str(stage.kernel),
            "-" if stage.expansion is None else f"{stage.expansion:g}",
            f"{stage.se:g}" if stage.se else "-",
            "x".join(map(str, stage.output_size)) or "-",
            human_count(stage.params),
            human_count(stage.macs),
            f"{share:.1f}",
        )
    table.caption = (
        f"total: {summary.params:,} params, {summary.macs:,} MACs ({human_count(summary.macs)}), "
        f"total stride {summary.total_stride}, {summary.num_classes} classes"
    )
    return table
