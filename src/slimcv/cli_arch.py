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


ArchArg = Annotated[
    str,
    typer.Argument(
        help="A family (mobilenetv2, mobilenetv2:width=0.5,small_input=true), a spec string "
        "(stem_c16,ir_r2_k3_s2_e6_c24), or either as an arch: source.",
        show_default=False,
    ),
]


@arch_app.command("list")
def list_(as_json: AsJson = False) -> None:
    """Network families with their parameters and defaults, and the block kinds a spec can
    use with their options."""
    from slimcv.arch.describe import catalog
    from slimcv.report.arch_tables import catalog_tables

    data = catalog()
    _emit(as_json, data, *catalog_tables(data))


@arch_app.command("show")
def show(
    network: ArchArg,
    image_size: ImageSize = None,
    num_classes: Annotated[int, typer.Option("--num-classes", help="Classifier outputs.")] = 1000,
    as_json: AsJson = False,
) -> None:
    """The canonical spec string and, per stage, kind, repeats, channels, stride, kernel,
    expansion, SE, output size, params and MACs."""
    from slimcv.arch.describe import summarize_network
    from slimcv.errors import SlimcvError
    from slimcv.report.arch_tables import network_table

    if image_size is not None and image_size < 1:
        raise SlimcvError(f"--image-size must be positive, got {image_size}")
    if num_classes < 1:
        raise SlimcvError(f"--num-classes must be positive, got {num_classes}")
    summary = summarize_network(network, image_size=image_size, num_classes=num_classes)
    if not as_json:  # one unwrapped line, to copy into arch:SPEC
        print(f"spec: {summary.spec}")
    _emit(as_json, summary.to_dict(), network_table(summary))


@arch_app.command("build")
def build(
    network: ArchArg,
    num_classes: Annotated[int, typer.Option("--num-classes", help="Classifier outputs.")],
    out: Annotated[Path, typer.Option("--out", help="Output artifact directory.")],
    image_size: ImageSize = None,
    as_json: AsJson = False,
) -> None:
    """Write a randomly initialised network as a reloadable artifact (train it with
    slimcv train OUT, or use it as a distillation student)."""
    from rich.table import Table

    from slimcv.arch.artifacts import build_artifact

    result = build_artifact(network, out, num_classes=num_classes, image_size=image_size)
    table = Table(title=f"arch build -> {result.out_dir}")
    table.add_column("field")
    table.add_column("value")
    for key, value in result.to_dict().items():
        table.add_row(key, f"{value:,}" if key == "params" else str(value))
    _emit(as_json, result.to_dict(), table)
