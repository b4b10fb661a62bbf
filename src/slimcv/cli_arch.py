"""``slimcv arch list|show|build``: efficient architectures described as data."""

from __future__ import annotations

import typer

from slimcv.cli import app

arch_app = typer.Typer(
    help="Efficient architectures: list families, show a spec, build a model.",
    no_args_is_help=True,
)
app.add_typer(arch_app, name="arch")
