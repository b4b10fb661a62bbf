"""``slimcv optimize --recipe FILE``: run a recipe's stages into one resumable workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from slimcv.cli import AsJson, _emit, _progress, app


@app.command()
def optimize(
    recipe: Annotated[
        Path, typer.Option("--recipe", help="Recipe YAML (see recipes/).", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", help="Workspace directory.")],
    model: Annotated[
        str | None, typer.Option("--model", help="Model source; replaces the recipe's model.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out; verified stages skip.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace what --out holds.")] = False,
    as_json: AsJson = False,
) -> None:
    """Run a recipe (train, prune, quantize, export, bench...) into one workspace with a
    manifest of hashes and metrics; --resume after a crash redoes only unfinished stages."""
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
