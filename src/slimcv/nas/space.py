"""Search spaces: named dimensions with finite choices, decoded into architectures.

A point in a space is a *genotype*: a dict from dimension name to one of its choices. Every
strategy (random, evolution, NSGA-II) works on genotypes only, so a new space is a new
``decode`` and the strategies, estimators and latency table need no change. ``decode`` turns a
genotype into a :class:`Candidate`: a :class:`~slimcv.arch.spec.NetworkSpec` plus the input
resolution, since resolution is searched too.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slimcv.arch.spec import BlockSpec, NetworkSpec
from slimcv.registry import Registry

Genotype = dict[str, Any]


@dataclass(frozen=True)
class Dimension:
    """One searched choice, e.g. ``k2`` (kernel of stage 2) with choices ``(3, 5, 7)``."""

    name: str
    choices: tuple[Any, ...]
    description: str = ""


@dataclass(frozen=True)
class Candidate:
    """A decoded architecture: what to build and at which input size."""

    spec: NetworkSpec
    image_size: int
    genotype: Genotype = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        """A string that identifies the architecture (spec and resolution)."""
        return f"{self.spec.to_string()}@{self.image_size}"


class SearchSpace:
    """Base class: subclasses define :attr:`dimensions` and :meth:`decode`."""

    name = ""
    description = ""

    def __init__(self, dimensions: list[Dimension]) -> None:
        self.dimensions = dimensions
        self._by_name = {d.name: d for d in dimensions}

    def decode(self, genotype: Genotype) -> Candidate:
        raise NotImplementedError

    def sample(self, rng: random.Random) -> Genotype:
        """A uniformly random genotype."""
        return {d.name: rng.choice(d.choices) for d in self.dimensions}

    def mutate(self, genotype: Genotype, rng: random.Random) -> Genotype:
        """The genotype with one dimension changed to a different choice (regularized
        evolution's mutation)."""
        changeable = [d for d in self.dimensions if len(d.choices) > 1]
        dim = rng.choice(changeable)
        child = dict(genotype)
        child[dim.name] = rng.choice([c for c in dim.choices if c != genotype[dim.name]])
        return child

    def size(self) -> int:
        """How many genotypes the space holds."""
        total = 1
        for d in self.dimensions:
            total *= len(d.choices)
        return total

    def check(self, genotype: Genotype) -> None:
        """Raises ``ValueError`` if ``genotype`` is not a point of this space."""
        missing = [d.name for d in self.dimensions if d.name not in genotype]
        if missing:
            raise ValueError(f"genotype lacks {', '.join(missing)}")
        for name, value in genotype.items():
            dim = self._by_name.get(name)
            if dim is None or value not in dim.choices:
                raise ValueError(f"{name}={value!r} is not a choice of space {self.name}")


SpaceFactory = Callable[[int], SearchSpace]
SPACES: Registry[SpaceFactory] = Registry("search space")


@dataclass(frozen=True)
class StageLayout:
    """The fixed skeleton of a stage: base width and stride of its first block."""

    channels: int
    stride: int


class MobileNetV2Space(SearchSpace):
    """Inverted-residual networks (the MobileNetV2 / EfficientNet / Once-for-All family).

    Searched per stage: depth (blocks), depthwise kernel, expansion ratio, squeeze-excitation;
    globally: a width multiplier and the input resolution. Small inputs (64 px or less, such as
    digits) keep the stem at stride 1 and use four stages; larger inputs use MobileNetV2's
    seven-stage layout with a stride-2 stem.
    """

    name = "mobilenetv2"
    description = "inverted residuals: depth, kernel, expansion, SE per stage; width; resolution"

    depths = (1, 2, 3)
    kernels = (3, 5, 7)
    expansions = (2, 3, 4, 6)
    se_ratios = (0.0, 0.25)
    widths = (0.5, 0.75, 1.0)
    resolution_scales = (0.75, 0.875, 1.0)

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size
        if image_size <= 64:
            self.stem = StageLayout(16, 1)
            self.stages = (
                StageLayout(16, 1),
                StageLayout(24, 2),
                StageLayout(40, 2),
                StageLayout(80, 2),
            )
            self.head = 0
        else:
            self.stem = StageLayout(32, 2)
            self.stages = tuple(
                StageLayout(c, s)
                for c, s in ((16, 1), (24, 2), (32, 2), (64, 2), (96, 1), (160, 2), (320, 1))
            )
            self.head = 1280
        resolutions = tuple(
            sorted({max(8, int(round(image_size * f / 4)) * 4) for f in self.resolution_scales})
        )
        dims = [
            Dimension("resolution", resolutions, "input side in pixels"),
            Dimension("width", self.widths, "width multiplier of every stage"),
        ]
        for index in range(len(self.stages)):
            dims += [
                Dimension(f"d{index}", self.depths, f"blocks in stage {index}"),
                Dimension(f"k{index}", self.kernels, f"depthwise kernel in stage {index}"),
                Dimension(f"e{index}", self.expansions, f"expansion ratio in stage {index}"),
                Dimension(f"se{index}", self.se_ratios, f"SE ratio in stage {index}"),
            ]
        super().__init__(dims)

    def decode(self, genotype: Genotype) -> Candidate:
        self.check(genotype)
        from slimcv.arch.layers import make_divisible

        width = genotype["width"]
        blocks = tuple(
            BlockSpec(
                "ir",
                out_channels=make_divisible(stage.channels * width),
                repeats=genotype[f"d{i}"],
                kernel_size=genotype[f"k{i}"],
                stride=stage.stride,
                expansion=float(genotype[f"e{i}"]),
                se_ratio=genotype[f"se{i}"],
            )
            for i, stage in enumerate(self.stages)
        )
        spec = NetworkSpec(
            blocks=blocks,
            stem_channels=make_divisible(self.stem.channels * width),
            stem_stride=self.stem.stride,
            head_channels=self.head,
            act="relu6",
        )
        return Candidate(spec, genotype["resolution"], dict(genotype))


SPACES.register("mobilenetv2")(MobileNetV2Space)


def get_space(name: str, image_size: int) -> SearchSpace:
    """The space ``name`` for inputs of ``image_size`` pixels.

    Raises:
        UnknownNameError: no such space; the message lists the known ones.
    """
    return SPACES.get(name)(image_size)
