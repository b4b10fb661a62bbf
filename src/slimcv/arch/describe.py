"""What ``slimcv arch list`` and ``slimcv arch show`` report: the catalogue, and a network's
cost stage by stage.

A stage is one spec token (``stages.i`` of :class:`~slimcv.arch.builder.SpecNet`), plus the
stem, the head conv and the classifier, so the rows add up to the model's totals. Parameters
are counted on the modules; MACs come from
:func:`slimcv.analysis.profile.profile_model`'s per-layer results (one real forward pass),
summed over the layers under each stage's module name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from slimcv.arch.builder import SpecNet, build_network
from slimcv.arch.families import FAMILIES, resolve_arch
from slimcv.arch.kinds import BLOCK_KINDS, load_block_kinds
from slimcv.arch.spec import NetworkSpec


def arch_source(text: str) -> str:
    """``arch:...`` for a family name, ``FAMILY:key=value`` or spec string; ``arch:`` sources
    are returned unchanged."""
    text = text.strip()
    return text if text.startswith("arch:") else f"arch:{text}"


@dataclass
class StageSummary:
    """One row of ``slimcv arch show``.

    Attributes:
        name: ``stem``, ``stage0``..., ``head`` or ``classifier``.
        module: the module's qualified name in the built model (``stages.2``).
        kind: the block kind (``stem``, ``ir``, ``head``, ``linear``).
        repeats: blocks in the stage.
        channels: output channels (classes for the classifier).
        stride: stride of the stage's first block.
        kernel: kernel size, ``None`` where the spec leaves the kind's default.
        expansion: expansion ratio, ``None`` where the spec leaves the kind's default.
        se: squeeze-excitation ratio, 0 for none.
        output_size: ``[height, width]`` of the stage's output (``[]`` for the classifier).
        params: parameters of the stage.
        macs: multiply-accumulates of the stage at batch 1.
    """

    name: str
    module: str
    kind: str
    repeats: int
    channels: int
    stride: int
    kernel: int | None
    expansion: float | None
    se: float
    output_size: list[int]
    params: int
    macs: int


@dataclass
class NetworkSummary:
    """A network's canonical spec and its cost per stage; ``to_dict()`` is ``arch show --json``.

    Attributes:
        source: the ``arch:`` source that rebuilds it.
        spec: the canonical spec string (``parse_network(spec).to_string() == spec``).
        image_size: the input side profiled.
        num_classes: classifier outputs.
        params: total parameters (the sum of the stages' ``params``).
        macs: total MACs at batch 1 (the sum of the stages' ``macs``).
        total_stride: input side / final feature-map side.
        stages: one row per stage, in order.
        notes: how the figures were obtained.
    """

    source: str
    spec: str
    image_size: int
    num_classes: int
    params: int
    macs: int
    total_stride: int
    stages: list[StageSummary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_network(
    source: str, *, image_size: int | None = None, num_classes: int = 1000
) -> NetworkSummary:
    """Builds the network an ``arch:`` source (or bare family / spec string) names and
    profiles it stage by stage.

    Args:
        source: ``arch:FAMILY[:key=value,...]``, ``arch:SPEC``, or either without ``arch:``.
        image_size: input side; the family's resolution (224 for raw specs) by default.
        num_classes: classifier outputs.

    Raises:
        SpecError, UnknownNameError: a malformed spec or unknown family / parameter.
        InputShapeError: the network cannot take that input size.
    """
    from slimcv.analysis.profile import profile_model

    canonical = arch_source(source)
    spec, resolution = resolve_arch(canonical[len("arch:") :])
    size = image_size or resolution
    model = build_network(spec, num_classes)
    rows = _rows(model, spec)
    # Output sizes are recorded during the profiling pass: strides round up, and kinds such as
    # mvit may reshape, so they are read, not computed.
    shapes: list[list[int]] = [[] for _ in rows]
    handles = [
        module.register_forward_hook(_shape_hook(shapes, index))
        for index, (_, module, _) in enumerate(rows)
    ]
    try:
        result = profile_model(model, (1, 3, size, size))
    finally:
        for handle in handles:
            handle.remove()
    stages = []
    for (template, module, prefix), shape in zip(rows, shapes, strict=True):
        macs = sum(
            layer.macs
            for layer in result.layers
            if layer.name == prefix or layer.name.startswith(prefix + ".")
        )
        params = sum(p.numel() for p in module.parameters())
        stages.append(
            StageSummary(
                **template,
                output_size=shape[2:] if len(shape) == 4 else [],
                params=params,
                macs=macs,
            )
        )
    return NetworkSummary(
        source=canonical,
        spec=spec.to_string(),
        image_size=size,
        num_classes=num_classes,
        params=result.params,
        macs=result.macs,
        total_stride=spec.total_stride,
        stages=stages,
        notes=[
            "params: parameters of each stage's modules; they add up to the total",
            "macs: " + result.notes[0].removeprefix("macs: ") + "; summed over each stage's layers",
            "kernel/expansion null: the spec leaves the block kind's default",
        ],
    )


def _rows(model: SpecNet, spec: NetworkSpec) -> list[tuple[dict[str, Any], nn.Module, str]]:
    def row(name: str, kind: str, repeats: int, channels: int, stride: int, **rest: Any) -> dict:
        return {
            "name": name,
            "module": rest.pop("module", name),
            "kind": kind,
            "repeats": repeats,
            "channels": channels,
            "stride": stride,
            "kernel": rest.get("kernel"),
            "expansion": rest.get("expansion"),
            "se": rest.get("se", 0.0),
        }

    rows = [(row("stem", "stem", 1, spec.stem_channels, spec.stem_stride, kernel=3), model.stem)]
    for index, block in enumerate(spec.blocks):
        rows.append(
            (
                row(
                    f"stage{index}",
                    block.kind,
                    block.repeats,
                    block.out_channels,
                    block.stride,
                    module=f"stages.{index}",
                    kernel=block.kernel_size,
                    expansion=block.expansion,
                    se=block.se_ratio,
                ),
                model.stages[index],
            )
        )
    if spec.head_channels:
        rows.append((row("head", "head", 1, spec.head_channels, 1, kernel=1), model.head))
    rows.append((row("classifier", "linear", 1, model.num_classes, 1), model.classifier))
    return [(template, module, template["module"]) for template, module in rows]


def _shape_hook(shapes: list[list[int]], index: int) -> Any:
    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        if not shapes[index] and hasattr(output, "shape"):
            shapes[index] = list(output.shape)

    return hook


def catalog() -> dict[str, Any]:
    """``slimcv arch list --json``: families with parameters and defaults, block kinds with
    their options and summaries."""
    load_block_kinds()
    families = []
    for name in FAMILIES:
        family = FAMILIES.get(name)
        default = family()
        families.append(
            {
                "name": name,
                "summary": family.summary,
                "resolution": default.resolution,
                "params": [
                    {"name": p.name, "type": p.type_name, "default": p.default, "help": p.help}
                    for p in family.params
                ],
            }
        )
    kinds = [
        {
            "name": name,
            "options": sorted(BLOCK_KINDS.get(name).options),
            "summary": BLOCK_KINDS.get(name).summary,
        }
        for name in BLOCK_KINDS
    ]
    return {"families": families, "block_kinds": kinds}
