"""Architecture changes recorded as data and replayed when an artifact reloads.

Structured pruning (and other surgery that keeps the module tree but changes widths) is
recorded as a ``resize`` change: the new shape of every tensor that changed and the new value
of every plain attribute (``out_channels``, ``num_features``, ``num_heads``...) that changed.
Replaying it on a freshly built architecture gives a module whose state dict the saved weights
fill exactly, with no pickle involved.

Depth pruning (whole residual blocks replaced by ``nn.Identity``) changes the module tree and is
recorded as an ``identity_blocks`` change instead: the dotted names of the removed blocks.
Depthwise-separable surgery (:mod:`slimcv.arch.surgery`) is a ``separable_convs`` change: the
names of the replaced convs and the depth multiplier.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from slimcv.errors import ArtifactError
from slimcv.sources.artifact import ARCH_CHANGES

_Plain = (int, float, bool)


def _plain(value: Any) -> bool:
    if isinstance(value, _Plain):
        return True
    return isinstance(value, (tuple, list)) and all(isinstance(v, _Plain) for v in value)


def snapshot(module: nn.Module) -> dict[str, Any]:
    """Shapes of all tensors and plain attributes of all submodules, to diff later."""
    tensors = {k: list(v.shape) for k, v in module.state_dict(keep_vars=True).items()}
    attributes = {
        name: {
            k: (list(v) if isinstance(v, (tuple, list)) else v)
            for k, v in vars(sub).items()
            if not k.startswith("__") and _plain(v)
        }
        for name, sub in module.named_modules()
    }
    return {"tensors": tensors, "attributes": attributes}


def resize_change(before: dict[str, Any], after_module: nn.Module) -> dict[str, Any]:
    """The ``resize`` change that turns a module like ``before`` into ``after_module``."""
    after = snapshot(after_module)
    if set(after["tensors"]) != set(before["tensors"]):
        raise ArtifactError("the module tree changed; a resize change cannot describe it")
    tensors = {k: v for k, v in after["tensors"].items() if before["tensors"][k] != v}
    attributes: dict[str, dict[str, Any]] = {}
    for name, attrs in after["attributes"].items():
        old = before["attributes"].get(name, {})
        changed = {k: v for k, v in attrs.items() if old.get(k) != v}
        if changed:
            attributes[name] = changed
    return {"kind": "resize", "tensors": tensors, "attributes": attributes}


@ARCH_CHANGES.register("resize")
def replay_resize(module: nn.Module, change: dict[str, Any]) -> nn.Module:
    """Applies a recorded ``resize`` change to a freshly built module (values come later)."""
    for name, attrs in change.get("attributes", {}).items():
        target = module.get_submodule(name) if name else module
        for key, value in attrs.items():
            old = getattr(target, key, None)
            setattr(target, key, tuple(value) if isinstance(old, tuple) else value)
    for full_name, shape in change.get("tensors", {}).items():
        owner_name, _, leaf = full_name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        if leaf in owner._parameters and owner._parameters[leaf] is not None:
            old = owner._parameters[leaf]
            owner._parameters[leaf] = nn.Parameter(
                torch.empty(shape, dtype=old.dtype), requires_grad=old.requires_grad
            )
        elif leaf in owner._buffers and owner._buffers[leaf] is not None:
            old_buffer = owner._buffers[leaf]
            owner._buffers[leaf] = torch.empty(shape, dtype=old_buffer.dtype)
        else:
            raise ArtifactError(f"recorded change names {full_name}, which the model lacks")
    return module


def replace_with_identity(module: nn.Module, name: str) -> None:
    """Replaces submodule ``name`` (dotted) of ``module`` by ``nn.Identity``."""
    parent_name, _, leaf = name.rpartition(".")
    try:
        parent = module.get_submodule(parent_name) if parent_name else module
    except AttributeError:
        parent = None
    if not leaf or not isinstance(getattr(parent, leaf, None), nn.Module):
        raise ArtifactError(f"recorded change names block {name}, which the model lacks")
    setattr(parent, leaf, nn.Identity())


def identity_blocks_change(names: list[str]) -> dict[str, Any]:
    """The ``identity_blocks`` change: the named blocks were replaced by ``nn.Identity``."""
    return {"kind": "identity_blocks", "names": list(names)}


@ARCH_CHANGES.register("identity_blocks")
def replay_identity_blocks(module: nn.Module, change: dict[str, Any]) -> nn.Module:
    """Re-applies block removal (depth pruning) to a freshly built module."""
    for name in change.get("names", []):
        replace_with_identity(module, name)
    return module


@ARCH_CHANGES.register("separable_convs")
def replay_separable_convs(module: nn.Module, change: dict[str, Any]) -> nn.Module:
    """Re-applies depthwise-separable conv surgery (:mod:`slimcv.arch.surgery`)."""
    from slimcv.arch.surgery import replay_separable_convs as replay

    return replay(module, change)
