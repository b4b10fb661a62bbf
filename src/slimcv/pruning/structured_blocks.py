"""Depth pruning: replace whole residual blocks by identities.

A residual block computes ``x + f(x)``; when its output has the shape of its input, dropping it
leaves ``x`` - the network still runs, one block shallower. Residual networks degrade gracefully
under this (Veit et al., NeurIPS 2016: residual networks behave like ensembles of shallow
paths), and a removed block saves all its MACs, which channel pruning never does. The removal is
recorded as an ``identity_blocks`` architecture change, so that artifacts reload.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn

from slimcv.errors import SlimcvError
from slimcv.sources.arch_changes import identity_blocks_change, replace_with_identity


def remove_blocks_(
    module: nn.Module, example_input: torch.Tensor, names: list[str]
) -> dict[str, Any]:
    """Replaces the named blocks by ``nn.Identity`` in place.

    Args:
        module: the model.
        example_input: a batch the model accepts; one forward pass checks the block shapes.
        names: module names of the blocks (e.g. ``layer2.1`` of a torchvision ResNet).

    Returns:
        The ``identity_blocks`` change to append to the artifact's architecture changes.

    Raises:
        SlimcvError: a name is not a module, names the model itself or a block inside another
            named block, or names a block whose
            output shape differs from its input shape (or that the forward pass does not run
            exactly once on one tensor), so that an identity could not stand in for it.
    """
    names = list(dict.fromkeys(names))
    if not names:
        raise SlimcvError("remove_blocks_ needs at least one block name")
    known = dict(module.named_modules())
    blocks = {}
    for name in names:
        if not name or name not in known:
            close = difflib.get_close_matches(name, [n for n in known if n], n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise SlimcvError(f"no block named {name!r} in the model{hint}")
        blocks[name] = known[name]
    for name in names:
        outer = [other for other in names if name.startswith(other + ".")]
        if outer:
            raise SlimcvError(f"block {name} lies inside block {outer[0]}; name only one of them")
    shapes = _io_shapes(module, example_input, blocks)
    for name in names:
        calls = shapes.get(name, [])
        if len(calls) != 1:
            raise SlimcvError(
                f"block {name} runs {len(calls)} times in one forward pass; "
                "only a block that runs once can be replaced by an identity"
            )
        shape_in, shape_out = calls[0]
        if shape_in is None or shape_in != shape_out:
            raise SlimcvError(
                f"block {name} maps {_fmt(shape_in)} to {_fmt(shape_out)}; removing it would "
                "change shapes (only blocks whose output matches their input can go)"
            )
    for name in names:
        replace_with_identity(module, name)
    return identity_blocks_change(names)


def _io_shapes(
    module: nn.Module, example_input: torch.Tensor, blocks: dict[str, nn.Module]
) -> dict[str, list[tuple[tuple[int, ...] | None, tuple[int, ...] | None]]]:
    shapes: dict[str, list[tuple[tuple[int, ...] | None, tuple[int, ...] | None]]] = {}

    def hook(name: str):
        def record(_: nn.Module, args: tuple, output: Any) -> None:
            single = len(args) == 1 and isinstance(args[0], torch.Tensor)
            shape_in = tuple(args[0].shape) if single else None
            shape_out = tuple(output.shape) if isinstance(output, torch.Tensor) else None
            shapes.setdefault(name, []).append((shape_in, shape_out))

        return record

    handles = [block.register_forward_hook(hook(name)) for name, block in blocks.items()]
    training = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        with torch.no_grad():
            module(example_input)
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in training:
            m.training = flag
    return shapes


def _fmt(shape: tuple[int, ...] | None) -> str:
    return "x".join(map(str, shape)) if shape is not None else "a non-tensor"
