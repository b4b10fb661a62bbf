"""Artifact directories: a model saved as data, reloadable in a fresh process without pickle.

Layout::

    DIR/
      slimcv.json         manifest: source string, classes, preprocessing, architecture changes,
                          history of the commands that made it, metrics, sha256 of every file
      model.safetensors   the weights (dense, or with sparse tensors encoded as values + bitmask,
                          see :mod:`slimcv.sources.weights_codec` and the manifest's
                          ``weights_encoding``)
      ...                 whatever the command adds (model.onnx, openvino/model.xml, ...)

The architecture is rebuilt from the source string, then each recorded architecture change
(registered in :data:`ARCH_CHANGES`, e.g. pruned channel counts) is replayed, then the weights
are loaded. Writes go to a temporary sibling directory that is renamed into place, so a crash
leaves either the old artifact or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimcv.errors import ArtifactError, CheckpointError
from slimcv.registry import Registry
from slimcv.sources.model import LoadedModel, Preprocess

MANIFEST = "slimcv.json"
WEIGHTS = "model.safetensors"
FORMAT = "slimcv-artifact"
FORMAT_VERSION = 1

ArchChange = Callable[[nn.Module, dict[str, Any]], nn.Module]
#: Architecture changes replayed on reload, by name (pruning registers its own).
ARCH_CHANGES: Registry[ArchChange] = Registry("architecture change")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_output_dir(out_dir: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Checks that ``out_dir`` may be written, before any work starts.

    Raises:
        ArtifactError: ``out_dir`` is (or contains) an input, or exists and is not an artifact.
    """
    out = Path(out_dir).resolve()
    for item in inputs:
        src = Path(item).resolve()
        if src == out or out in src.parents:
            raise ArtifactError(f"--out {out_dir} would overwrite the input {item}; choose another")
    if out.exists():
        if not out.is_dir():
            raise ArtifactError(f"--out {out_dir} exists and is a file")
        if any(out.iterdir()) and not (out / MANIFEST).is_file():
            raise ArtifactError(
                f"--out {out_dir} exists, is not empty and is not a slimcv artifact; choose another"
            )
    return out


@contextlib.contextmanager
def staging_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yields a temporary directory that replaces ``out_dir`` atomically on success."""
    out = Path(out_dir).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def save_artifact(
    out_dir: str | Path,
    model: LoadedModel,
    *,
    command: str,
    args: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    write_extra: Callable[[Path, LoadedModel], dict[str, Any] | None] | None = None,
    sparse: bool = False,
) -> Path:
    """Writes ``model`` as an artifact directory, atomically.

    Args:
        out_dir: destination; replaced as a whole if it is already an artifact.
        model: the model; its ``meta['history']`` is carried over and extended.
        command: the slimcv command that made it (``train``, ``export``...).
        args: that command's arguments, recorded for reproduction.
        metrics: figures measured on the result (accuracy, latency...).
        write_extra: called with the staging directory to add files (ONNX, IR); may return
            extra manifest fields.
        sparse: store mostly-zero tensors as nonzero values plus a bitmask, so that a pruned
            model's file really is smaller (an 80 %-sparse float32 weight takes ~23 % of its
            dense size); how to decode goes into the manifest as ``weights_encoding``.

    Pruning masks (``weight_orig``/``weight_mask`` from ``torch.nn.utils.prune``) are folded
    into plain ``weight`` tensors, so the artifact reloads into the plain architecture.

    Returns:
        The artifact directory.
    """
    module = model.module
    if module is None and write_extra is None:
        model.require_module("saving an artifact")
    out = Path(out_dir).resolve()
    history = list(model.meta.get("history", []))
    history.append(
        {"command": command, "args": args or {}, "metrics": metrics or {}, "time": _now()}
    )
    with staging_dir(out) as tmp:
        # A graph-only model (an INT8 ONNX file) has no PyTorch weights: write_extra stores it.
        encoding = _write_weights(module, tmp / WEIGHTS, sparse=sparse) if module else None
        extra = write_extra(tmp, model) if write_extra else None
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": _now(),
            "versions": _versions(),
            "source": model.source,
            "num_classes": model.num_classes,
            "preprocess": model.preprocess.to_dict(),
            "labels": model.labels,
            "architecture_changes": model.meta.get("architecture_changes", []),
            "history": history,
            "metrics": metrics or {},
        }
        if extra:
            manifest.update(extra)
        if encoding is not None:
            manifest["weights_encoding"] = encoding
        manifest["files"] = {
            str(p.relative_to(tmp)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        _write_json_atomic(tmp / MANIFEST, manifest)
    return out


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Reads and checks an artifact's manifest."""
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{directory} is not a slimcv artifact (no {MANIFEST})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is corrupted: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not a slimcv manifest")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise ArtifactError(f"{directory} was written by a newer slimcv; upgrade to read it")
    return manifest


