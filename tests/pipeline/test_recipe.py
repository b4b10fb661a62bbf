"""Recipes: the bundled examples validate, and every mistake names file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from slimcv.errors import RecipeError
from slimcv.pipeline.recipe import STAGE_CONFIGS, load_recipe, parse_recipe
from slimcv.quant import QuantizeConfig
from slimcv.training import TrainConfig

RECIPES = sorted((Path(__file__).parents[2] / "recipes").glob("*.yaml"))

GOOD = """\
name: demo
model: torchvision:resnet18
data: digits
num_classes: 10
image_size: 32
stages:
  - train: {epochs: 3, lr: 0.01}
  - quantize:
      precision: int8
      calibration: percentile
  - bench: {backends: [onnxruntime]}
"""


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_bundled_recipes_validate(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.model and recipe.stages
    assert all(stage.name in STAGE_CONFIGS for stage in recipe.stages)


def test_bundled_recipes_exist() -> None:
    assert len(RECIPES) >= 2


def test_stage_options_become_the_stage_configs() -> None:
    recipe = parse_recipe(GOOD)
    train, quantize, bench = recipe.stages
    assert isinstance(train.config, TrainConfig) and train.config.epochs == 3
    assert train.config.lr == 0.01 and train.config.batch_size == TrainConfig().batch_size
    assert isinstance(quantize.config, QuantizeConfig)
    assert quantize.config.calibration == "percentile"
    assert tuple(bench.config.backends) == ("onnxruntime",)
    assert recipe.image_size == 32 and recipe.num_classes == 10


def _error(text: str, source: str = "r.yaml") -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(text, source=source)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_typo_in_a_stage_key_names_file_line_key_and_suggests() -> None:
    message = _error(GOOD.replace("calibration: percentile", "calibraton: percentile"))
    assert message.startswith("r.yaml:10: stages[1].quantize.calibraton: unknown key")
    assert "did you mean 'calibration'" in message


def test_typo_in_a_top_level_key() -> None:
    message = _error(GOOD.replace("num_classes:", "num_clases:"))
    assert message.startswith("r.yaml:4: num_clases: unknown key")
    assert "did you mean 'num_classes'" in message


def test_bad_value_names_the_line_and_the_value() -> None:
    message = _error(GOOD.replace("epochs: 3", "epochs: three"))
    assert message.startswith("r.yaml:7: stages[0].train.epochs:")
    assert "'three'" in message


def test_config_checks_of_the_stage_are_reported_at_the_stage() -> None:
    message = _error(GOOD.replace("precision: int8", "precision: int3"))
    assert message.startswith("r.yaml:8: stages[1].quantize:")
    assert "int3" in message


def test_unknown_stage_suggests() -> None:
    message = _error(GOOD.replace("- bench:", "- benhc:"))
    assert message.startswith("r.yaml:11: stages[2].benhc: unknown stage (did you mean 'bench'?)")


def test_float_stage_after_quantize_is_refused() -> None:
    text = GOOD + "  - prune: {ratio: 0.5}\n"
    message = _error(text)
    assert message.startswith("r.yaml:12: stages[3].prune: prune needs float PyTorch weights")


def test_no_model_is_refused_unless_the_command_line_gives_one() -> None:
    text = GOOD.replace("model: torchvision:resnet18\n", "")
    message = _error(text)
    assert "stage 1 (train) needs a model but none exists yet" in message
    recipe = parse_recipe(text, model="torchvision:resnet18")
    assert recipe.model == "torchvision:resnet18"


def test_yaml_syntax_error_and_missing_file() -> None:
    message = _error("stages:\n  - train: {epochs: 3\n")
    assert message.startswith("r.yaml:") and "not valid YAML" in message
    with pytest.raises(RecipeError, match="cannot read recipe"):
        load_recipe("no/such/recipe.yaml")


def test_distill_needs_a_student_and_keeps_it_apart_from_the_config() -> None:
    text = GOOD.replace("  - quantize:", "  - distill: {epochs: 2}\n  - quantize:")
    message = _error(text)
    assert message.startswith("r.yaml:8: stages[1].distill: distill needs 'student: SOURCE'")
    text = GOOD.replace(
        "  - quantize:",
        "  - distill: {student: 'arch:mobilenetv2:width=0.5', epochs: 2}\n  - quantize:",
    )
    stage = parse_recipe(text, source="r.yaml").stages[1]
    assert stage.student == "arch:mobilenetv2:width=0.5" and stage.config.epochs == 2
