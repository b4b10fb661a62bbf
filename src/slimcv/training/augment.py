"""Standard batch augmentations, applied by the training loop to each training batch.

They act on normalised image tensors (any data source), draw from a generator the loop owns
(seeded per run and per process, saved in checkpoints), and add to whatever the data source
does itself (ImageFolder sources already random-resize-crop and flip each image).

=========  ==================================================================================
``crop``   pad by 1/8 of the side (reflection) and take a random crop of the original size
``flip``   horizontal flip with probability 1/2 (not for digits or text: a flipped 2 is no 2)
``erase``  random erasing (Zhong et al.): a random rectangle of 2-33 % of the area set to 0
=========  ==================================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from slimcv.registry import Registry

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
#: Batch augmentations by name.
AUGMENTATIONS: Registry[Augmentation] = Registry("augmentation")


def _randint(high: int, n: int, generator: torch.Generator) -> list[int]:
    return torch.randint(0, high, (n,), generator=generator).tolist()


@AUGMENTATIONS.register("crop")
def random_crop(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    size_h, size_w = images.shape[-2:]
    pad = max(1, min(size_h, size_w) // 8)
    padded = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    n = len(images)
    tops, lefts = _randint(2 * pad + 1, n, generator), _randint(2 * pad + 1, n, generator)
    return torch.stack(
        [
            padded[i, :, t : t + size_h, s : s + size_w]
            for i, (t, s) in enumerate(zip(tops, lefts, strict=True))
        ]
    )


@AUGMENTATIONS.register("flip")
def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(len(images), generator=generator) < 0.5
    out = images.clone()
    out[flip.to(images.device)] = images[flip.to(images.device)].flip(-1)
    return out


@AUGMENTATIONS.register("erase")
def random_erase(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    out = images.clone()
    h, w = images.shape[-2:]
    areas = torch.empty(len(images)).uniform_(0.02, 0.33, generator=generator)
    ratios = torch.empty(len(images)).uniform_(0.3, 3.3, generator=generator)
    for i in range(len(images)):
        eh = max(1, min(h, round((areas[i].item() * h * w * ratios[i].item()) ** 0.5)))
        ew = max(1, min(w, round((areas[i].item() * h * w / ratios[i].item()) ** 0.5)))
        top = int(torch.randint(0, h - eh + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - ew + 1, (1,), generator=generator))
        out[i, :, top : top + eh, left : left + ew] = 0
    return out


def augment_batch(
    images: torch.Tensor, names: Sequence[str], generator: torch.Generator
) -> torch.Tensor:
    """Applies the named augmentations in order (on the CPU generator's draws)."""
    for name in names:
        images = AUGMENTATIONS.get(name)(images, generator)
    return images
