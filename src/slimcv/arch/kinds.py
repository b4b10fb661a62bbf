"""The registry of block kinds the spec grammar knows.

Each kind declares the option keys it accepts (so :mod:`slimcv.arch.spec` can reject a typo
at parse time) and a factory that builds one block. Kinds register next to their blocks, in
:mod:`slimcv.arch.blocks`; importing that package fills the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from slimcv.arch.layers import LayerFactory
from slimcv.arch.spec import BlockSpec
from slimcv.registry import Registry

ACT_LAYERS: dict[str, LayerFactory] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "silu": nn.SiLU,
    "hswish": nn.Hardswish,
    "gelu": nn.GELU,
}

BlockFactory = Callable[[int, BlockSpec, int, LayerFactory, LayerFactory], nn.Module]


@dataclass(frozen=True)
class BlockKind:
    """A block kind of the grammar: the option keys it accepts and how to build one block.

    ``build(in_channels, spec, stride, act_layer, norm_layer)`` builds one of the spec's
    ``repeats`` blocks; ``stride`` is the spec's stride for the first and 1 for the rest.
    """

    options: frozenset[str]
    build: BlockFactory
    summary: str = ""


BLOCK_KINDS: Registry[BlockKind] = Registry("block kind")
_COMMON = frozenset({"c", "r", "s", "a"})


def register_block(name: str, options: str, summary: str) -> Callable[[BlockFactory], BlockFactory]:
    """Registers ``factory`` as block kind ``name`` accepting ``options`` (e.g. ``"k e se"``)."""

    def decorator(factory: BlockFactory) -> BlockFactory:
        BLOCK_KINDS.register(name)(
            BlockKind(_COMMON | frozenset(options.split()), factory, summary)
        )
        return factory

    return decorator


def block_options() -> dict[str, set[str]]:
    """Kind -> accepted option keys, for the parser."""
    load_block_kinds()
    return {name: set(BLOCK_KINDS.get(name).options) for name in BLOCK_KINDS}


def load_block_kinds() -> None:
    # Kinds defined next to their blocks register on import.
    import slimcv.arch.blocks  # noqa: F401
