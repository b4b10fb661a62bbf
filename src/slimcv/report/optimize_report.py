"""The auto-mode report: one self-contained HTML page, a JSON file and a Markdown summary.

Everything is rebuilt from the workspace's stage outputs (``slimcv report DIR``), so the
report never holds a figure the workspace does not. The HTML page has no external resource at
all - plots are inline SVG, styles inline - so it opens offline and makes no network request.
"""

from __future__ import annotations

import html
import io
import json
import re
from pathlib import Path
from typing import Any

from slimcv.errors import ArtifactError
from slimcv.report.tables import human_bytes, human_count
from slimcv.training.checkpoint import atomic_write

REPORT_FILES = {"html": "report.html", "json": "report.json", "md": "report.md"}


def collect(workspace: Path) -> dict[str, Any]:
    """Reads every stage's result into one dictionary (what ``report.json`` holds)."""
    manifest_path = workspace / "workspace.json"
    if not manifest_path.is_file():
        raise ArtifactError(f"{workspace} is not a slimcv workspace (no workspace.json)")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("kind") != "auto":
        raise ArtifactError(
            f"{workspace} was made by a recipe, not auto mode; its stages are in workspace.json"
        )
    stages: dict[str, Any] = {}
    for stage in manifest["stages"]:
        if stage["status"] != "done":
            raise ArtifactError(
                f"{workspace}: stage {stage['name']} is not finished; run slimcv optimize "
                "--resume first"
            )
        result = workspace / stage["directory"] / "result.json"
        if result.is_file():  # the train stage's output is an artifact, not a result
            stages[stage["name"]] = json.loads(result.read_text())
    return {
        "workspace": str(workspace),
        "model": manifest["model"],
        "data": manifest["data"],
        "auto": manifest["auto"],
        "command": manifest.get("command"),
        "versions": manifest.get("versions", {}),
        "stage_seconds": {s["name"]: s["seconds"] for s in manifest["stages"]},
        "baseline": {k: v for k, v in stages["baseline"].items() if k != "layers"},
        "sensitivity": stages["sensitivity"].get("curves"),
        "candidates": {k: v for k, v in stages["candidates"].items() if k != "artifact_manifests"},
        "latency": stages["latency"],
        "selection": stages["select"],
        "bench": stages["bench"],
        "select_dir": next(s["directory"] for s in manifest["stages"] if s["name"] == "select"),
    }


def write_report(workspace: str | Path) -> dict[str, Path]:
    """Writes ``report.html``, ``report.json`` and ``report.md`` into ``workspace``."""
    workspace = Path(workspace).resolve()
    data = collect(workspace)
    texts = {
        "json": json.dumps(data, indent=2),
        "md": markdown(data),
        "html": render_html(data),
    }
    paths = {}
    for key, text in texts.items():
        path = workspace / REPORT_FILES[key]
        atomic_write(path, lambda fh, text=text: fh.write(text.encode()))
        paths[key] = path
    return paths


# ---------------------------------------------------------------- figures of the summary


def _record(bench: dict[str, Any], role: str, backend: str, batch: int) -> dict[str, Any] | None:
    for record in bench.get(role, {}).get("records", []):
        if record["backend"] == backend and record["batch"] == batch and record["status"] == "ok":
            return record
    return None


