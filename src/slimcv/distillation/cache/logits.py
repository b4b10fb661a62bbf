"""A disk cache of teacher logits for every training sample.

For soft-target methods the teacher is the expensive half of a step (a resnet18 teacher costs
~8x a small student); with the logits cached, a distillation run costs what training the
student from labels costs, and a second run (another seed, another student) pays nothing for the
teacher.

**Augmentation.** A cached row holds the teacher's output for one fixed view of a sample. With
random augmentation (random crops, flips) the student sees a different view every epoch, and the
teacher's output for the cached view is not the target for the view the student gets - the
targets would be wrong, not just stale. So the cache is only used when the training data is
deterministic (``digits``, ``synthetic``, folders without random transforms);
:func:`is_deterministic` checks it, and the API refuses a cache directory for augmented data
with a clear error (teachers then run live on each augmented batch).

**Key.** A sha256 of the teacher's weights (every tensor of its ``state_dict``, in name order),
both preprocessings, the data source name, the image size, a description of the training
transform and the training-set indices (so a different split seed or validation fraction gives
another key). Any change yields a new file; stale files are never read.

**Files.** ``<key>.safetensors`` holding one ``logits`` tensor (N x classes, float32), written to
a temporary name and renamed into place (a crash leaves no half file), read with safetensors
(no pickle). A file whose shape does not fit is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from slimcv.distillation.wiring import FrozenTeacher
from slimcv.errors import DataError

#: Bumped whenever what a cache file means changes.
CACHE_VERSION = 1


@dataclass
class CacheInfo:
    """Where a teacher's logits came from.

    Attributes:
        path: the cache file.
        key: its sha256 key.
        hit: whether it was read (True) or computed and written (False).
        samples: rows (training samples).
    """

    path: str
    key: str
    hit: bool
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_dataset(dataset: Dataset) -> tuple[str, list[int]]:
    """A description of how a dataset makes its images, and its indices into the base set."""
    indices: list[int] | None = None
    parts = []
    while isinstance(dataset, Subset):
        picked = list(dataset.indices)
        indices = picked if indices is None else [picked[i] for i in indices]
        dataset = dataset.dataset
    parts.append(type(dataset).__name__)
    for attr in ("size", "mean", "std", "transform", "root"):
        value = getattr(dataset, attr, None)
        if value is not None:
            text = repr(value.tolist() if isinstance(value, torch.Tensor) else value)
            parts.append(f"{attr}={text}")
    if indices is None:
        indices = list(range(len(dataset)))  # type: ignore[arg-type]
    return "; ".join(parts), indices


def is_deterministic(dataset: Dataset, probes: int = 2) -> bool:
    """Whether the dataset returns the same tensor for an index every time.

    A transform named ``Random*`` (torchvision's augmentations) makes it non-deterministic;
    the first ``probes`` items are also read twice and compared, which catches other random
    transforms.
    """
    description, _ = describe_dataset(dataset)
    if "Random" in description:
        return False
    for index in range(min(probes, len(dataset))):  # type: ignore[arg-type]
        first, second = dataset[index][0], dataset[index][0]
        if not torch.equal(torch.as_tensor(first), torch.as_tensor(second)):
            return False
    return True


def _weights_digest(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def cache_key(teacher: FrozenTeacher, dataset: Dataset, data_name: str, image_size: int) -> str:
    """The sha256 that names a teacher's cached logits for one training set."""
    description, indices = describe_dataset(dataset)
    fields = {
        "version": CACHE_VERSION,
        "weights": _weights_digest(teacher.module),
        "teacher_pre": teacher.teacher_pre.to_dict() if teacher.teacher_pre else None,
        "student_pre": teacher.student_pre.to_dict() if teacher.student_pre else None,
        "data": data_name,
        "image_size": image_size,
        "transform": description,
        "indices": hashlib.sha256(json.dumps(indices).encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def cached_teacher_logits(
    teacher: FrozenTeacher,
    dataset: Dataset,
    cache_dir: str | Path,
    *,
    data_name: str,
    image_size: int,
    batch_size: int = 256,
) -> tuple[torch.Tensor, CacheInfo]:
    """The teacher's logits for every item of ``dataset`` (in order), from the cache or computed.

    Raises:
        DataError: the dataset is augmented at random (see the module docstring).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    if not is_deterministic(dataset):
        raise DataError(
            "teacher logits cannot be cached for randomly augmented training data (each epoch "
            "sees other crops, so cached targets would be for images the student never sees); "
            "drop --cache-dir to run the teacher on every batch"
        )
    key = cache_key(teacher, dataset, data_name, image_size)
    folder = Path(cache_dir)
    path = folder / f"{key}.safetensors"
    count = len(dataset)  # type: ignore[arg-type]
    if path.is_file():
        try:
            logits = load_file(str(path))["logits"]
        except (SafetensorError, KeyError, OSError, RuntimeError):
            logits = None  # unreadable: recompute below and replace it
        if logits is not None and logits.dim() == 2 and len(logits) == count:
            return logits, CacheInfo(str(path), key, True, count)
    outputs = []
    for images, _labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        outputs.append(teacher(images).float())
    logits = torch.cat(outputs).contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{key}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        save_file({"logits": logits}, str(tmp), metadata={"data": data_name, "key": key})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return logits, CacheInfo(str(path), key, False, count)
