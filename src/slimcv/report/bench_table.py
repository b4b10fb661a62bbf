"""The benchmark as a Rich table: one row per (backend, batch), how it was measured below."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from slimcv.measure.results import BenchRecord, BenchResult

_MIB = float(1 << 20)
#: Marks an energy figure that is an estimate, not a measurement.
ESTIMATE_MARK = "~"
#: Cores of other load (other processes plus hypervisor steal) worth a warning on a row.
BUSY_CORES = 0.25


def bench_table(result: BenchResult) -> Table:
    """Latency, throughput, memory and energy per backend and batch; skipped rows say why.

    The precision column shows what the runtime reports it really ran when that differs from
    what was asked (OpenVINO may choose bf16 on its own); energy estimates carry a ``~``.
    """
    shape = "x".join(map(str, result.input_shape[1:]))
    table = Table(title=f"bench {result.model} ({shape} input)", caption_justify="left")
    for name in ("backend", "precision", "batch", "threads"):
        table.add_column(name, justify="right" if name in ("batch", "threads") else "left")
    # Two-line headers keep the table readable in an 80-column terminal.
    for name in (
        "median\nms",
        "p90\nms",
        "IQR\nms",
        "runs",
        "img/s",
        "peak memory\nMiB (+model)",
        "energy\nmJ/img",
    ):
        table.add_column(name, justify="right")
    notes = any(_note(rec) for rec in result.records)
    if notes:
        table.add_column("note", overflow="fold")
    for rec in result.records:
        cells = [rec.backend, _precision(rec), str(rec.batch), str(rec.threads)]
        if rec.ok:
            cells += [
                _ms(rec.median_ms),
                _ms(rec.p90_ms),
                _ms(rec.iqr_ms),
                str(rec.runs),
                _rate(rec.throughput_ips),
                _memory(rec),
                _energy(rec),
            ]
        else:
            cells += ["-"] * 7
        if notes:
            cells.append(_note(rec))
        table.add_row(*cells, style=None if rec.ok else "dim")
    table.caption = _caption(result)
    return table


def _caption(result: BenchResult) -> str:
    machine, config = result.machine, result.config
    cpu = machine.get("cpu") or "unknown CPU"
    if machine.get("cpu_id"):
        cpu += f" ({machine['cpu_id']})"
    kept = any(rec.details.get("allocator") for rec in result.records)
    lines = [
        f"{cpu}, {machine.get('logical_cpus', '?')} logical CPUs, {machine.get('os', '')}",
        f"per row: warm-up >= {config.get('min_warmup')} calls and >= {config.get('warmup_s')} s,"
        f" then >= {config.get('min_runs')} timed calls and >= {config.get('min_time_s')} s;"
        f" process pinned to {config.get('threads')} CPU(s), Python GC off"
        f"{', freed memory kept' if kept else ''} while timing;"
        " latency is per call of the whole batch, img/s = batch / median",
    ]
    ok = [rec for rec in result.records if rec.ok]
    memory = sorted({rec.memory_method for rec in ok if rec.memory_method})
    if memory:
        lines.append(f"memory: {'; '.join(memory)}; (+model) = increase over that baseline")
    for method in sorted({rec.energy_method for rec in ok if rec.energy_method}):
        mark = f" ({ESTIMATE_MARK})" if method.startswith("estimate") else ""
        lines.append(f"energy{mark}: {method}")
    return "\n".join(lines)


def _note(rec: BenchRecord) -> str:
    if not rec.ok:
        reason = rec.reason or ""
        return reason if rec.status in reason else f"{rec.status}: {reason}"
    notes = []
    busy = rec.details.get("other_load_cores", 0.0) + rec.details.get("steal_cores", 0.0)
    if busy >= BUSY_CORES:
        notes.append(f"other load {busy:.1f} cores while timing: slower, noisier")
    if rec.details.get("memory_error"):
        notes.append(str(rec.details["memory_error"]))
    return "; ".join(notes)


def _precision(rec: BenchRecord) -> str:
    actual = rec.details.get("inference_precision")
    if actual and str(actual) != rec.precision:
        return f"{rec.precision} (runs {actual})"
    return rec.precision


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 10 else f"{value:.2f}"


def _memory(rec: BenchRecord) -> str:
    if rec.peak_memory_bytes is None:
        return "-"
    text = f"{rec.peak_memory_bytes / _MIB:,.0f}"
    if rec.memory_increase_bytes is not None:
        text += f" (+{rec.memory_increase_bytes / _MIB:,.0f})"
    return text


def _energy(rec: BenchRecord) -> str:
    if rec.energy_mj_per_image is None:
        return "-"
    value = rec.energy_mj_per_image
    text = f"{value:.3g}" if value < 1000 else f"{value:,.0f}"
    estimate = (rec.energy_method or "").startswith("estimate")
    return f"{ESTIMATE_MARK}{text}" if estimate else text