def load_artifact(directory: str | Path) -> LoadedModel:
    """Rebuilds the model stored in an artifact directory (no pickle involved)."""
    from slimcv.sources.loader import build_module

    directory = Path(directory)
    manifest = read_manifest(directory)
    preprocess = Preprocess.from_dict(manifest.get("preprocess", {}))
    meta = {
        "history": manifest.get("history", []),
        "architecture_changes": manifest.get("architecture_changes", []),
        "artifact": str(directory.resolve()),
        "metrics": manifest.get("metrics", {}),
    }
    if manifest.get("graph"):  # graph-only (e.g. INT8): the runtimes execute this file
        verify_files(directory, manifest, only=[manifest["graph"]])
        return LoadedModel(
            source=manifest["source"],
            num_classes=int(manifest["num_classes"]),
            preprocess=preprocess,
            onnx_path=(directory / manifest["graph"]).resolve(),
            labels=manifest.get("labels"),
            meta={
                **meta,
                "graph_only": True,
                "runtime_precision": manifest.get("runtime_precision", "f32"),
            },
        )
    verify_files(directory, manifest, only=[WEIGHTS])
    import slimcv.sources.arch_changes  # noqa: F401 - registers the built-in changes

    module, _ = build_module(manifest["source"], manifest.get("num_classes"))
    for change in manifest.get("architecture_changes", []):
        module = ARCH_CHANGES.get(change["kind"])(module, change)
    try:
        if "weights_encoding" in manifest:
            from safetensors.torch import load_file

            from slimcv.sources.weights_codec import decode_state_dict

            stored = load_file(str(directory / WEIGHTS))
            module.load_state_dict(
                decode_state_dict(stored, manifest["weights_encoding"]), strict=True
            )
        else:
            from safetensors.torch import load_model

            load_model(module, str(directory / WEIGHTS), strict=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{directory / WEIGHTS} does not fit the model: {exc}") from None
    module.eval()
    return LoadedModel(
        source=manifest["source"],
        num_classes=int(manifest["num_classes"]),
        preprocess=preprocess,
        module=module,
        labels=manifest.get("labels"),
        meta=meta,
    )


def verify_files(directory: Path, manifest: dict[str, Any], only: list[str] | None = None) -> None:
    """Checks the sha256 of the artifact's files against the manifest."""
    files = manifest.get("files", {})
    for name in only if only is not None else list(files):
        info = files.get(name)
        path = directory / name
        if info is None or not path.is_file():
            raise ArtifactError(f"artifact {directory} is missing {name}")
        if sha256_file(path) != info["sha256"]:
            raise ArtifactError(f"artifact {directory}: {name} is corrupted (sha256 mismatch)")


def _write_weights(module: nn.Module, path: Path, *, sparse: bool) -> dict[str, Any] | None:
    """Writes the weights file; returns the sparse encoding metadata, ``None`` when dense."""
    from safetensors.torch import save_file, save_model
    from torch.nn.utils import prune

    from slimcv.sources.weights_codec import dedupe_shared, encode_state_dict

    if not sparse and not prune.is_pruned(module):
        save_model(module, str(path))
        return None
    state = _unmasked_state_dict(module)
    if not sparse:
        tensors, aliases = dedupe_shared(state)
        # Records dropped tied names as save_model does, so load_model resolves them alike.
        save_file(tensors, str(path), metadata=aliases or None)
        return None
    tensors, meta = encode_state_dict(state, keep_signed_zeros=False)
    save_file(tensors, str(path))
    return meta


def _unmasked_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with pruning masks folded in (``weight`` instead of
    ``weight_orig`` and ``weight_mask``), without touching ``module``.

    A deep copy plus ``prune.remove`` would do the same, but modules carrying prune hooks
    cannot be deep-copied (their ``weight`` is a non-leaf tensor).
    """
    from torch.nn.utils import prune

    state = module.state_dict()
    for prefix, sub in module.named_modules(remove_duplicate=False):
        for hook in sub._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                key = f"{prefix}.{hook._tensor_name}" if prefix else hook._tensor_name
                orig, mask = state.pop(key + "_orig"), state.pop(key + "_mask")
                state[key] = torch.where(mask != 0, orig, torch.zeros_like(orig))
    return state


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def _versions() -> dict[str, str]:
    import slimcv

    return {
        "slimcv": slimcv.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
