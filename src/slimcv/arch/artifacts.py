"""``slimcv arch build``: a randomly initialised network from a family or spec, saved as an
artifact directory that any slimcv command (train, distill, prune, bench) can start from.

The artifact stores the ``arch:`` source string, not the module, so it rebuilds from data in a
fresh process: the family or spec is resolved again and the weights are loaded on top.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slimcv.arch.describe import arch_source


@dataclass
class BuildResult:
    """What ``slimcv arch build --json`` prints.

    Attributes:
        out_dir: the artifact directory written.
        source: the ``arch:`` source stored in it.
        spec: the canonical spec string of the network.
        num_classes: classifier outputs.
        image_size: input side stored as the artifact's preprocessing.
        params: number of parameters.
    """

    out_dir: str
    source: str
    spec: str
    num_classes: int
    image_size: int
    params: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_artifact(
    source: str, out_dir: str | Path, *, num_classes: int, image_size: int | None = None
) -> BuildResult:
    """Builds the network ``source`` names and writes it to ``out_dir`` as an artifact.

    Args:
        source: ``arch:FAMILY[:key=value,...]``, ``arch:SPEC``, or either without ``arch:``.
        out_dir: the artifact directory (replaced atomically if it already is one).
        num_classes: classifier outputs.
        image_size: input side; the family's resolution (224 for raw specs) by default.

    Raises:
        SourceError, SpecError: the source is malformed.
        ArtifactError: ``out_dir`` cannot be written.
    """
    from slimcv.errors import SlimcvError
    from slimcv.sources import load_model, save_artifact
    from slimcv.sources.artifact import check_output_dir

    if num_classes < 1:
        raise SlimcvError(f"--num-classes must be positive, got {num_classes}")
    if image_size is not None and image_size < 1:
        raise SlimcvError(f"--image-size must be positive, got {image_size}")
    canonical = arch_source(source)
    check_output_dir(out_dir)
    model = load_model(canonical, num_classes=num_classes, image_size=image_size)
    module = model.require_module("arch build")
    out = save_artifact(
        out_dir,
        model,
        command="arch build",
        args={"source": canonical, "num_classes": num_classes, "image_size": image_size},
    )
    return BuildResult(
        out_dir=str(out),
        source=canonical,
        spec=module.spec.to_string(),  # type: ignore[union-attr]
        num_classes=num_classes,
        image_size=model.preprocess.image_size,
        params=sum(p.numel() for p in module.parameters()),
    )
