"""slimcv.prune end to end: configs, target searches, artifacts that reload, CLI errors."""

import json
from pathlib import Path

import pytest

from conftest import eval_in_fresh_process
from slimcv.cli import main
from slimcv.errors import SlimcvError
from slimcv.pruning import PruneConfig, prune
from slimcv.pruning.targets import MAX_RATIO, bisect_ratio
from slimcv.sources import load_model


def test_bisect_finds_the_ratio_within_tolerance():
    def fake_macs(ratio: float) -> float:  # channels removed on both sides of a conv
        return (1 - ratio) ** 2

    result = bisect_ratio(fake_macs, 0.5, unit="of MACs", tolerance=0.01)
    assert abs(result.value - 0.5) <= 0.005 + 1e-9
    assert result.ratio == pytest.approx(1 - 0.5**0.5, abs=0.01)
    assert result.steps[0].ratio == MAX_RATIO


def test_bisect_refuses_an_unreachable_target():
    with pytest.raises(SlimcvError, match="cannot be reached"):
        bisect_ratio(lambda r: 10.0 - r, 1.0, unit="ms", tolerance=0.1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 1.5}, "between 0 and 1"),
        ({"ratio": 0.0}, "between 0 and 1"),
        ({}, "exactly one"),
        ({"ratio": 0.5, "target_macs": 0.5}, "exactly one"),
        ({"target_macs": 1.2}, "fraction of MACs"),
        ({"mode": "unstructured", "target_macs": 0.5}, "--ratio"),
        ({"ratio": 0.5, "mode": "sparse"}, "unknown pruning mode"),
        ({"ratio": 0.5, "schedule": "sometimes"}, "schedule"),
        ({"ratio": 0.5, "schedule": "gradual:3"}, "gradual"),
        ({"target_macs": 0.5, "allocation": "sensitivity", "finetune_epochs": -1}, "0 or more"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(SlimcvError, match=message):
        PruneConfig(**kwargs)


def test_unstructured_80_percent_artifact_is_small_and_reloads(tmp_path: Path):
    model = load_model("torchvision:resnet18", num_classes=10, image_size=32)
    dense = tmp_path / "dense"
    from slimcv.sources import save_artifact

    save_artifact(dense, model, command="test")
    result = prune(
        model, PruneConfig(mode="unstructured", ratio=0.8), out_dir=tmp_path / "sp", progress=False
    )
    assert result.sparsity["overall_sparsity"] == pytest.approx(0.8, abs=0.005)
    assert "dense runtimes" in " ".join(result.notes)  # the honest note: no speed-up
    size = (tmp_path / "sp" / "model.safetensors").stat().st_size
    assert size <= 0.35 * (dense / "model.safetensors").stat().st_size
    assert eval_in_fresh_process(tmp_path / "sp")["samples"] == 360


def test_cli_prune_bad_input_exit_2_writes_nothing(tmp_path: Path, capsys):
    cases = [
        ["--ratio", "1.5"],
        ["--ratio", "0.5", "--ignore", "layer9.conv"],
        ["--target-macs", "0.0001"],
    ]
    for extra in cases:
        out = tmp_path / "out"
        code = main(
            [
                "prune",
                "torchvision:resnet18",
                "--num-classes",
                "10",
                "--image-size",
                "32",
                "--out",
                str(out),
                *extra,
            ]
        )
        err = capsys.readouterr().err
        assert code == 2, (extra, err)
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert not out.exists()


def test_halving_macs_of_trained_digits_model_with_finetune(trained_digits, tmp_path: Path):
    run_dir, _ = trained_digits
    model = load_model(str(run_dir))
    result = prune(
        model,
        PruneConfig(target_macs=0.5, finetune_epochs=3),
        data="digits",
        out_dir=tmp_path / "half",
        progress=False,
    )
    assert result.macs_after / result.macs_before == pytest.approx(0.5, abs=0.02)
    assert result.top1_after >= result.top1_before - 1.0, result
    fresh = eval_in_fresh_process(tmp_path / "half")
    assert fresh["top1"] == pytest.approx(result.top1_after, abs=1e-6)


def test_latency_target_is_met_on_the_measured_runtime():
    """Timing on a shared 2-core machine is noisy, so the best of three tries must land."""
    from slimcv.pruning.targets import measure_latency_ms

    errors = []
    for _ in range(3):
        model = load_model("torchvision:resnet18", num_classes=10, image_size=128)
        target = 0.5 * measure_latency_ms(model.module, model.input_shape(1), "onnxruntime", None)
        result = prune(model, PruneConfig(target_latency_ms=target), progress=False)
        errors.append(abs(result.latency_ms_after - target) / target)
        if errors[-1] <= 0.10:
            break
    assert min(errors) <= 0.10, errors


def test_sensitivity_cli_writes_curves_and_plot(trained_digits, tmp_path: Path, capsys):
    run_dir, _ = trained_digits
    plot = tmp_path / "curves.png"
    code = main(
        [
            "sensitivity",
            str(run_dir),
            "--data",
            "digits",
            "--layers",
            "conv1,layer4.1.conv1",
            "--ratios",
            "0.5,0.9",
            "--samples",
            "128",
            "--plot",
            str(plot),
            "--json",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["layer"] for c in data["curves"]] == ["conv1", "layer4.1.conv1"]
    assert all(len(c["top1"]) == 2 for c in data["curves"])
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
