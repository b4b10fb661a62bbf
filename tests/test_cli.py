"""The command line as a user meets it: JSON outputs, and one clear line for every mistake."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slimcv.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    garbage_pt = tmp_path / "garbage.pt"
    garbage_pt.write_bytes(b"\x00not a checkpoint")
    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(1000)}, good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    garbage_onnx = tmp_path / "garbage.onnx"
    garbage_onnx.write_bytes(b"definitely not protobuf")
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    return {"garbage": garbage_pt, "truncated": truncated, "onnx": garbage_onnx, "empty": empty}


BAD_INPUTS = {
    "missing path": ["eval", "no/such/run", "--data", "digits"],
    "garbage checkpoint": ["profile", "torchvision:resnet18", "--weights", "{garbage}"],
    "truncated checkpoint": ["profile", "torchvision:resnet18", "--weights", "{truncated}"],
    "garbage onnx": ["eval", "{onnx}", "--data", "digits"],
    "unknown model": ["profile", "torchvision:resnet81"],
    "empty image folder": [
        "eval",
        "torchvision:resnet18",
        "--num-classes",
        "2",
        "--data",
        "{empty}",
    ],
    "impossible image size": ["profile", "torchvision:vit_b_16", "--image-size", "100"],
    "malformed source": ["profile", "resnet18:"],
    "unknown backend": ["bench", "torchvision:resnet18", "--backends", "torchh"],
    "bad batch list": ["bench", "torchvision:resnet18", "--batch", "1,x"],
    "unknown option": ["profile", "torchvision:resnet18", "--colour"],
    "missing image": ["predict", "torchvision:resnet18", "no_such.png"],
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(case, bad_files, capsys, tmp_path):
    argv = [a.format(**bad_files) for a in BAD_INPUTS[case]]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (case, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # wrote nothing


def test_failed_train_writes_nothing(bad_files, capsys, tmp_path):
    out_dir = tmp_path / "never"
    code, _, err = run_cli(
        capsys,
        "train",
        "torchvision:resnet18",
        "--num-classes",
        "10",
        "--weights",
        str(bad_files["garbage"]),
        "--out",
        str(out_dir),
    )
    assert code == 2 and "not a" in err
    assert not out_dir.exists()


def test_console_script_prints_no_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "slimcv.cli", "profile", "nope:"], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: ") and "Traceback" not in done.stderr


def test_profile_json_keys(capsys):
    code, out, _ = run_cli(capsys, "profile", "torchvision:mobilenet_v2", "--json")
    assert code == 0
    data = json.loads(out)
    assert {"params", "macs", "layers"} <= set(data)
    assert abs(data["macs"] - 300e6) / 300e6 < 0.02
    assert data["params"] == sum(layer["params"] for layer in data["layers"])


def test_predict_efficientnet_lite0_says_cat(capsys, tmp_path):
    from PIL import Image
    from skimage import data as skdata

    image = tmp_path / "chelsea.png"
    Image.fromarray(skdata.chelsea()).save(image)
    code, out, _ = run_cli(
        capsys, "predict", "timm:efficientnet_lite0:imagenet", str(image), "--json"
    )
    assert code == 0
    [result] = json.loads(out)
    top = result["predictions"]
    assert len(top) == 5
    assert 281 <= top[0]["index"] <= 285, top  # ImageNet's domestic cats
    assert {"index", "label", "prob"} == set(top[0])
    probs = [p["prob"] for p in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_eval_and_export_cli_on_trained_model(trained_digits, capsys, tmp_path):
    run_dir, _ = trained_digits
    out_dir = tmp_path / "export"
    code, out, _ = run_cli(capsys, "export", str(run_dir), "--out", str(out_dir), "--json")
    assert code == 0
    result = json.loads(out)
    assert all(check["passed"] for check in result["checks"])
    code, out, _ = run_cli(
        capsys, "eval", str(out_dir / "model.onnx"), "--data", "digits", "--json"
    )
    assert code == 0
    onnx_eval = json.loads(out)
    code, out, _ = run_cli(capsys, "eval", str(run_dir), "--data", "digits", "--json")
    torch_eval = json.loads(out)
    assert onnx_eval["runtime"] == "onnxruntime" and torch_eval["runtime"] == "torch"
    # the ONNX file inside the artifact takes its preprocessing from the manifest
    assert abs(onnx_eval["top1"] - torch_eval["top1"]) <= 0.5


def test_cli_refuses_to_overwrite_its_input(trained_digits, capsys):
    run_dir, _ = trained_digits
    code, _, err = run_cli(capsys, "export", str(run_dir), "--out", str(run_dir))
    assert code == 2 and "overwrite the input" in err
