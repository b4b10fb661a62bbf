"""``load_model``: one entry point from a source string to a :class:`LoadedModel`."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from slimcv.errors import SourceError
from slimcv.sources.checkpoint import load_weights
from slimcv.sources.grammar import SourceSpec, parse_source
from slimcv.sources.model import LoadedModel, Preprocess
from slimcv.sources.zoo import build_timm, build_torchvision, build_user


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's bundled metadata (no download)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def build_module(source: str, num_classes: int | None) -> tuple[nn.Module, Preprocess]:
    """Builds the architecture a source string names (no artifacts, no ONNX)."""
    spec = parse_source(source)
    if spec.kind == "torchvision":
        return build_torchvision(spec.target, num_classes)
    if spec.kind == "timm":
        return build_timm(spec.target, num_classes, spec.attr)
    if spec.kind == "arch":
        return build_arch(spec.target, num_classes)
    if spec.kind in ("file", "module"):
        return build_user(spec, num_classes)
    raise SourceError(f"{source} is not an architecture source")


def build_arch(target: str, num_classes: int | None) -> tuple[nn.Module, Preprocess]:
    """A :class:`~slimcv.arch.builder.SpecNet` from a family or spec string (what follows
    ``arch:``), randomly initialised, with the family's resolution as the input size."""
    from slimcv.arch import build_network
    from slimcv.arch.families import resolve_arch

    network, resolution = resolve_arch(target)
    return build_network(network, num_classes or 1000), Preprocess(image_size=resolution)


def load_model(
    source: str,
    *,
    num_classes: int | None = None,
    weights: str | Path | None = None,
    trust_checkpoint: bool = False,
    image_size: int | None = None,
) -> LoadedModel:
    """Loads a model from any source the grammar knows.

    Args:
        source: see :mod:`slimcv.sources.grammar`.
        num_classes: replace the classifier head with one of this size.
        weights: a checkpoint to load (``.safetensors``, ``.pt``, ``.pth``).
        trust_checkpoint: allow full pickle for ``.pt``/``.pth`` files (can run code).
        image_size: override the model's default input size.

    Raises:
        SourceError, CheckpointError, ArtifactError: with a one-line explanation.
    """
    spec = parse_source(source)
    if spec.kind == "artifact":
        from slimcv.sources.artifact import load_artifact

        if num_classes is not None or weights is not None:
            raise SourceError("--num-classes and --weights do not apply to an artifact directory")
        model = load_artifact(spec.target)
    elif spec.kind == "onnx":
        model = _load_onnx(spec)
    else:
        module, preprocess = build_module(source, num_classes)
        if weights is not None:
            load_weights(module, weights, trust=trust_checkpoint)
        module.eval()
        classes = _num_outputs(module, num_classes)
        labels = imagenet_labels() if classes == 1000 else None
        model = LoadedModel(
            source=_canonical(source, spec),
            num_classes=classes,
            preprocess=preprocess,
            module=module,
            labels=labels,
        )
    if image_size is not None:
        model.preprocess = Preprocess(
            image_size=image_size,
            crop_pct=model.preprocess.crop_pct,
            mean=model.preprocess.mean,
            std=model.preprocess.std,
            interpolation=model.preprocess.interpolation,
        )
    return model


def _canonical(source: str, spec: SourceSpec) -> str:
    """Source string that still resolves from another working directory."""
    if spec.kind == "file":
        return f"{Path(spec.target).resolve()}:{spec.attr}"
    return source.strip()


def _num_outputs(module: nn.Module, requested: int | None) -> int:
    if requested is not None:
        return requested
    for attr in ("num_classes",):
        value = getattr(module, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    last = None
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            last = sub
    return last.out_features if last is not None else 1000


def _load_onnx(spec: SourceSpec) -> LoadedModel:
    import onnx

    path = Path(spec.target)
    try:
        proto = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(proto)
    except Exception as exc:  # noqa: BLE001 - any parse failure means a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"{path} is not a valid ONNX model: {first}") from None
    inputs = [
        i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}
    ]
    if len(inputs) != 1:
        raise SourceError(f"{path}: expected one image input, found {len(inputs)}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] not in (0, 3):
        raise SourceError(f"{path}: expected an NCHW image input, got shape {dims}")
    size = dims[2] or dims[3] or 224
    out_dims = [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim]
    classes = out_dims[-1] if out_dims and out_dims[-1] else 1000
    preprocess = Preprocess(image_size=int(size))
    labels = imagenet_labels() if classes == 1000 else None
    manifest_path = path.parent / "slimcv.json"
    if manifest_path.is_file():  # exported by slimcv: the manifest knows the preprocessing
        from slimcv.sources.artifact import read_manifest

        manifest = read_manifest(path.parent)
        preprocess = Preprocess.from_dict(manifest.get("preprocess", {}))
        labels = manifest.get("labels") or labels
    return LoadedModel(
        source=str(path),
        num_classes=int(classes),
        preprocess=preprocess,
        onnx_path=path,
        labels=labels,
    )
