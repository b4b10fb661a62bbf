"""Safe checkpoint loading.

``.safetensors`` files cannot run code. ``.pt``/``.pth`` files are read with
``torch.load(weights_only=True)``, which refuses arbitrary pickled objects; full pickle, which can
execute code, needs an explicit ``trust=True`` (``--trust-checkpoint``).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from slimcv.errors import CheckpointError

_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")


def read_state_dict(path: str | Path, *, trust: bool = False) -> dict[str, torch.Tensor]:
    """Reads a state dict from ``path`` without executing untrusted code.

    Raises:
        CheckpointError: missing, truncated or garbage file, or pickle that needs ``trust``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses both garbage bytes and real pickled classes; only the latter
        # names the global it refused, and only that case may be loaded with trust.
        if "Unsupported global" not in str(exc):
            raise CheckpointError(
                f"{path} is not a readable checkpoint (corrupted or not a PyTorch file)"
            ) from None
        if not trust:
            raise CheckpointError(
                f"{path} contains pickled objects beyond tensors; loading it could run code. "
                "Re-save it as safetensors, or pass --trust-checkpoint if you trust its origin"
            ) from None
        obj = _load_trusted(path)
    except Exception as exc:  # noqa: BLE001 - zip/EOF/runtime errors for broken files
        raise CheckpointError(f"{path} is not a readable checkpoint ({_first_line(exc)})") from None
    return _extract_state_dict(obj, path)


def _load_trusted(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path} is not a readable checkpoint ({_first_line(exc)})") from None


def _extract_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in _NESTED_KEYS:
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                inner = inner.state_dict()
            if isinstance(inner, dict) and inner and all(isinstance(k, str) for k in inner):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path} holds no state dict")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors")
    prefix = "module."
    if all(k.startswith(prefix) for k in tensors):  # saved from DataParallel / DDP
        tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def load_weights(model: nn.Module, path: str | Path, *, trust: bool = False) -> None:
    """Loads a checkpoint into ``model``, checking that every key and shape fits.

    Raises:
        CheckpointError: unreadable checkpoint, or keys/shapes that do not match the model.
    """
    state = read_state_dict(path, trust=trust)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise CheckpointError(f"{path} does not fit the model: keys {', '.join(parts)}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{path} does not fit the model: {key} has shape {tuple(value.shape)}, "
                f"model expects {tuple(own[key].shape)}"
            )
    model.load_state_dict(state, strict=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
