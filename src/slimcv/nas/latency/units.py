"""A candidate network cut into the units a latency table times one by one.

A :class:`~slimcv.arch.SpecNet` runs stem, blocks, optional head conv, then pooling and the
classifier, each on the previous one's output. Each of these is a *unit*; its cost depends only
on what is in its key (the block token with its real stride and activation, the input channels
and the input resolution), so units recur across the candidates of a space and one measurement
serves them all. Keys are computed from the spec alone (no module is built), which keeps
:meth:`LatencyTable.predict <slimcv.nas.latency.LatencyTable.predict>` cheap enough for a
search that asks thousands of times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from torch import nn

from slimcv.arch.spec import NetworkSpec

Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class Unit:
    """One separately timed piece of a network.

    Attributes:
        key: everything that changes the unit's cost, e.g. ``ir_k5_s2_e4_c24_arelu6@16x28x28``
            (token with its real stride and activation, then input channels x height x width).
        kind: ``stem``, ``block``, ``head`` or ``classifier``.
        modules: the :class:`~slimcv.arch.SpecNet` submodules it stands for (``stages.1.0``).
        input_shape: NCHW input at batch 1.
        build: makes a freshly initialised module computing the unit (for timing it alone).
    """

    key: str
    kind: str
    modules: tuple[str, ...]
    input_shape: Shape
    build: Callable[[], nn.Module] = field(compare=False, repr=False)


def conv_out(size: int, stride: int) -> int:
    """Output side of a ``kernel // 2``-padded odd-kernel conv: the input side over the stride,
    rounded up (:class:`~slimcv.arch.layers.ConvNormAct`'s rule)."""
    return (size - 1) // stride + 1


def decompose(spec: NetworkSpec, image_size: int, num_classes: int) -> list[Unit]:
    """The units of ``spec`` at ``image_size`` pixels, in execution order.

    Every module of the :class:`~slimcv.arch.SpecNet` that computes something belongs to
    exactly one unit (identity placeholders such as an absent head belong to none), so the
    units' work adds up to the network's.
    """
    from slimcv.arch.kinds import ACT_LAYERS, BLOCK_KINDS, load_block_kinds
    from slimcv.arch.layers import ConvNormAct

    load_block_kinds()
    units: list[Unit] = []
    act = spec.act
    channels, side = 3, image_size

    def shape() -> Shape:
        return (1, channels, side, side)

    def where() -> str:
        return f"@{channels}x{side}x{side}"

    units.append(
        Unit(
            f"stem_c{spec.stem_channels}_s{spec.stem_stride}_a{act}{where()}",
            "stem",
            ("stem",),
            shape(),
            _partial(
                ConvNormAct, 3, spec.stem_channels, 3, spec.stem_stride, act_layer=ACT_LAYERS[act]
            ),
        )
    )
    channels, side = spec.stem_channels, conv_out(side, spec.stem_stride)
    for stage, block in enumerate(spec.blocks):
        kind = BLOCK_KINDS.get(block.kind)
        block_act = block.act or act
        for index in range(block.repeats):
            stride = block.stride if index == 0 else 1
            one = replace(block, repeats=1, stride=stride, act=block_act)
            units.append(
                Unit(
                    f"{one.to_string()}{where()}",
                    "block",
                    (f"stages.{stage}.{index}",),
                    shape(),
                    _partial(
                        kind.build, channels, one, stride, ACT_LAYERS[block_act], nn.BatchNorm2d
                    ),
                )
            )
            channels, side = block.out_channels, conv_out(side, stride)
    if spec.head_channels:
        units.append(
            Unit(
                f"head_c{spec.head_channels}_a{act}{where()}",
                "head",
                ("head",),
                shape(),
                _partial(ConvNormAct, channels, spec.head_channels, 1, act_layer=ACT_LAYERS[act]),
            )
        )
        channels = spec.head_channels
    units.append(
        Unit(
            f"classifier_c{num_classes}{where()}",
            "classifier",
            ("pool", "flatten", "dropout", "classifier"),
            shape(),
            _partial(_classifier, channels, num_classes),
        )
    )
    return units


def _classifier(channels: int, num_classes: int) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(channels, num_classes))


def _partial(
    factory: Callable[..., nn.Module], *args: object, **kwargs: object
) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        return factory(*args, **kwargs).eval()

    return build
