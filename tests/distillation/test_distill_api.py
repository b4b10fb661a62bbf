# ruff: noqa: F811 - the fixtures are imported from distill_helpers
"""slimcv.distill end to end: the acceptance checks, the cache, bad input, the CLI, the hooks."""

from __future__ import annotations

import json

import pytest
import torch
from distill_helpers import (  # noqa: F401 - fixtures
    STUDENT,
    clone,
    small_teacher,
    small_teacher_dir,
    tiny_student,
)

from conftest import eval_in_fresh_process
from slimcv.cli import main
from slimcv.data import load_data
from slimcv.distillation import DistillConfig, distill
from slimcv.distillation.cache import cached_teacher_logits, is_deterministic
from slimcv.distillation.wiring import FrozenTeacher
from slimcv.errors import DataError, SourceError, UnknownNameError
from slimcv.sources import load_model


def test_kd_student_an_eighth_of_resnet18_learns_from_it(trained_digits, tmp_path):
    """The acceptance setting (the 3-seed comparison is benchmarks/distill_students.py)."""
    from slimcv.training import seed_everything

    teacher_dir, _ = trained_digits
    teacher = load_model(str(teacher_dir))
    seed_everything(0)
    student = load_model("slimcv.distillation.students:small_cnn", num_classes=10, image_size=32)
    config = DistillConfig(epochs=2, lr=5e-3, cache_dir=str(tmp_path / "cache"))
    result = distill(teacher, student, "digits", tmp_path / "student", config)
    assert result.macs_ratio is not None and result.macs_ratio <= 1 / 8
    assert result.teacher_macs[0] > 30e6 and result.student_macs < result.teacher_macs[0] / 8
    assert result.teacher_top1[0] > 90
    assert result.student_top1 > 30
    assert result.cache[0]["hit"] is False
    assert result.epochs[-1].train_loss < result.epochs[0].train_loss
    fresh = eval_in_fresh_process(tmp_path / "student")
    assert fresh["top1"] == pytest.approx(result.student_top1, abs=1e-6)


def test_cached_logits_are_the_teachers_and_are_reused(small_teacher, tmp_path):
    bundle = load_data("digits", small_teacher.preprocess)
    teacher = FrozenTeacher(small_teacher.module, small_teacher.preprocess)
    first, info = cached_teacher_logits(
        teacher, bundle.train, tmp_path, data_name="digits", image_size=16
    )
    again, info2 = cached_teacher_logits(
        teacher, bundle.train, tmp_path, data_name="digits", image_size=16
    )
    assert (info.hit, info2.hit) == (False, True) and info.key == info2.key
    assert torch.equal(first, again) and first.shape == (len(bundle.train), 10)
    images = torch.stack([bundle.train[i][0] for i in range(5)])
    assert torch.allclose(first[:5], teacher(images), atol=1e-5)
    assert not list(tmp_path.glob("*.tmp"))  # written atomically, no leftovers
    # other teacher weights -> another key (a stale file is never read)
    with torch.no_grad():
        next(small_teacher.module.parameters()).add_(0.01)
    _, info3 = cached_teacher_logits(
        teacher, bundle.train, tmp_path, data_name="digits", image_size=16
    )
    assert info3.key != info.key and not info3.hit
    # a corrupted file is recomputed, not trusted
    (tmp_path / f"{info.key}.safetensors").write_bytes(b"garbage")
    _, info4 = cached_teacher_logits(
        FrozenTeacher(load_model(str(small_teacher.meta["artifact"])).module),
        bundle.train,
        tmp_path,
        data_name="digits",
        image_size=16,
    )
    assert not info4.hit


def test_the_cache_refuses_randomly_augmented_data(small_teacher, tmp_path):
    from torchvision import transforms as T

    class Flipped(torch.utils.data.Dataset):
        transform = T.RandomHorizontalFlip()

        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int):
            return self.transform(torch.rand(3, 16, 16)), 0

    assert not is_deterministic(Flipped())
    assert is_deterministic(load_data("digits", small_teacher.preprocess).train)
    with pytest.raises(DataError, match="randomly augmented"):
        cached_teacher_logits(
            FrozenTeacher(small_teacher.module), Flipped(), tmp_path, data_name="x", image_size=16
        )
    assert not any(tmp_path.iterdir())


