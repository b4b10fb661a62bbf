"""``slimcv optimize``: a recipe's stages, or auto mode, into one resumable workspace;
``slimcv report DIR``: rebuild an auto-mode workspace's report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from slimcv.cli import AsJson, _emit, _progress, app
from slimcv.errors import SlimcvError


@app.command()
def optimize(
    out: Annotated[Path, typer.Option("--out", help="Workspace directory.")],
    recipe: Annotated[
        Path | None,
        typer.Option("--recipe", help="Recipe YAML (see recipes/); without it, auto mode."),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Model source (auto mode), or replaces the recipe's."),
    ] = None,
    data: Annotated[str | None, typer.Option("--data", help="Auto mode: data source.")] = None,
    target: Annotated[
        str, typer.Option("--target", help="Auto mode: onnxruntime, openvino or tensorrt.")
    ] = "onnxruntime",
    max_drop: Annotated[
        float, typer.Option("--max-drop", help="Auto mode: top-1 points the model may lose.")
    ] = 1.0,
    latency_budget_ms: Annotated[
        float | None,
        typer.Option("--latency-budget-ms", help="Auto mode: the chosen model must also meet it."),
    ] = None,
    batch: Annotated[
        int, typer.Option("--batch", help="Auto mode: batch latency is timed at.")
    ] = 1,
    keep_macs: Annotated[
        str,
        typer.Option("--keep-macs", help="Auto mode: MACs fractions to prune to, comma-separated."),
    ] = "1.0,0.5,0.25,0.12,0.08,0.05",
    allocations: Annotated[
        str,
        typer.Option(
            "--allocations",
            help="Auto mode: per-layer ratio allocations to try (sensitivity,uniform).",
        ),
    ] = "sensitivity,uniform",
    finetune_epochs: Annotated[
        int, typer.Option("--finetune-epochs", help="Auto mode: fine-tune epochs after pruning.")
    ] = 10,
    train_epochs: Annotated[
        int, typer.Option("--train-epochs", help="Auto mode: train the model first (0 = it is).")
    ] = 0,
    num_classes: Annotated[
        int | None, typer.Option("--num-classes", help="Auto mode: classifier outputs.")
    ] = None,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="Auto mode: input size.")
    ] = None,
    no_int8: Annotated[bool, typer.Option("--no-int8", help="Auto mode: float only.")] = False,
    workers: Annotated[
        int, typer.Option("--workers", help="Auto mode: candidates prepared at once (Ray).")
    ] = 1,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Auto mode: an existing Ray cluster.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="Threads for latency (default all cores).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out; verified stages skip.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace what --out holds.")] = False,
    as_json: AsJson = False,
) -> None:
    """Make a model fast on a target within an accuracy bound.

    Auto mode (--model, --data, --target, --max-drop): sensitivity, then pruning levels x INT8
    x runtime precisions, each measured on the target; the fastest within the bound, the
    Pareto front and report.html in --out. With --recipe: the recipe's stages. Both resume
    after a crash with --resume."""
    if recipe is not None:
        auto_only = {
            "--data": data is not None,
            "--latency-budget-ms": latency_budget_ms is not None,
            "--train-epochs": train_epochs != 0,
            "--workers": workers != 1,
            "--ray-address": ray_address is not None,
            "--no-int8": no_int8,
            "--allocations": allocations != "sensitivity,uniform",
        }
        given = [name for name, set_ in auto_only.items() if set_]
        if given:
            raise SlimcvError(
                f"{', '.join(given)}: auto-mode options; a recipe sets its stages' options itself"
            )
        _run_recipe(recipe, out, model, resume, force, as_json)
        return
    if model is None or data is None:
        raise SlimcvError("give --recipe FILE, or auto mode's --model and --data")
    from slimcv.pipeline.auto import AutoConfig, optimize_auto

    try:
        keeps = tuple(float(k) for k in keep_macs.split(",") if k.strip())
    except ValueError:
        raise SlimcvError(
            f"--keep-macs takes comma-separated fractions, got {keep_macs!r}"
        ) from None
    config = AutoConfig(
        target=target,
        max_drop=max_drop,
        latency_budget_ms=latency_budget_ms,
        batch=batch,
        keep_macs=keeps,
        allocations=tuple(a.strip() for a in allocations.split(",") if a.strip()),
        finetune_epochs=finetune_epochs,
        train_epochs=train_epochs,
        int8=not no_int8,
        workers=workers,
        ray_address=ray_address,
        threads=threads,
    )
    result = optimize_auto(
        model,
        data,
        out,
        config,
        num_classes=num_classes,
        image_size=image_size,
        resume=resume,
        force=force,
        progress=_progress(as_json),
        command=shlex.join(["slimcv", *sys.argv[1:]]) if sys.argv[1:2] == ["optimize"] else None,
    )
    _emit(as_json, result.to_dict(), *auto_tables(result.to_dict()))
    if result.selection.chosen is None:
        raise typer.Exit(2)


def auto_tables(data: dict) -> list[Table]:
    """The candidates, the before/after figures and where the report is."""
    from slimcv.report.optimize_report import before_after_rows, collect, headline

    report = collect(Path(data["out_dir"]))
    selection = data["selection"]
    candidates = Table(title=f"candidates on {data['config']['target']} (* = Pareto front)")
    for column in ("candidate", "MACs", "top-1 %", "p50 ms", "size"):
        candidates.add_column(column, justify="left" if column == "candidate" else "right")
    from slimcv.report.tables import human_bytes, human_count

    chosen = (selection.get("chosen") or {}).get("name")
    for v in sorted(selection["variants"], key=lambda v: v["latency_ms"]):
        mark = " *" if v["name"] in selection["front"] else ""
        name = f"[bold]{v['name']}{mark}[/bold]" if v["name"] == chosen else f"{v['name']}{mark}"
        candidates.add_row(
            name,
            human_count(v["macs"]),
            f"{v['top1']:.2f}",
            f"{v['latency_ms']:.4f}",
            human_bytes(v["size_bytes"]),
        )
    candidates.caption = selection["reason"]
    summary = Table(title=headline(report))
    for column in ("", "baseline", "chosen"):
        summary.add_column(column, justify="left" if not column else "right")
    for row in before_after_rows(report):
        summary.add_row(*row)
    summary.caption = f"report: {data['report'].get('html')} ({data['seconds']:.0f} s)"
    return [candidates, summary]


def _run_recipe(
    recipe: Path, out: Path, model: str | None, resume: bool, force: bool, as_json: bool
) -> None:
    from slimcv.pipeline.recipe import load_recipe
    from slimcv.pipeline.workspace import run_recipe

    loaded = load_recipe(recipe, model=model)
    result = run_recipe(loaded, out, resume=resume, force=force, progress=_progress(as_json))
    table = Table(title=f"workspace {result.out_dir} ({result.seconds:.1f} s)")
    for column in ("stage", "directory", "status", "seconds", "metrics"):
        table.add_column(column)
    for stage in result.stages:
        status = "reused (verified)" if stage.skipped else stage.status
        metrics = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in stage.metrics.items()
        )
        table.add_row(stage.name, stage.directory, status, f"{stage.seconds:.1f}", metrics)
    _emit(as_json, result.to_dict(), table)


@app.command()
def report(
    workspace: Annotated[Path, typer.Argument(help="A workspace written by slimcv optimize.")],
    as_json: AsJson = False,
) -> None:
    """Rebuild report.html, report.json and report.md from an auto-mode workspace."""
    from slimcv.report.optimize_report import collect, headline, write_report

    paths = write_report(workspace)
    data = collect(workspace.resolve())
    table = Table(title=headline(data))
    table.add_column("file")
    for key, path in paths.items():
        table.add_row(f"{key}: {path}")
    _emit(as_json, {k: str(v) for k, v in paths.items()}, table)
