"""What ``slimcv search --out DIR`` writes.

::

    DIR/
      search.json         the whole result (what --json prints)
      trials.json         every trial: genotype, spec, resolution, metrics, seconds, worker
      front.json          the Pareto front: metrics, predicted and measured latency, artifact
      front.md            the same as a Markdown table, with the baseline and who beats it
      front.png           all trials in grey, the front highlighted, the baseline marked
      latency_table.json  the unit timings the search used (reusable with --latency-table)
      front/<i>/          one reloadable slimcv artifact per front member (source arch:<spec>)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slimcv.nas.api import FrontMember, SearchResult
from slimcv.training.checkpoint import atomic_write

LATENCY_PREFIX = "latency:"


def write_json(path: Path, data: Any) -> None:
    """Writes ``data`` as JSON atomically (the training checkpoints' temp file + rename)."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode()))


def write_outputs(
    stage: Path,
    out: Path,
    result: SearchResult,
    weights: dict[str, dict[str, Any]],
    labels: list[str],
) -> None:
    """Writes every output into ``stage`` (renamed to ``out`` by the caller).

    Artifact paths recorded in the result point at their final place under ``out``.
    """
    for position, member in enumerate(result.front):
        _save_member(stage / "front" / str(position), result, member, weights, labels)
        member.artifact = str(out / "front" / str(position))
    write_json(stage / "search.json", result.to_dict())
    write_json(stage / "trials.json", [t.to_dict() for t in result.trials])
    write_json(
        stage / "front.json",
        {
            "objectives": result.objectives,
            "score_is_accuracy": result.score_is_accuracy,
            "front": [m.to_dict() for m in result.front],
            "baseline": result.baseline.to_dict() if result.baseline else None,
            "dominating_baseline": [m.trial for m in result.dominating],
            "message": result.message,
            "latency": result.latency,
            "notes": result.notes,
        },
    )
    (stage / "front.md").write_text(front_markdown(result))
    plot_front(result, stage / "front.png")


def _save_member(
    directory: Path,
    result: SearchResult,
    member: FrontMember,
    weights: dict[str, dict[str, Any]],
    labels: list[str],
) -> None:
    import torch

    from slimcv.arch import build_network
    from slimcv.sources.artifact import save_artifact
    from slimcv.sources.model import LoadedModel, Preprocess

    torch.manual_seed(result.config.get("seed", 0))  # the estimator's initialisation
    module = build_network(member.spec, result.num_classes)
    state = weights.get(member.key)
    if state is not None:
        module.load_state_dict(state)
        member.trained = True
    module.eval()
    model = LoadedModel(
        source=f"arch:{member.spec}",
        num_classes=result.num_classes,
        preprocess=Preprocess(image_size=member.resolution),
        module=module,
        labels=list(labels),
    )
    metrics: dict[str, Any] = dict(member.metrics)
    if member.latency_measured_ms is not None:
        metrics["latency_measured_ms"] = member.latency_measured_ms
    metrics["score_is_accuracy"] = result.score_is_accuracy
    metrics["trained"] = member.trained
    args = {
        "space": result.space,
        "data": result.data,
        "trial": member.trial,
        "estimator": result.estimator,
        "epochs": result.config.get("epochs"),
        "seed": result.config.get("seed"),
    }
    directory.parent.mkdir(parents=True, exist_ok=True)
    save_artifact(directory, model, command="search", args=args, metrics=metrics)


def _latency_key(result: SearchResult) -> str | None:
    return next((o["key"] for o in result.objectives if o["key"].startswith(LATENCY_PREFIX)), None)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def front_markdown(result: SearchResult) -> str:
    """The front as a Markdown table, with the baseline and which members dominate it."""
    accuracy = "top-1 %" if result.score_is_accuracy else "proxy score"
    latency = _latency_key(result)
    objectives = ", ".join(f"{o['key']} ({o['direction']})" for o in result.objectives)
    lines = [
        f"# Pareto front: {result.space} on {result.data}",
        "",
        f"Objectives: {objectives}. "
        f"Estimator: {result.estimator}; {len(result.trials)} trials, "
        f"{result.duplicates} duplicate proposals served from the cache.",
        "",
    ]
    lines += [f"- {note}" for note in result.notes]
    lines.append("")
    if result.message:
        lines += [f"**{result.message}**", ""]
    header = ["#", "trial", accuracy]
    if latency:
        header += ["predicted ms", "measured ms"]
    header += ["params", "MMACs", "res", "beats baseline", "spec"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def row(
        label: str,
        trial: str,
        metrics: dict[str, float],
        pred: Any,
        meas: Any,
        dom: str,
        res: int,
        spec: str,
    ) -> str:
        cells = [label, trial, _fmt(metrics.get("accuracy"), 2)]
        if latency:
            cells += [_fmt(pred), _fmt(meas)]
        cells += [
            f"{int(metrics.get('params', 0)):,}",
            f"{metrics.get('macs', 0) / 1e6:.2f}",
            str(res),
            dom,
            f"`{spec}`",
        ]
        return "| " + " | ".join(cells) + " |"

    for i, m in enumerate(result.front):
        dom = {True: "yes", False: "no", None: "-"}[m.dominates_baseline]
        lines.append(
            row(
                str(i),
                str(m.trial),
                m.metrics,
                m.latency_predicted_ms,
                m.latency_measured_ms,
                dom,
                m.resolution,
                m.spec,
            )
        )
    base = result.baseline
    if base is not None:
        lines.append(
            row(
                "baseline",
                "-",
                base.metrics,
                base.latency_predicted_ms,
                base.latency_measured_ms,
                "",
                base.resolution,
                base.spec,
            )
        )
        lines.append("")
        winners = result.dominating
        if base.error:
            lines.append(f"The baseline {base.source} failed: {base.error}")
        elif winners:
            lines.append(
                f"{len(winners)} front member(s) dominate the baseline {base.source} (better in "
                f"every objective, measured latency): "
                + ", ".join(f"#{result.front.index(m)} (trial {m.trial})" for m in winners)
                + "."
            )
        else:
            lines.append(f"No front member dominates the baseline {base.source}.")
    return "\n".join(lines) + "\n"


def plot_front(result: SearchResult, path: Path) -> None:
    """Accuracy against the first other objective: trials grey, front red, baseline a star."""
    from matplotlib.figure import Figure

    keys = [o["key"] for o in result.objectives]
    y_key = "accuracy" if "accuracy" in keys else keys[0]
    x_key = next((k for k in keys if k != y_key), "macs")
    ok = [t for t in result.trials if t.status == "ok"]
    fig = Figure(figsize=(7, 4.5), dpi=110)
    ax = fig.add_subplot()
    ax.scatter(
        [t.metrics[x_key] for t in ok],
        [t.metrics[y_key] for t in ok],
        c="0.7",
        s=18,
        label=f"trials ({len(ok)})",
    )
    front = sorted(result.front, key=lambda m: m.metrics[x_key])
    ax.plot(
        [m.metrics[x_key] for m in front],
        [m.metrics[y_key] for m in front],
        "o-",
        c="tab:red",
        ms=6,
        label=f"Pareto front ({len(front)})",
    )
    if x_key.startswith(LATENCY_PREFIX) and any(m.latency_measured_ms for m in front):
        ax.scatter(
            [m.latency_measured_ms for m in front],
            [m.metrics[y_key] for m in front],
            marker="x",
            c="tab:red",
            s=30,
            label="front, measured latency",
        )
    base = result.baseline
    if base is not None and y_key in base.metrics:
        x = (
            base.latency_predicted_ms
            if x_key.startswith(LATENCY_PREFIX)
            else base.metrics.get(x_key)
        )
        if x is not None:
            ax.scatter(
                [x],
                [base.metrics[y_key]],
                marker="*",
                c="tab:blue",
                s=160,
                label=f"baseline {base.source}",
            )
        if x_key.startswith(LATENCY_PREFIX) and base.latency_measured_ms is not None:
            ax.scatter(
                [base.latency_measured_ms], [base.metrics[y_key]], marker="x", c="tab:blue", s=40
            )
    x_label = f"{x_key} (ms, predicted)" if x_key.startswith(LATENCY_PREFIX) else x_key
    y_label = y_key if result.score_is_accuracy or y_key != "accuracy" else "accuracy (proxy)"
    ax.set_xlabel(x_label)
    ax.set_ylabel(
        y_label + (" top-1 %" if y_key == "accuracy" and result.score_is_accuracy else "")
    )
    ax.set_title(
        f"{result.space} on {result.data}: {result.estimator}, {len(result.trials)} trials"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
