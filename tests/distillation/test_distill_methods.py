# ruff: noqa: F811 - the fixtures are imported from distill_helpers
"""Each method's objective: what it trains, what it keeps out of checkpoints, that it learns."""

from __future__ import annotations

import math

import pytest
import torch
from distill_helpers import small_teacher, small_teacher_dir, tiny_student  # noqa: F401
from torch import nn

from slimcv.data import load_data
from slimcv.distillation import METHODS, DistillConfig, distill
from slimcv.distillation.methods import DistillContext
from slimcv.distillation.wiring import FrozenTeacher
from slimcv.training import TrainConfig, fit


def _context(teacher, student) -> DistillContext:
    return DistillContext(
        student=student.module,
        teachers=[FrozenTeacher(teacher.module, teacher.preprocess, student.preprocess)],
        input_shape=student.input_shape(1),
        num_classes=student.num_classes,
    )


def _hooks(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in module.modules())


def test_feature_distillation_between_widths_creates_adapters_and_the_loss_falls(
    small_teacher, tiny_student
):
    # teacher: 16/32/64 channels; student: 8/16/32 - every pair needs a learned adapter
    config = DistillConfig(method="feature", feature_pairs="stage1:stage1,stage2:stage2")
    context = _context(small_teacher, tiny_student)
    objective = METHODS.get("feature").build(config.method_config(), context)
    adapters = list(objective.adapters)
    assert [(a.in_channels, a.out_channels) for a in adapters] == [(16, 32), (32, 64)]
    # the frozen teacher is neither trained nor checkpointed: only the adapters are
    assert set(objective.state_dict()) == {"adapters.0.weight", "adapters.1.weight"}
    bundle = load_data("digits", tiny_student.preprocess)
    images, labels = next(iter(torch.utils.data.DataLoader(bundle.train, batch_size=128)))
    indices = torch.arange(len(labels))

    def feature_part() -> float:
        with torch.no_grad():
            return objective(tiny_student.module.eval(), images, labels, indices).parts["feature"]

    before = feature_part()
    teacher_before = {k: v.clone() for k, v in small_teacher.module.state_dict().items()}
    history = fit(
        tiny_student.module,
        bundle,
        TrainConfig(epochs=2, lr=5e-3),
        objective=objective,
        progress=False,
    )
    after = feature_part()
    assert after < 0.7 * before, (before, after)
    assert history[-1].val_top1 > 30
    for key, value in small_teacher.module.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    assert _hooks(tiny_student.module) == 0 and _hooks(small_teacher.module) == 0


def test_spatial_sizes_are_interpolated(small_teacher, tiny_student):
    # the teacher's stage2 is 4x4 at 16 px; the student's stem is 16x16
    config = DistillConfig(method="feature", feature_pairs="stage2:stem", feature_loss="cosine")
    objective = METHODS.get("feature").build(
        config.method_config(), _context(small_teacher, tiny_student)
    )
    step = objective(
        tiny_student.module.train(), torch.randn(4, 3, 16, 16), torch.arange(4), torch.arange(4)
    )
    step.loss.backward()
    assert objective.adapters[0].weight.grad is not None
    assert 0 <= step.parts["feature"] <= 2


def test_ensemble_of_two_equal_teachers_equals_one(small_teacher, tiny_student):
    ctx = _context(small_teacher, tiny_student)
    one = METHODS.get("kd").build(DistillConfig().method_config(), ctx)
    ctx.teachers = ctx.teachers * 2
    two = METHODS.get("ensemble").build(
        DistillConfig(method="ensemble", teacher_weights=(3.0, 1.0)).method_config(), ctx
    )
    images, labels = torch.randn(8, 3, 16, 16), torch.arange(8) % 10
    student = tiny_student.module.eval()
    a = one(student, images, labels, torch.arange(8)).loss
    b = two(student, images, labels, torch.arange(8)).loss
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
    assert not list(two.parameters())


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("attention", {"feature_pairs": "stage1:stage1,stage2:stage2"}),
        ("ensemble", {}),
        ("self", {"exits": ("stem", "stage1")}),
        ("mutual", {}),
    ],
)
def test_every_method_trains_a_reloadable_student(
    method, extra, small_teacher, tiny_student, tmp_path
):
    from slimcv.sources import load_model

    teacher = {"ensemble": [small_teacher, small_teacher], "self": None, "mutual": None}.get(
        method, small_teacher
    )
    before = {k: v.clone() for k, v in tiny_student.module.state_dict().items()}
    config = DistillConfig(method=method, epochs=1, lr=5e-3, **extra)
    result = distill(teacher, tiny_student, "digits", tmp_path / "s", config)
    assert result.method == method
    assert any(not torch.equal(v, before[k]) for k, v in tiny_student.module.state_dict().items())
    reloaded = load_model(str(tmp_path / "s"))
    # exit heads, adapters and peers belong to the objective, not to the saved student
    assert set(reloaded.module.state_dict()) == set(before)
    assert _hooks(tiny_student.module) == 0
    if method == "mutual":
        assert result.peer_top1 is not None and result.teachers == []
    assert math.isfinite(result.epochs[-1].train_loss)
