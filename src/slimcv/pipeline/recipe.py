"""Recipes: YAML files that chain slimcv's stages, validated before anything runs.

A recipe names the model and data once and lists stages in order; each stage is a one-key
mapping from the stage name to its options, which are exactly the fields of that stage's
config dataclass (``train`` -> :class:`~slimcv.training.TrainConfig`, ``prune`` ->
:class:`~slimcv.pruning.PruneConfig`, and so on)::

    name: resnet18-digits
    model: torchvision:resnet18
    data: digits
    num_classes: 10
    image_size: 32
    stages:
      - train: {epochs: 5}
      - prune: {target_macs: 0.5, finetune_epochs: 3}
      - quantize: {precision: int8}
      - bench: {backends: [onnxruntime]}

Validation is pydantic's (types are coerced the same way everywhere, e.g. ``"5"`` -> 5) plus
each config's own ``__post_init__`` checks. Every problem is reported as
``FILE:LINE: PATH: what is wrong``, with a "did you mean" for a typo'd key, because a recipe
that fails an hour into a run for a misspelt option is the failure this module exists to stop.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from slimcv.errors import RecipeError, SlimcvError

# stage name -> (module, config class); imported lazily so validating a recipe stays cheap.
STAGE_CONFIGS: dict[str, tuple[str, str]] = {
    "train": ("slimcv.training", "TrainConfig"),
    "prune": ("slimcv.pruning", "PruneConfig"),
    "distill": ("slimcv.distillation", "DistillConfig"),
    "quantize": ("slimcv.quant", "QuantizeConfig"),
    "export": ("slimcv.exporters", "ExportConfig"),
    "bench": ("slimcv.measure", "BenchConfig"),
}
# Stages that change PyTorch weights, so they cannot follow ``quantize`` (whose result is an
# integer graph, not float weights to train or prune).
_NEEDS_FLOAT_WEIGHTS = ("train", "prune", "distill")


class _Header(BaseModel):
    """The recipe's top level; stage options are checked per stage afterwards."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str | None = None
    model: str | None = None
    data: str = "digits"
    num_classes: int | None = Field(default=None, gt=0)
    image_size: int | None = Field(default=None, gt=0)
    stages: list[dict[str, Any]] = Field(min_length=1)


@dataclass(frozen=True)
class Stage:
    """One validated stage: its name, position and config object.

    ``student`` is the ``distill`` stage's student model source: the model flowing through
    the recipe is the teacher, and the distilled student flows on.
    """

    name: str
    index: int
    config: Any
    student: str | None = None

    def options(self) -> dict[str, Any]:
        """The config as plain data (for the workspace manifest)."""
        return dataclasses.asdict(self.config)


@dataclass(frozen=True)
class Recipe:
    """A validated recipe.

    Attributes:
        path: the file it came from (``None`` when parsed from text).
        model: the model source; ``None`` means the command line must give one.
        data: the data source.
        stages: the stages, in order.
    """

    path: Path | None
    name: str | None
    description: str | None
    model: str | None
    data: str
    num_classes: int | None
    image_size: int | None
    stages: tuple[Stage, ...]


class _Lines:
    """Line numbers of every mapping key and sequence item, from PyYAML's node tree."""

    def __init__(self, lines: dict[tuple[Any, ...], int], source: str) -> None:
        self.lines = lines
        self.source = source

    @classmethod
    def of(cls, node: yaml.Node | None, source: str) -> _Lines:
        lines: dict[tuple[Any, ...], int] = {}

        def walk(current: yaml.Node, path: tuple[Any, ...]) -> None:
            lines.setdefault(path, current.start_mark.line + 1)
            if isinstance(current, yaml.MappingNode):
                for key, value in current.value:
                    lines[path + (key.value,)] = key.start_mark.line + 1
                    walk(value, path + (key.value,))
            elif isinstance(current, yaml.SequenceNode):
                for index, item in enumerate(current.value):
                    walk(item, path + (index,))

        if node is not None:
            walk(node, ())
        return cls(lines, source)

    def error(self, path: tuple[Any, ...], message: str) -> RecipeError:
        line = None
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                break
        where = f"{self.source}:{line}" if line else self.source
        dotted = _dotted(path)
        return RecipeError(f"{where}: {dotted + ': ' if dotted else ''}{message}")


