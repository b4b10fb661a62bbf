"""``arch:`` model sources: families and spec strings as sources, checked up front, and an
artifact trained from one that reloads from its stored source string."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimcv.arch import SpecNet
from slimcv.cli import main
from slimcv.errors import SourceError, SpecError
from slimcv.sources import GRAMMAR_HELP, build_module, load_model, parse_source


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("arch:mobilenetv2", "mobilenetv2"),
        ("arch:mobilenetv2:width=0.5,small_input=true", "mobilenetv2:width=0.5,small_input=true"),
        ("arch:efficientnet:phi=1", "efficientnet:phi=1"),
        ("arch:stem_c16,ir_r2_k3_s2_e6_c24", "stem_c16,ir_r2_k3_s2_e6_c24"),
        (" arch:mobilevit_xxs ", "mobilevit_xxs"),
    ],
)
def test_parse_arch_sources(text: str, target: str) -> None:
    spec = parse_source(text)
    assert (spec.kind, spec.target, spec.attr) == ("arch", target, None)


def test_grammar_help_mentions_arch() -> None:
    assert "arch:FAMILY" in GRAMMAR_HELP and "arch:SPEC" in GRAMMAR_HELP


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("arch:", SourceError, "expected arch:FAMILY or arch:SPEC"),
        ("arch:mobilenet", SourceError, "unknown network family 'mobilenet'"),
        ("arch:mobilenetv2:widht=2", SpecError, "did you mean 'width'?"),
        ("arch:efficientnet:phi", SpecError, "needs key=value"),
        ("arch:stem_c16,ir_k3_s2_e6", SpecError, "has no channel count"),
        ("arch:stem_c16,irr_c24", SpecError, "unknown block kind 'irr'"),
    ],
)
def test_bad_arch_sources_fail_at_parse_time(text: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message.replace("?", r"\?")):
        parse_source(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("arch:mobilenetv2:width=0.5", 224),
        ("arch:mobilenetv2:small_input=true", 32),
        ("arch:efficientnet:phi=1", 256),
        ("arch:mobilevit_xxs", 256),
        ("arch:stem_c16,ir_r2_k3_s2_e6_c24", 224),
    ],
)
def test_preprocess_takes_the_family_resolution(text: str, size: int) -> None:
    module, preprocess = build_module(text, 7)
    assert isinstance(module, SpecNet) and module.classifier.out_features == 7
    assert preprocess.image_size == size


def test_load_model_defaults_to_1000_classes() -> None:
    model = load_model("arch:stem_c16,ir_c24,head_c32")
    assert model.num_classes == 1000 and model.labels is not None
    assert model.source == "arch:stem_c16,ir_c24,head_c32"


def test_trained_arch_artifact_reloads_for_eval(capsys, tmp_path: Path) -> None:
    out = tmp_path / "run"
    source = "arch:stem_c16,ir_r2_k3_s2_e4_c24,ir_k3_s2_e4_c32,head_c64"
    code = main(
        [
            "train",
            source,
            "--data",
            "digits",
            "--num-classes",
            "10",
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--json",
        ]
    )
    trained = json.loads(capsys.readouterr().out)
    assert code == 0
    assert json.loads((out / "slimcv.json").read_text())["source"] == source
    code = main(["eval", str(out), "--data", "digits", "--json"])
    evaluated = json.loads(capsys.readouterr().out)
    assert code == 0
    reloaded = load_model(str(out))
    assert reloaded.preprocess.image_size == 32 and reloaded.module.spec.head_channels == 64
    # The reloaded weights are the trained ones: eval reproduces training's own val accuracy.
    assert evaluated["samples"] == 360
    assert evaluated["top1"] == pytest.approx(trained["final_val_top1"], abs=1e-9)
