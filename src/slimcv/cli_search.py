"""``slimcv search``: hardware-aware neural architecture search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slimcv.cli import AsJson, DataOpt, _emit, _progress, app
from slimcv.errors import SlimcvError


@app.command()
def search(
    space: Annotated[str, typer.Option("--space", help="Search space (mobilenetv2).")] = (
        "mobilenetv2"
    ),
    data: DataOpt = "digits",
    objectives: Annotated[
        str,
        typer.Option(
            help="Comma-separated: accuracy, latency:onnxruntime, latency:openvino, params, "
            "macs, size."
        ),
    ] = "accuracy,latency:onnxruntime",
    trials: Annotated[int, typer.Option(help="Candidates to evaluate.")] = 20,
    out: Annotated[
        Path, typer.Option("--out", help="Output directory (trials, front, artifacts).")
    ] = Path("search"),
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing non-empty --out.")
    ] = False,
    strategy: Annotated[str, typer.Option(help="random, evolution or nsga2.")] = "nsga2",
    estimator: Annotated[
        str, typer.Option(help="short-train, zero-cost or supernet.")
    ] = "short-train",
    epochs: Annotated[int, typer.Option(help="short-train: epochs per candidate.")] = 2,
    batch_size: Annotated[int, typer.Option(help="short-train: images per step.")] = 32,
    lr: Annotated[float, typer.Option(help="short-train: peak learning rate.")] = 5e-3,
    workers: Annotated[
        int, typer.Option(help="Trials at once; more than 1 starts a local Ray instance.")
    ] = 1,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Run trials on this Ray cluster.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Torch threads per trial (default: CPUs / workers).")
    ] = None,
    latency_budget_ms: Annotated[
        float | None,
        typer.Option("--latency-budget-ms", help="Candidates predicted slower are infeasible."),
    ] = None,
    latency_threads: Annotated[
        int, typer.Option("--latency-threads", help="Runtime threads for latency.")
    ] = 1,
    latency_table: Annotated[
        Path | None,
        typer.Option("--latency-table", help="Latency table JSON to start from and update."),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(help="A model to beat, e.g. arch:mobilenetv2:width=0.5,small_input=true."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for the strategy, weights and data.")] = 0,
    image_size: Annotated[
        int | None,
        typer.Option("--image-size", help="Full input side (default 32 for digits, else 224)."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Hardware-aware architecture search: a Pareto front of accuracy against latency (or
    params, MACs, size), with each front member saved as a reloadable artifact."""
    from slimcv.nas.api import SearchConfig
    from slimcv.nas.api import search as run_search
    from slimcv.report.search_tables import search_table

    config = SearchConfig(
        objectives=objectives,
        trials=trials,
        strategy=strategy,
        estimator=estimator,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        workers=workers,
        ray_address=ray_address,
        threads=threads,
        latency_budget_ms=latency_budget_ms,
        latency_threads=latency_threads,
        latency_table=str(latency_table) if latency_table is not None else None,
        baseline=baseline,
        seed=seed,
        image_size=image_size,
    )
    result = run_search(space, data, config, out_dir=out, force=force, progress=_progress(as_json))
    _emit(as_json, result.to_dict(), search_table(result))
    if result.message:  # an empty front: said plainly, and the exit code says so too
        raise SlimcvError(result.message)
