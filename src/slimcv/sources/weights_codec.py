"""Sparse storage for state dicts inside safetensors, which has no sparse tensor type.

A pruned layer is mostly zeros, yet a dense file spends the same 4 bytes on each of them. A
floating tensor with enough zeros is therefore stored as two plain tensors:

* ``<name>::values``: its nonzero entries in row-major order, 1-D, same dtype;
* ``<name>::mask``: one bit per entry (``numpy.packbits`` of the nonzero mask, flattened, uint8).

An 80 %-sparse float32 weight then costs ``0.2 * 4 + 1/8`` bytes per entry, about 23 % of dense.
How to rebuild it (``{"encoding": "bitmask", "shape": [...], "dtype": "float32"}``) goes into a
metadata dict that the caller stores next to the file (artifacts keep it in their manifest).

"Zero" means all bits zero: ``-0.0`` is kept as a value, so decoding is bit-exact. Callers who
want pruned ``-0.0`` entries (``w * mask`` of a negative ``w``) stored as zeros turn them into
``+0.0`` first, as :func:`slimcv.sources.artifact.save_artifact` does.

safetensors refuses tensors that share memory (tied weights). Entries that are the very same
view of one storage are stored once; the others become ``{"encoding": "alias", "of": name}``
and decode to the same tensor, so ``load_state_dict(strict=True)`` still finds every name.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from slimcv.errors import CheckpointError, SlimcvError

SEPARATOR = "::"
VALUES = SEPARATOR + "values"
MASK = SEPARATOR + "mask"

# Integer types of the same width, to find all-bits-zero entries (a float compare would call
# -0.0 a zero and lose its sign).
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def encode_state_dict(
    state: dict[str, torch.Tensor],
    *,
    min_sparsity: float = 0.3,
    keep_signed_zeros: bool = True,
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """Encodes a state dict for ``safetensors.torch.save_file``.

    Args:
        state: tensors by name (a module's ``state_dict()``); names must not contain ``::``.
        min_sparsity: fraction of zero entries from which a floating tensor is stored sparse.
            At 0.3 a float32 tensor shrinks to at most ``0.7 * 4 + 1/8`` bytes per entry; below
            that the saving is too small to be worth the decoding.
        keep_signed_zeros: ``True`` stores ``-0.0`` as a value, for a bit-exact round trip;
            ``False`` counts it as a zero, so it decodes as ``+0.0`` (equal in value). Pruned
            weights folded as ``w * mask`` are ``-0.0`` wherever ``w < 0``: keeping those would
            store about half the pruned weights again.

    Returns:
        The tensors to store (CPU, contiguous, no shared memory) and, for every name that is not
        stored as it is, how to decode it.

    Raises:
        SlimcvError: ``min_sparsity`` is outside [0, 1] or a name contains ``::``.
    """
    if not 0.0 <= min_sparsity <= 1.0:
        raise SlimcvError(f"min_sparsity must be in [0, 1], got {min_sparsity}")
    for name in state:
        if SEPARATOR in name:
            raise SlimcvError(f"cannot encode tensor {name!r}: '{SEPARATOR}' is reserved")
    unique, aliases = dedupe_shared(state)
    meta: dict[str, dict[str, Any]] = {
        name: {"encoding": "alias", "of": kept} for name, kept in aliases.items()
    }
    stored: dict[str, torch.Tensor] = {}
    for name, tensor in unique.items():
        tensor = tensor.detach().cpu()
        nonzero = _nonzero(tensor, keep_signed_zeros) if _encodable(tensor) else None
        zeros = tensor.numel() - int(nonzero.sum()) if nonzero is not None else 0
        if nonzero is not None and zeros >= min_sparsity * tensor.numel():
            flat = tensor.reshape(-1)
            stored[name + VALUES] = flat[nonzero].contiguous()
            stored[name + MASK] = torch.from_numpy(np.packbits(nonzero.numpy()))
            meta[name] = {
                "encoding": "bitmask",
                "shape": list(tensor.shape),
                "dtype": _dtype_name(tensor.dtype),
            }
        else:
            stored[name] = tensor.contiguous()
    return stored, meta


def dedupe_shared(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Makes a state dict safe for ``safetensors.torch.save_file``.

    Names that are the very same view of one storage (tied weights) are stored once, under the
    first name in sorted order, as ``safetensors.torch.save_model`` does; tensors that share a
    storage in other ways are copied; everything is made contiguous.

    Returns:
        The tensors to store, and ``{dropped name: kept name}``.
    """
    kept: dict[tuple[Any, ...], str] = {}
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name in sorted(state):
        key = _view_key(state[name])
        if key is not None and key in kept:
            aliases[name] = kept[key]
            continue
        if key is not None:
            kept[key] = name
        unique[name] = state[name].detach()
    owners: dict[tuple[torch.device, int], int] = {}
    for tensor in unique.values():
        if tensor.numel():
            storage = (tensor.device, tensor.untyped_storage().data_ptr())
            owners[storage] = owners.get(storage, 0) + 1
    safe = {}
    for name, tensor in unique.items():
        storage = (tensor.device, tensor.untyped_storage().data_ptr())
        if tensor.numel() and owners[storage] > 1:
            safe[name] = tensor.clone(memory_format=torch.contiguous_format)
        else:
            safe[name] = tensor.contiguous()
    return safe, aliases


def decode_state_dict(
    stored: dict[str, torch.Tensor], meta: dict[str, dict[str, Any]]
) -> dict[str, torch.Tensor]:
    """Rebuilds the state dict :func:`encode_state_dict` encoded, bit for bit.

    Raises:
        CheckpointError: the tensors and the metadata do not belong together (a part is
            missing, the sizes disagree, or an encoding is unknown).
    """
    state = {name: t for name, t in stored.items() if SEPARATOR not in name}
    used = set(state)
    for name, info in meta.items():
        encoding = info.get("encoding") if isinstance(info, dict) else None
        if encoding == "bitmask":
            state[name] = _decode_bitmask(name, stored, info)
            used.update((name + VALUES, name + MASK))
        elif encoding != "alias":
            raise CheckpointError(f"weights entry {name!r} has unknown encoding {encoding!r}")
    for name, info in meta.items():
        if info["encoding"] == "alias":
            target = info.get("of")
            if target not in state:
                raise CheckpointError(f"weights entry {name!r} aliases {target!r}, which is absent")
            state[name] = state[target]
    left = sorted(set(stored) - used)
    if left:
        raise CheckpointError(f"stored tensors {', '.join(left)} have no decoding metadata")
    return state


def _decode_bitmask(
    name: str, stored: dict[str, torch.Tensor], info: dict[str, Any]
) -> torch.Tensor:
    try:
        values, packed = stored[name + VALUES], stored[name + MASK]
        shape = [int(d) for d in info["shape"]]
        dtype = getattr(torch, str(info["dtype"]))
    except (KeyError, AttributeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"weights entry {name!r} is incomplete: {exc}") from None
    if not isinstance(dtype, torch.dtype) or values.dtype != dtype or packed.dtype != torch.uint8:
        raise CheckpointError(f"weights entry {name!r}: stored dtypes do not match the metadata")
    count = int(np.prod(shape, dtype=np.int64))
    if packed.numel() != (count + 7) // 8:
        raise CheckpointError(f"weights entry {name!r}: mask size does not fit shape {shape}")
    nonzero = torch.from_numpy(
        np.unpackbits(packed.cpu().numpy(), count=count).astype(bool, copy=False)
    )
    if int(nonzero.sum()) != values.numel():
        raise CheckpointError(
            f"weights entry {name!r}: {values.numel()} values for {int(nonzero.sum())} nonzeros"
        )
    flat = torch.zeros(count, dtype=dtype)  # all bits zero, i.e. +0.0
    flat[nonzero] = values.cpu()
    return flat.reshape(shape)


def _encodable(tensor: torch.Tensor) -> bool:
    return tensor.is_floating_point() and tensor.numel() > 0 and tensor.element_size() in _BITS


def _nonzero(tensor: torch.Tensor, signed_zeros: bool) -> torch.Tensor:
    """Flat bool mask of the entries stored as values."""
    flat = tensor.contiguous().reshape(-1)
    if not signed_zeros:
        return flat != 0
    return flat.view(_BITS[tensor.element_size()]) != 0  # -0.0 has its sign bit set


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _view_key(tensor: torch.Tensor) -> tuple[Any, ...] | None:
    """Identifies a tensor's exact view of its storage; ``None`` for empty tensors."""
    if tensor.numel() == 0:
        return None
    return (
        tensor.device,
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tensor.stride(),
        tensor.dtype,
    )
