"""Training checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint is a ``torch.save`` of plain containers and tensors only - model, objective,
optimizer and scheduler ``state_dict``s, the per-process random states (Python, NumPy and
torch as tensors), the epoch/step counters and the metrics so far - so it loads with
``torch.load(..., weights_only=True)``. Files are written to a temporary file in the same
directory, flushed to disk (fsync) and renamed over the old one: a crash at any moment leaves
the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimcv.errors import CheckpointError

FORMAT = "slimcv-train-checkpoint"
FORMAT_VERSION = 1
LAST = "last.pt"
BEST = "best.pt"
METRICS = "metrics.json"


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Any) -> None:
    """Calls ``write(file)`` on a temp file next to ``path``, fsyncs, then renames it over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with tmp.open("wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(
        path, lambda fh: torch.save({"format": FORMAT, "version": FORMAT_VERSION, **state}, fh)
    )


def save_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda fh: fh.write((json.dumps(data, indent=2) + "\n").encode()))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Loads a checkpoint safely (tensors and plain containers only).

    Raises:
        CheckpointError: missing, truncated, not a training checkpoint, or unsafe.
    """
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable training checkpoint: {first}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a slimcv training checkpoint")
    if state.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer slimcv; upgrade to resume it")
    return state


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """This process's random states as tensors and numbers (safe to store)."""
    version, py_state, gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_version": int(version),
        "python_gauss": gauss,
        "numpy": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "torch": torch.get_rng_state(),
        "augment": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    """Restores what :func:`rng_state` saved."""
    random.setstate(
        (state["python_version"], tuple(int(v) for v in state["python"]), state["python_gauss"])
    )
    np.random.set_state(
        (
            "MT19937",
            state["numpy"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    generator.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_fits(path: Path, stored: dict[str, torch.Tensor], module: torch.nn.Module) -> None:
    """Raises :class:`CheckpointError` naming the first tensor that differs in name or shape."""
    current = module.state_dict()
    missing = [k for k in current if k not in stored]
    extra = [k for k in stored if k not in current]
    if missing or extra:
        what = f"lacks {missing[0]}" if missing else f"has {extra[0]}, which the model lacks"
        raise CheckpointError(
            f"{path} is from another model: it {what} ({len(missing)} missing, "
            f"{len(extra)} unexpected tensors)"
        )
    for key, tensor in current.items():
        if tuple(stored[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path} is from another model: {key} has shape {tuple(stored[key].shape)} "
                f"there and {tuple(tensor.shape)} here"
            )
