"""Shared pieces for the search tests: a tiny space and a latency table with a fake timer."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from slimcv.arch.spec import BlockSpec, NetworkSpec
from slimcv.nas.space import Candidate, Dimension, Genotype, SearchSpace


class TinySpace(SearchSpace):
    """Two stages, 2 x 2 x 2 x 2 = 16 genotypes: fast to build, train and exhaust."""

    name = "tiny"

    def __init__(self, image_size: int = 16) -> None:
        self.image_size = image_size
        super().__init__(
            [
                Dimension("resolution", (12, 16)),
                Dimension("width", (8, 16)),
                Dimension("k0", (3, 5)),
                Dimension("e0", (2, 4)),
            ]
        )

    def decode(self, genotype: Genotype) -> Candidate:
        self.check(genotype)
        blocks = (
            BlockSpec(
                "ir",
                out_channels=genotype["width"],
                kernel_size=genotype["k0"],
                stride=2,
                expansion=float(genotype["e0"]),
            ),
        )
        spec = NetworkSpec(blocks=blocks, stem_channels=8, stem_stride=1, act="relu6")
        return Candidate(spec, genotype["resolution"], dict(genotype))


def fake_timer(jobs: Sequence[tuple[nn.Module, tuple[int, ...]]]) -> list[float]:
    """Milliseconds that grow with parameters and input area, with a fixed call overhead."""
    times = []
    for module, shape in jobs:
        params = sum(p.numel() for p in module.parameters())
        area = shape[-1] * shape[-2] if len(shape) == 4 else 1
        times.append(0.01 + params * area * 1e-7)
    return times


def fake_table(runtime: str = "onnxruntime"):
    from slimcv.nas.latency import LatencyTable

    return LatencyTable(runtime, 1, timer=fake_timer)