def before_after_rows(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(quantity, baseline, chosen) rows of the before/after table."""
    selection, target = data["selection"], data["auto"]["target"]
    batch = data["auto"]["batch"]
    bench = data["bench"]
    base, chosen = selection["baseline"], selection.get("chosen")
    many = max(
        (r["batch"] for r in bench["baseline"]["records"] if r["status"] == "ok"), default=batch
    )

    def rec(role: str, b: int) -> dict[str, Any] | None:
        return _record(bench, role, target, b)

    def fmt(value: Any, kind: str) -> str:
        if value is None:
            return "-"
        if kind == "count":
            return human_count(value)
        if kind == "bytes":
            return human_bytes(value)
        if kind == "ms":
            return f"{value:.3f} ms"
        if kind == "ips":
            return f"{value:,.0f} img/s"
        if kind == "mj":
            return f"{value:.3f} mJ"
        return f"{value:.2f} %"

    def both(getter: Any, kind: str) -> tuple[str, str]:
        return fmt(getter("baseline", base), kind), (
            fmt(getter("chosen", chosen), kind) if chosen else "-"
        )

    def field(role: str, b: int, key: str) -> Any:
        record = rec(role, b)
        return record.get(key) if record else None

    rows = [
        ("model", base["name"], chosen["name"] if chosen else "none"),
        ("params", *both(lambda r, v: v["params"], "count")),
        ("MACs (batch 1)", *both(lambda r, v: v["macs"], "count")),
        ("model file", *both(lambda r, v: v["size_bytes"], "bytes")),
        (f"top-1 on {target}", *both(lambda r, v: v["top1"], "pct")),
        (
            f"latency p50, batch {batch}",
            *both(lambda r, v: field(r, batch, "median_ms"), "ms"),
        ),
        (f"latency p90, batch {batch}", *both(lambda r, v: field(r, batch, "p90_ms"), "ms")),
        (
            f"throughput, batch {many}",
            *both(lambda r, v: field(r, many, "throughput_ips"), "ips"),
        ),
        (
            f"peak memory, batch {batch}",
            *both(lambda r, v: field(r, batch, "peak_memory_bytes"), "bytes"),
        ),
        (
            f"energy per image, batch {batch}",
            *both(lambda r, v: field(r, batch, "energy_mj_per_image"), "mj"),
        ),
    ]
    return rows


def headline(data: dict[str, Any]) -> str:
    selection = data["selection"]
    target = data["auto"]["target"]
    chosen = selection.get("chosen")
    if not chosen:
        return f"No model chosen: {selection['reason']}."
    base = selection["baseline"]
    lines = (
        f"{chosen['name']} on {target}: top-1 {chosen['top1']:.2f}% "
        f"(baseline {base['top1']:.2f}%, drop {base['top1'] - chosen['top1']:.2f} points, "
        f"bound {data['auto']['max_drop']:g}); {chosen['latency_ms']:.3f} ms at batch "
        f"{data['auto']['batch']}, {base['latency_ms'] / chosen['latency_ms']:.1f}x faster than "
        f"the baseline on {target} f32"
    )
    if selection.get("torch_ms"):
        lines += (
            f" and {selection['torch_ms'] / chosen['latency_ms']:.1f}x faster than it in "
            "PyTorch eager f32"
        )
    return lines + "."


def reproduce_commands(data: dict[str, Any]) -> list[str]:
    commands = []
    if data.get("command"):
        commands.extend(data["command"].splitlines())
    commands.append(f"slimcv report {data['workspace']}")
    return commands


# ---------------------------------------------------------------- Markdown


def markdown(data: dict[str, Any]) -> str:
    selection = data["selection"]
    lines = [
        f"# slimcv optimize: {data['model']} on {data['data']}, target {data['auto']['target']}",
        "",
        headline(data),
        "",
        f"Choice: {selection['reason']}.",
        "",
        "| | baseline | chosen |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in before_after_rows(data)]
    lines += [
        "",
        "## Candidates (latency on the target; * = Pareto front)",
        "",
        "| candidate | MACs | top-1 % | latency ms | p90 ms | size |",
        "|---|---|---|---|---|---|",
    ]
    front = set(selection["front"])
    for v in sorted(selection["variants"], key=lambda v: v["latency_ms"]):
        mark = "*" if v["name"] in front else ""
        lines.append(
            f"| {v['name']}{mark} | {human_count(v['macs'])} | {v['top1']:.2f} | "
            f"{v['latency_ms']:.4f} | {v['p90_ms']:.4f} | {human_bytes(v['size_bytes'])} |"
        )
    lines += [""] + [
        f"Level {lvl['level']} failed: {lvl['error']}."
        for lvl in data["candidates"].get("levels", [])
        if lvl.get("error")
    ]
    lines += ["", f"Latency: {data['latency']['method']}.", "", "## Reproduce", ""]
    lines += [f"    {c}" for c in reproduce_commands(data)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- plots (inline SVG)


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE (an external DTD)
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.DOTALL)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable
    return plt


def pareto_svg(data: dict[str, Any]) -> str:
    """Top-1 against latency of every candidate, per runtime precision, front joined."""
    plt = _pyplot()
    selection, target = data["selection"], data["auto"]["target"]
    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=100)
    groups: dict[str, list[dict[str, Any]]] = {}
    for v in selection["variants"]:
        label = f"{target} {v['name'].rsplit('-', 1)[-1] if v['kind'] == 'float' else 'int8'}"
        if v["name"].endswith("int8-mixed"):
            label = f"{target} int8 mixed"
        groups.setdefault(label, []).append(v)
    for label, members in sorted(groups.items()):
        ax.scatter(
            [v["latency_ms"] for v in members],
            [v["top1"] for v in members],
            label=label,
            s=36,
            alpha=0.85,
        )
    front = [v for v in selection["variants"] if v["name"] in set(selection["front"])]
    front.sort(key=lambda v: v["latency_ms"])
    ax.plot(
        [v["latency_ms"] for v in front],
        [v["top1"] for v in front],
        color="black",
        linewidth=1,
        label="Pareto front",
    )
    if selection.get("torch_ms"):
        base = selection["baseline"]
        ax.scatter(
            [selection["torch_ms"]],
            [data["baseline"]["torch_top1"]],
            marker="s",
            color="grey",
            label="baseline, PyTorch eager f32",
            s=40,
        )
        ax.annotate(
            "baseline",
            (base["latency_ms"], base["top1"]),
            fontsize=8,
            xytext=(4, -10),
            textcoords="offset points",
        )
    chosen = selection.get("chosen")
    if chosen:
        ax.scatter(
            [chosen["latency_ms"]],
            [chosen["top1"]],
            marker="*",
            s=260,
            color="gold",
            edgecolor="black",
            zorder=5,
            label=f"chosen: {chosen['name']}",
        )
    ax.axhline(
        selection["floor"],
        color="red",
        linestyle="--",
        linewidth=1,
        label=f"accuracy floor {selection['floor']:.2f}",
    )
    if selection.get("latency_budget_ms"):
        ax.axvline(
            selection["latency_budget_ms"],
            color="purple",
            linestyle=":",
            label=f"budget {selection['latency_budget_ms']:g} ms",
        )
    ax.set_xscale("log")
    ax.set_xlabel(f"latency, ms (batch {data['auto']['batch']}, median; log scale)")
    ax.set_ylabel("top-1 % (val, on the runtime)")
    ax.set_title(f"accuracy against latency on {target}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    return _svg(fig)


def blocks_svg(data: dict[str, Any]) -> str:
    """MACs and measured time per block, baseline beside chosen."""
    plt = _pyplot()
    bench = data["bench"]
    roles = [r for r in ("baseline", "chosen") if r in bench]
    order = list(bench["baseline"]["macs_blocks"])
    for role in roles:
        for block in bench[role]["latency_blocks"].get("blocks", {}):
            if block not in order:
                order.append(block)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(9, 0.28 * len(order) + 1.6), dpi=100, sharey=True
    )
    height = 0.8 / len(roles)
    for i, role in enumerate(roles):
        ys = [k + i * height for k in range(len(order))]
        macs = bench[role]["macs_blocks"]
        ms = bench[role]["latency_blocks"].get("blocks", {})
        left.barh(ys, [macs.get(b, 0) / 1e6 for b in order], height=height, label=role)
        right.barh(ys, [ms.get(b, 0.0) for b in order], height=height, label=role)
    left.set_yticks([k + height * (len(roles) - 1) / 2 for k in range(len(order))])
    left.set_yticklabels(order, fontsize=7)
    left.invert_yaxis()
    left.set_xlabel("MMACs (batch 1)")
    right.set_xlabel(f"ms on {data['auto']['target']} (runtime profiler)")
    left.legend(fontsize=7)
    left.grid(alpha=0.3, axis="x")
    right.grid(alpha=0.3, axis="x")
    fig.suptitle("where the work and the time go, per block")
    return _svg(fig)


def sensitivity_svg(data: dict[str, Any]) -> str | None:
    curves = data.get("sensitivity")
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=100)
    order = sorted(curves["curves"], key=lambda c: min(c["top1"]))
    for rank, curve in enumerate(order):
        label = curve["layer"] if rank < 8 else None
        ax.plot(
            [0.0, *curve["ratios"]],
            [curves["baseline_top1"], *curve["top1"]],
            marker="o",
            markersize=3,
            linewidth=1.2 if label else 0.6,
            alpha=1 if label else 0.35,
            label=label,
        )
    ax.set_xlabel("fraction of the layer's channels removed (that layer alone)")
    ax.set_ylabel("top-1 %")
    ax.set_title(
        f"pruning sensitivity per layer ({curves['criterion']}, {curves['samples']} val images)"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", title="most sensitive", title_fontsize=7)
    return _svg(fig)


# ---------------------------------------------------------------- HTML

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1050px;color:#1d2330;line-height:1.45;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;
border-bottom:1px solid #d8dde6;padding-bottom:.2rem}
.headline{background:#eef6ee;border-left:4px solid #3a8a3a;padding:.7rem 1rem;margin:1rem 0}
.fail{background:#fbeeee;border-left-color:#b03030}
table{border-collapse:collapse;font-size:.88rem;margin:.5rem 0}
td,th{border:1px solid #d8dde6;padding:.25rem .6rem;text-align:right}
th{background:#f3f5f8}td:first-child,th:first-child{text-align:left}
tr.front td{font-weight:600}tr.chosen td{background:#fff6d5}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto}
figcaption,.note{font-size:.82rem;color:#555}code,pre{background:#f3f5f8;font-size:.85rem}
pre{padding:.6rem;overflow-x:auto}
"""


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    assert all(len(row) == len(header) for row in rows), "a row and the header disagree"
    out = ["<table><tr>", *(f"<th>{html.escape(h)}</th>" for h in header), "</tr>"]
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _figure(plot_id: str, svg: str, caption: str) -> str:
    return (
        f'<figure class="plot" id="{plot_id}">{svg}'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def render_html(data: dict[str, Any]) -> str:
    selection, auto = data["selection"], data["auto"]
    target = auto["target"]
    chosen = selection.get("chosen")
    front = set(selection["front"])
    variants = sorted(selection["variants"], key=lambda v: v["latency_ms"])
    candidate_rows = [
        [
            v["name"],
            f"{v['keep_macs']:.2f}",
            v.get("allocation") or "-",
            human_count(v["macs"]),
            f"{v['top1']:.2f}",
            f"{v['latency_ms']:.4f}",
            f"{v['p90_ms']:.4f}",
            human_bytes(v["size_bytes"]),
            ", ".join(v.get("float_layers") or []) or "-",
        ]
        for v in variants
    ]
    classes = [
        "chosen"
        if chosen and v["name"] == chosen["name"]
        else ("front" if v["name"] in front else "")
        for v in variants
    ]
    bench_rows = []
    for role in ("baseline", "chosen"):
        for r in data["bench"].get(role, {}).get("records", []):
            if r["status"] != "ok":
                bench_rows.append(
                    [
                        role,
                        r["backend"],
                        r["precision"],
                        str(r["batch"]),
                        r.get("reason") or r["status"],
                        "",
                        "",
                        "",
                        "",
                        "",
                    ]
                )
                continue
            bench_rows.append(
                [
                    role,
                    r["backend"],
                    r["precision"],
                    str(r["batch"]),
                    f"{r['median_ms']:.3f}",
                    f"{r['p90_ms']:.3f}",
                    f"{r['throughput_ips']:,.0f}",
                    human_bytes(r["peak_memory_bytes"]) if r.get("peak_memory_bytes") else "-",
                    f"{r['energy_mj_per_image']:.3f}" if r.get("energy_mj_per_image") else "-",
                    r.get("energy_method") or "-",
                ]
            )
    sens = sensitivity_svg(data)
    skipped = data["candidates"].get("skipped_levels") or []
    stage_rows = [[k, f"{v:.1f}"] for k, v in data["stage_seconds"].items()]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>slimcv optimize: {html.escape(data['model'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>slimcv optimize: {html.escape(data['model'])} on {html.escape(data['data'])}</h1>",
        f"<div class='note'>target {html.escape(target)}, accuracy bound {auto['max_drop']:g} "
        f"points, batch {auto['batch']}"
        + (
            f", latency budget {auto['latency_budget_ms']:g} ms"
            if auto.get("latency_budget_ms")
            else ""
        )
        + f"; workspace {html.escape(data['workspace'])}</div>",
        f"<div class='headline{'' if chosen else ' fail'}' id='headline'>"
        f"{html.escape(headline(data))}<br><span class='note'>"
        f"{html.escape(selection['reason'])}</span></div>",
        "<h2>Before and after</h2>",
        _table(["", "baseline", "chosen"], [list(r) for r in before_after_rows(data)]),
        f"<p class='note'>Latency, throughput, peak memory and energy from <code>slimcv bench"
        f"</code> on {html.escape(target)} after the search; energy method: "
        f"{html.escape(_energy_method(data))}.</p>",
        "<h2>Accuracy against latency</h2>",
        _figure(
            "plot-pareto",
            pareto_svg(data),
            f"Every candidate measured on {target}; the black line joins the Pareto front; "
            "the red line is the accuracy floor.",
        ),
        "<h2>Candidates</h2>",
        _table(
            [
                "candidate",
                "keep MACs",
                "allocation",
                "MACs",
                "top-1 %",
                "p50 ms",
                "p90 ms",
                "model file",
                "layers left in float",
            ],
            candidate_rows,
            classes,
        ),
        f"<p class='note'>Bold: on the Pareto front; highlighted: chosen. "
        f"{html.escape(data['latency']['method'])}; {data['latency']['threads']} threads."
        + (
            f" Levels not tried: {', '.join(f'{k:.2f}' for k in skipped)} "
            f"({html.escape(data['candidates'].get('skipped_reason') or '')})."
            if skipped
            else ""
        )
        + "".join(
            f" Level {html.escape(lvl['level'])} failed: {html.escape(lvl['error'])}."
            for lvl in data["candidates"].get("levels", [])
            if lvl.get("error")
        )
        + "</p>",
        "<h2>Per-block MACs and latency</h2>",
        _figure(
            "plot-blocks",
            blocks_svg(data),
            data["bench"]["baseline"]["latency_blocks"].get("method", ""),
        ),
        "<h2>Sensitivity</h2>",
        _figure(
            "plot-sensitivity",
            sens,
            "Top-1 when one layer alone is pruned; the allocation spends the MACs budget "
            "where these curves are flat.",
        )
        if sens
        else "<p class='note'>No pruning level below 1.0, so no sensitivity analysis.</p>",
        "<h2>Every measurement of the baseline and the chosen model</h2>",
        _table(
            [
                "model",
                "runtime",
                "precision",
                "batch",
                "p50 ms",
                "p90 ms",
                "img/s",
                "peak memory",
                "mJ/image",
                "energy method",
            ],
            bench_rows,
        ),
        "<h2>Reproduce</h2>",
        "<pre>" + html.escape("\n".join(reproduce_commands(data))) + "</pre>",
        "<h2>Run</h2>",
        _table(["stage", "seconds"], stage_rows),
        "<p class='note'>versions: "
        + html.escape(", ".join(f"{k} {v}" for k, v in sorted(data["versions"].items())))
        + f"; machine: {html.escape(str(data['latency'].get('machine', {}).get('cpu', '')))}"
        + "</p></body></html>",
    ]
    return "\n".join(parts)


def _energy_method(data: dict[str, Any]) -> str:
    for record in data["bench"]["baseline"]["records"]:
        if record.get("energy_method"):
            return record["energy_method"]
    return "not measured"
