"""The distillation losses and method configs, on tensors (fast)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from slimcv.distillation import METHODS, DistillConfig
from slimcv.distillation.losses import (
    attention_map,
    attention_transfer_loss,
    feature_loss,
    soft_target_loss,
    soft_targets,
)
from slimcv.errors import SlimcvError, UnknownNameError


def test_soft_target_loss_is_t_squared_kl():
    torch.manual_seed(0)
    student, teacher = torch.randn(8, 10), torch.randn(8, 10) * 3
    temperature = 4.0
    p = F.softmax(teacher / temperature, 1)
    q = F.softmax(student / temperature, 1)
    expected = (p * (p.log() - q.log())).sum(1).mean() * temperature**2
    got = soft_target_loss(student, soft_targets(teacher, temperature), temperature)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    same = soft_target_loss(teacher, soft_targets(teacher, temperature), temperature)
    assert same.item() == pytest.approx(0.0, abs=1e-6)


def test_t_squared_keeps_gradient_scale_across_temperatures():
    # Hinton et al.: soft-target gradients shrink as 1/T^2; the T^2 factor undoes it, so the
    # balance with the hard-label loss does not drift when T changes.
    torch.manual_seed(0)
    teacher = torch.randn(64, 10)
    norms = []
    for temperature in (4.0, 16.0):
        student = (torch.randn(64, 10) * 0.1).requires_grad_()
        soft_target_loss(student, soft_targets(teacher, temperature), temperature).backward()
        norms.append(student.grad.norm().item())
    assert 0.5 < norms[0] / norms[1] < 2.0


def test_feature_losses():
    a = torch.randn(4, 8, 5, 5)
    assert feature_loss(a, a, "mse").item() == pytest.approx(0.0)
    assert feature_loss(3 * a, a, "cosine").item() == pytest.approx(0.0, abs=1e-6)
    assert feature_loss(-a, a, "cosine").item() == pytest.approx(2.0, abs=1e-5)
    with pytest.raises(ValueError, match="known: mse, cosine"):
        feature_loss(a, a, "l1")


def test_attention_maps_compare_across_widths_and_sizes():
    torch.manual_seed(0)
    narrow = torch.randn(2, 4, 8, 8)
    wide = torch.cat([narrow] * 8, dim=1)  # 32 channels, the same attention
    amap = attention_map(narrow)
    assert amap.shape == (2, 64)
    assert amap.norm(dim=1) == pytest.approx(torch.ones(2), abs=1e-5)
    assert attention_transfer_loss(narrow, wide).item() == pytest.approx(0.0, abs=1e-8)
    coarse = F.avg_pool2d(wide, 2)  # the teacher at 4x4: the student's map is resized
    assert (
        attention_transfer_loss(narrow, coarse).item()
        < attention_transfer_loss(torch.randn(2, 4, 8, 8), coarse).item()
    )


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="known: ") as info:
        DistillConfig(method="kdd")
    assert "did you mean 'kd'" in str(info.value)
    for name in ("kd", "feature", "attention", "ensemble", "self", "mutual"):
        assert name in str(info.value).partition("known: ")[2]


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_config_validates(name):
    method = METHODS.get(name)
    assert method.summary
    with pytest.raises(SlimcvError):
        method.config(alpha=1.5)
    with pytest.raises(SlimcvError):
        method.config(temperature=0.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "kd", "feature_pairs": "layer1:stem"}, "--feature-pairs does not apply"),
        ({"method": "feature"}, "needs layer pairs"),
        ({"method": "feature", "feature_pairs": "layer1"}, "malformed layer pair"),
        ({"method": "feature", "feature_pairs": "a:b", "feature_loss": "l1"}, "known: mse"),
        ({"method": "self"}, "needs exit layers"),
        ({"method": "ensemble", "teacher_weights": (-1.0, 2.0)}, "weights must be >= 0"),
        ({"method": "feature", "feature_pairs": "a:b", "cache_dir": "c"}, "--cache-dir applies"),
        ({"epochs": 0}, "epochs must be at least 1"),
    ],
)
def test_bad_configs_say_why(kwargs, match):
    with pytest.raises(SlimcvError, match=match):
        DistillConfig(**kwargs)


def test_method_defaults():
    assert DistillConfig().method_config().temperature == 4.0
    mutual = DistillConfig(method="mutual").method_config()
    assert (mutual.temperature, mutual.alpha) == (1.0, 0.5)
    pairs = DistillConfig(method="feature", feature_pairs="layer2:stage1, layer3:stage2")
    assert pairs.method_config().pairs == (("layer2", "stage1"), ("layer3", "stage2"))
    assert not math.isnan(DistillConfig(alpha=0.0).method_config().alpha)