def _dotted(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def load_recipe(path: str | Path, *, model: str | None = None) -> Recipe:
    """Reads and validates a recipe file.

    Args:
        path: the YAML file.
        model: a model source from the command line; it replaces the recipe's ``model``.

    Raises:
        RecipeError: unreadable file, YAML syntax error, unknown key, bad value, unknown stage,
            or a stage order that cannot work; the message names file, line and key.
    """
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {file}: {exc.strerror or exc}") from None
    return parse_recipe(text, source=str(file), path=file, model=model)


def parse_recipe(
    text: str, *, source: str = "<recipe>", path: Path | None = None, model: str | None = None
) -> Recipe:
    """Validates recipe text; see :func:`load_recipe`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{where}: not valid YAML: {problem}") from None
    lines = _Lines.of(node, source)
    if not isinstance(data, dict):
        raise lines.error((), "a recipe is a mapping with at least 'stages'")
    try:
        header = _Header.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, (), lines, _Header.model_fields) from None
    stages = tuple(_stage(i, raw, lines) for i, raw in enumerate(header.stages))
    recipe = Recipe(
        path=path,
        name=header.name,
        description=header.description,
        model=model or header.model,
        data=header.data,
        num_classes=header.num_classes,
        image_size=header.image_size,
        stages=stages,
    )
    _check_order(recipe, lines)
    return recipe


def _stage(index: int, raw: dict[str, Any], lines: _Lines) -> Stage:
    where = ("stages", index)
    if len(raw) != 1:
        raise lines.error(
            where,
            f"a stage is one 'name: {{options}}' mapping, got keys {', '.join(map(str, raw))}",
        )
    ((name, options),) = raw.items()
    if name not in STAGE_CONFIGS:
        close = difflib.get_close_matches(str(name), list(STAGE_CONFIGS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise lines.error(
            where + (name,),
            f"unknown stage{hint}; stages are {', '.join(STAGE_CONFIGS)}",
        )
    options = {} if options is None else options
    path = where + (name,)
    if not isinstance(options, dict):
        raise lines.error(path, "stage options must be a mapping, e.g. {epochs: 5}")
    student = None
    if name == "distill":
        options = dict(options)
        student = options.pop("student", None)
        if not isinstance(student, str) or not student:
            raise lines.error(
                path,
                "distill needs 'student: SOURCE' (the model it trains, e.g. "
                "torchvision:resnet18 or arch:mobilenetv2:width=0.5); the recipe's model "
                "so far is the teacher",
            )
    module, cls_name = STAGE_CONFIGS[name]
    config_cls = getattr(importlib.import_module(module), cls_name)
    known = [f.name for f in dataclasses.fields(config_cls)] + (
        ["student"] if name == "distill" else []
    )
    for key in options:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise lines.error(path + (key,), f"unknown key{hint}; {name} takes {', '.join(known)}")
    try:
        config = TypeAdapter(config_cls).validate_python(options)
    except ValidationError as exc:
        raise _first_error(exc, path, lines, None) from None
    except (SlimcvError, ValueError, TypeError) as exc:  # the config's own __post_init__ checks
        raise lines.error(path, str(exc)) from None
    return Stage(name=name, index=index, config=config, student=student)


def _first_error(
    exc: ValidationError, prefix: tuple[Any, ...], lines: _Lines, fields: Any
) -> RecipeError:
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden" and fields is not None:
        close = difflib.get_close_matches(str(loc[-1]), list(fields), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return lines.error(prefix + loc, f"unknown key{hint}; known: {', '.join(fields)}")
    message = error["msg"]
    if "input" in error and error["type"] != "missing":
        message += f" (got {error['input']!r})"
    # pydantic wraps __post_init__ errors as "Value error, ..."; keep the config's own words.
    message = message.removeprefix("Value error, ")
    return lines.error(prefix + loc, message)


def _check_order(recipe: Recipe, lines: _Lines) -> None:
    """Stage orders that cannot work are refused before anything runs."""
    if recipe.model is None:
        first = recipe.stages[0]
        raise lines.error(
            ("stages", first.index, first.name),
            f"stage 1 ({first.name}) needs a model but none exists yet: set 'model:' in the "
            "recipe or pass --model",
        )
    quantized_at = None
    for stage in recipe.stages:
        if stage.name == "quantize":
            quantized_at = stage
        elif quantized_at is not None and stage.name in _NEEDS_FLOAT_WEIGHTS:
            raise lines.error(
                ("stages", stage.index, stage.name),
                f"{stage.name} needs float PyTorch weights, but stage {quantized_at.index + 1} "
                "(quantize) already turned the model into an integer graph; move it before "
                "quantize",
            )
