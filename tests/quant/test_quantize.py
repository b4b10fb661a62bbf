"""``slimcv quantize`` end to end on a model trained on real digits."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from conftest import eval_in_fresh_process
from slimcv.cli import main


def _quantize_json(capsys, *args: str) -> dict:
    capsys.readouterr()
    code = main(["quantize", *args, "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


@pytest.fixture(scope="module")
def int8_digits(trained_digits, tmp_path_factory):
    run, _ = trained_digits
    out = tmp_path_factory.mktemp("quant") / "int8"
    code = main(["quantize", str(run), "--data", "digits", "--out", str(out), "--json"])
    assert code == 0
    manifest = json.loads((out / "slimcv.json").read_text())
    return out, manifest


def test_int8_ptq_loses_at_most_half_a_point_and_is_a_quarter_of_the_file(int8_digits):
    out, manifest = int8_digits
    metrics = manifest["metrics"]
    assert metrics["metric"] == "top1"
    assert metrics["drop"] <= 0.5
    assert metrics["onnx_bytes"] <= 0.30 * metrics["float_onnx_bytes"]
    assert (out / "model.onnx").stat().st_size == metrics["onnx_bytes"]


def test_the_artifact_reloads_in_a_fresh_process_with_the_same_accuracy(int8_digits):
    out, manifest = int8_digits
    result = eval_in_fresh_process(out)
    assert abs(result["top1"] - manifest["metrics"]["quant_score"]) < 0.01


def test_the_artifact_benchmarks_on_both_runtimes(int8_digits):
    out, _ = int8_digits
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "slimcv.cli",
            "bench",
            str(out),
            "--backends",
            "onnxruntime,openvino",
            "--min-time",
            "0.2",
            "--no-memory",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    records = json.loads(done.stdout)["records"]
    assert {r["backend"] for r in records if r["status"] == "ok"} == {"onnxruntime", "openvino"}


@pytest.mark.parametrize(
    ("name", "array", "message"),
    [
        ("nan", "nan", "NaN or Inf"),
        ("inf", "inf", "NaN or Inf"),
        ("empty", "empty", "empty"),
        ("size", "size", "takes 3x32x32"),
    ],
)
def test_bad_calibration_data_is_one_clear_error_and_writes_nothing(
    trained_digits, tmp_path, capsys, name, array, message
):
    run, _ = trained_digits
    images = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    if array == "nan":
        images[2, 0, 3, 3] = np.nan
    elif array == "inf":
        images[5, 1, 0, 0] = np.inf
    elif array == "empty":
        images = images[:0]
    elif array == "size":
        images = np.zeros((8, 3, 48, 48), np.float32)
    path = tmp_path / f"{name}.npy"
    np.save(path, images)
    out = tmp_path / "out"
    code = main(["quantize", str(run), "--data", str(path), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not out.exists()


def test_unlabeled_calibration_reports_agreement(trained_digits, tmp_path, capsys):
    run, _ = trained_digits
    images = np.random.default_rng(1).standard_normal((16, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "calib.npy", images)
    result = _quantize_json(
        capsys, str(run), "--data", str(tmp_path / "calib.npy"), "--out", str(tmp_path / "q")
    )
    assert result["metric"] == "agreement" and result["float_score"] == 100.0
    assert result["calibration_images"] == 16


def test_max_drop_keeps_sensitive_layers_float_and_lists_them(trained_digits, tmp_path):
    from rich.console import Console

    from slimcv import QuantizeConfig, load_model, quantize
    from slimcv.report.tables import quantize_table

    run, _ = trained_digits
    model = load_model(str(run))
    full = quantize(model, QuantizeConfig(weight_bits=3), data="digits", out_dir=tmp_path / "a")
    assert full.drop > 0.5  # 3-bit weights everywhere cost more than the bound
    mixed = quantize(
        model, QuantizeConfig(weight_bits=3, max_drop=0.5), data="digits", out_dir=tmp_path / "b"
    )
    assert mixed.drop <= 0.5
    kept = mixed.float_layers
    assert kept and all("mixed precision" in reason for reason in kept.values())
    assert len(mixed.sensitivity) == len(full.quantized_layers)
    onnxruntime = next(c for c in mixed.int8_checks if c["backend"] == "onnxruntime")
    assert onnxruntime["float_layers"] == len(kept) and onnxruntime["passed"]
    console = Console(record=True, width=200)
    console.print(quantize_table(mixed))
    text = console.export_text()
    assert "kept float" in text and next(iter(kept)) in text


class _WithTransposed(nn.Module):
    """A conv, a transposed conv (not quantized by slimcv) and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        return self.head(self.up(x).mean((2, 3)))


def test_an_unsupported_layer_stays_float_with_a_warning_and_export_completes(tmp_path):
    from slimcv import QuantizeConfig, quantize
    from slimcv.sources.model import LoadedModel, Preprocess

    torch.manual_seed(0)
    model = LoadedModel(
        source="small",
        num_classes=4,
        preprocess=Preprocess(image_size=16),
        module=_WithTransposed(),
    )
    with pytest.warns(UserWarning, match="ConvTranspose2d"):
        result = quantize(
            model, QuantizeConfig(), data=torch.randn(16, 3, 16, 16), out_dir=tmp_path / "q"
        )
    assert "up" in result.float_layers and set(result.quantized_layers) == {"conv", "head"}
    assert (tmp_path / "q" / "model.onnx").is_file()
    assert all(c["passed"] for c in result.int8_checks)