def test_teacher_and_student_with_different_classes(small_teacher, tmp_path):
    student = load_model(STUDENT, num_classes=5, image_size=16)
    with pytest.raises(SourceError, match="outputs 10 classes but the student 5"):
        distill(small_teacher, student, "digits", tmp_path / "out", DistillConfig(epochs=1))
    assert not (tmp_path / "out").exists()


def test_unknown_feature_layer_lists_close_names_first(small_teacher, tiny_student, tmp_path):
    config = DistillConfig(method="feature", feature_pairs="stage2:stage3")
    with pytest.raises(UnknownNameError) as info:
        distill(small_teacher, tiny_student, "digits", tmp_path / "out", config)
    message = str(info.value)
    assert "the student has no layer 'stage3'" in message
    listed = message.partition("its layers are: ")[2].split(", ")
    assert listed[0] in ("stage1", "stage2") and "stem" in listed
    assert "\n" not in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--student", STUDENT, "--num-classes", "5"], "classes but the student 5"),
        (
            ["--student", STUDENT, "--num-classes", "10", "--method", "feature"]
            + ["--feature-pairs", "stage2:nope"],
            "has no layer 'nope'",
        ),
        (["--student", STUDENT, "--method", "kd", "--alpha", "2"], "--alpha"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(
    extra, needle, small_teacher_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    args = ["distill", "--teacher", str(small_teacher_dir), "--data", "digits"]
    code = main([*args, "--out", str(out), "--epochs", "1", "--image-size", "16", *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_cli_distill_json_and_fresh_process_reload(small_teacher_dir, tmp_path, capsys):
    out = tmp_path / "student"
    code = main(
        ["distill", "--teacher", str(small_teacher_dir), "--student", STUDENT]
        + ["--num-classes", "10", "--image-size", "16", "--data", "digits"]
        + ["--out", str(out), "--epochs", "1", "--temperature", "3", "--alpha", "0.7", "--json"]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["method"] == "kd" and data["method_config"] == {"temperature": 3.0, "alpha": 0.7}
    for key in ("teacher_top1", "student_top1", "student_macs", "teacher_macs", "macs_ratio"):
        assert key in data
    assert eval_in_fresh_process(out)["top1"] == pytest.approx(data["student_top1"], abs=1e-6)


def test_prune_and_qat_fine_tune_with_the_original_as_teacher(small_teacher, tmp_path, monkeypatch):
    """--distill hands fit() a soft-target objective whose teacher is the unchanged model."""
    import slimcv.training
    import slimcv.training.loop
    from slimcv.distillation.methods.kd import SoftTargetObjective
    from slimcv.pruning import PruneConfig, prune
    from slimcv.quant import QuantizeConfig, quantize

    seen = []
    real_fit = slimcv.training.loop.fit

    def spy(module, data, config, **kwargs):
        seen.append(kwargs.get("objective"))
        return real_fit(module, data, config, **kwargs)

    monkeypatch.setattr(slimcv.training, "fit", spy)
    monkeypatch.setattr(slimcv.training.loop, "fit", spy)
    original = {k: v.clone() for k, v in small_teacher.module.state_dict().items()}
    model = clone(small_teacher)
    config = PruneConfig(ratio=0.5, finetune_epochs=1, distill=True)
    result = prune(model, config, data="digits", progress=False)
    assert isinstance(seen[-1], SoftTargetObjective)
    teacher = seen[-1]._targets[0].teachers[0].module
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in original.items())
    assert result.macs_after < result.macs_before
    qat = QuantizeConfig(method="qat", qat_epochs=1, qat_lr=1e-3, distill=True)
    quantize(clone(small_teacher), qat, data="digits", out_dir=tmp_path / "q")
    assert isinstance(seen[-1], SoftTargetObjective)
    assert all(
        torch.equal(seen[-1]._targets[0].teachers[0].module.state_dict()[k], v)
        for k, v in original.items()
    )
