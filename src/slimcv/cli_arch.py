"""``slimcv arch list|show|build``: efficient architectures described as data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from slimcv.cli import AsJson, ImageSize, ModelArg, NumClasses, Trust, Weights, _emit, _load, app

if TYPE_CHECKING:
    from rich.table import Table

    from slimcv.arch.surgery import SeparableResult

arch_app = typer.Typer(
    help="Efficient architectures: list families, show a spec, build a model.",
    no_args_is_help=True,
)
app.add_typer(arch_app, name="arch")


@arch_app.command("separable")
def separable(
    model: ModelArg,
    out: Annotated[Path, typer.Option("--out", help="Output artifact directory.")],
    min_channels: Annotated[
        int, typer.Option("--min-channels", help="Convs with fewer input channels stay.")
    ] = 16,
    kernel_sizes: Annotated[
        str, typer.Option("--kernel-sizes", help="Square kernel sizes to replace.")
    ] = "3,5,7",
    rank: Annotated[
        int, typer.Option(help="Depthwise filters per input channel (K*K is exact).")
    ] = 1,
    num_classes: NumClasses = None,
    weights: Weights = None,
    trust_checkpoint: Trust = False,
    image_size: ImageSize = None,
    as_json: AsJson = False,
) -> None:
    """Replace standard KxK convs by depthwise + pointwise pairs (SVD-initialised); then
    recover accuracy with: slimcv distill --teacher MODEL --student OUT."""
    from slimcv.arch.surgery import SeparableConfig
    from slimcv.arch.surgery import separable as run_separable
    from slimcv.errors import SlimcvError

    try:
        sizes = tuple(int(k) for k in kernel_sizes.split(",") if k.strip())
    except ValueError:
        raise SlimcvError(f"--kernel-sizes must be integers, got {kernel_sizes!r}") from None
    config = SeparableConfig(min_channels=min_channels, kernel_sizes=sizes, rank=rank)
    loaded = _load(model, num_classes, weights, trust_checkpoint, image_size)
    result = run_separable(loaded, out, config)
    _emit(as_json, result.to_dict(), _separable_table(result))


def _separable_table(result: SeparableResult) -> Table:
    from rich.table import Table

    table = Table(title=f"separable convs -> {result.out_dir}")
    table.add_column("figure")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_row("MACs", f"{result.macs_before:,}", f"{result.macs_after:,}")
    table.add_row("params", f"{result.params_before:,}", f"{result.params_after:,}")
    table.add_row("convs replaced", "", str(len(result.replaced)))
    return table
