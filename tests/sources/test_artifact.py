import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slimcv.errors import ArtifactError
from slimcv.sources import load_model, save_artifact
from slimcv.sources.artifact import MANIFEST, WEIGHTS, check_output_dir


def test_artifact_reloads_in_a_fresh_process(tmp_path: Path):
    model = load_model("torchvision:mobilenet_v3_small", num_classes=4, image_size=48)
    torch.nn.init.normal_(model.module.classifier[-1].weight)
    x = torch.randn(2, 3, 48, 48)
    expected = model.module.eval()(x)
    out = save_artifact(tmp_path / "art", model, command="test", metrics={"top1": 1.0})
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["source"] == "torchvision:mobilenet_v3_small"
    assert manifest["preprocess"]["image_size"] == 48
    assert set(manifest["files"]) == {WEIGHTS}
    torch.save(x, tmp_path / "x.pt")
    code = (
        "import sys, torch; from slimcv.sources import load_model;"
        f"m = load_model({str(out)!r}); x = torch.load({str(tmp_path / 'x.pt')!r});"
        "print(m.module(x).detach().numpy().tolist())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = torch.tensor(json.loads(done.stdout))
    assert torch.allclose(got, expected, atol=1e-5)


def test_corrupted_weights_are_detected(tmp_path: Path):
    model = load_model("torchvision:resnet18", num_classes=2, image_size=32)
    out = save_artifact(tmp_path / "art", model, command="test")
    data = bytearray((out / WEIGHTS).read_bytes())
    data[-10] ^= 0xFF
    (out / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupted"):
        load_model(str(out))


def test_rewrite_is_atomic_and_leaves_no_temp_dirs(tmp_path: Path):
    model = load_model("torchvision:resnet18", num_classes=2, image_size=32)
    out = save_artifact(tmp_path / "art", model, command="first")
    save_artifact(out, model, command="second")
    assert json.loads((out / MANIFEST).read_text())["history"][-1]["command"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]

    def crash(directory, _model):
        (directory / "half-written").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_artifact(out, model, command="third", write_extra=crash)
    assert json.loads((out / MANIFEST).read_text())["history"][-1]["command"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_output_dir_checks(tmp_path: Path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="not a slimcv artifact"):
        check_output_dir(tmp_path / "busy")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArtifactError, match="is a file"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(ArtifactError, match="overwrite the input"):
        check_output_dir(tmp_path / "in", inputs=[tmp_path / "in"])
