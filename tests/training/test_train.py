import pytest

from conftest import eval_in_fresh_process
from slimcv.errors import DataError, InputShapeError, SlimcvError
from slimcv.sources import load_model
from slimcv.training import TrainConfig, seed_everything, train


def test_trained_resnet18_reaches_95_on_digits_in_a_fresh_process(trained_digits):
    out, result = trained_digits
    assert len(result.epochs) == 5
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    report = eval_in_fresh_process(out)
    assert report["top1"] >= 95.0, report
    assert report["top5"] >= report["top1"]
    assert set(report["per_class"]) == {str(d) for d in range(10)}
    assert report["samples"] == 360


def test_training_is_seeded(tmp_path):
    def run(seed: int) -> float:
        seed_everything(seed)  # the initial weights are drawn when the model is built
        model = load_model("torchvision:resnet18", num_classes=10, image_size=16)
        cfg = TrainConfig(epochs=1, seed=seed, batch_size=128)
        result = train(model, "synthetic", tmp_path / f"s{seed}", cfg, progress=False)
        return result.epochs[0].train_loss

    first = run(0)
    assert run(0) == pytest.approx(first, rel=1e-6)


def test_class_count_mismatch_is_explained(tmp_path):
    model = load_model("torchvision:resnet18", num_classes=3, image_size=16)
    with pytest.raises(DataError, match="--num-classes 10"):
        train(model, "digits", tmp_path / "x", TrainConfig(epochs=1), progress=False)
    assert not (tmp_path / "x").exists()


def test_impossible_image_size_fails_before_training(tmp_path):
    model = load_model("torchvision:vit_b_16", num_classes=10, image_size=32)
    with pytest.raises(InputShapeError, match="cannot take input"):
        train(model, "digits", tmp_path / "x", TrainConfig(epochs=1), progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "kwargs", [{"epochs": 0}, {"lr": -1.0}, {"optimizer": "lamb"}, {"batch_size": 0}]
)
def test_config_validation(kwargs):
    with pytest.raises(SlimcvError):
        TrainConfig(**kwargs)
