"""Separable-conv surgery: MACs, equivalence at full rank, artifact round trip, export, CLI."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from conftest import randomize_batchnorm
from slimcv.analysis import profile_model
from slimcv.arch.surgery import (
    SeparableConfig,
    SeparableConv2d,
    separable,
    separable_convs_,
)
from slimcv.errors import SlimcvError
from slimcv.sources import load_model

SHAPE = (1, 3, 32, 32)


def _resnet18() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(load_model("torchvision:resnet18", num_classes=10).module).eval()


def _resnet18_expected_drop(rank: int) -> int:
    """Closed form: resnet18's 3x3 convs at 32x32 (8x8 after the stem and max-pool).

    Stage s has 4 replaced convs on an (8 / 2^s)^2 output: the first from C/2 (C at stage 0)
    to C channels, the other three C to C. Each costs HW*9*M*N as a standard conv and
    HW*(9*M*r + M*r*N) as depthwise + pointwise.
    """
    drop = 0
    for stage, width in enumerate((64, 128, 256, 512)):
        hw = (8 // 2**stage) ** 2
        first_in = width if stage == 0 else width // 2
        for cin in (first_in, width, width, width):
            drop += hw * 9 * cin * width - hw * (9 * cin * rank + cin * rank * width)
    return drop


@pytest.mark.parametrize("rank", [1, 2])
def test_resnet18_macs_drop_by_the_closed_form(rank: int) -> None:
    model = _resnet18()
    before = profile_model(model, SHAPE).macs
    x = torch.randn(2, 3, 32, 32)
    names = separable_convs_(model, rank=rank)
    assert len(names) == 16 and "conv1" not in names  # the stem (3 input channels) stays
    assert all(isinstance(model.get_submodule(n), SeparableConv2d) for n in names)
    after = profile_model(model, SHAPE).macs
    assert before - after == _resnet18_expected_drop(rank)
    assert after / before < (0.19 if rank == 1 else 0.35)
    with torch.no_grad():
        assert model(x).shape == (2, 10)


def test_full_rank_reproduces_the_original_and_low_rank_approximates_it() -> None:
    original = _resnet18()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = original(x)
    exact = copy.deepcopy(original)
    separable_convs_(exact, rank=9)
    conv = nn.Conv2d(32, 48, 3, 2, 1, bias=True)
    single = SeparableConv2d(conv, 9)
    assert single.init_from(conv) < 1e-5
    with torch.no_grad():
        torch.testing.assert_close(exact(x), reference, rtol=1e-4, atol=1e-4)
        inp = torch.randn(1, 32, 9, 9)
        torch.testing.assert_close(single(inp), conv(inp), rtol=1e-4, atol=1e-5)
    # Rank 1 keeps the best rank-1 part of each input channel's kernel: some error, but less
    # than a random init of the same shape (whose error is at least 1).
    low = SeparableConv2d(conv, 1)
    error = low.init_from(conv)
    assert 0.3 < error < 0.99


def test_options_select_the_layers() -> None:
    model = _resnet18()
    assert (
        separable_convs_(copy.deepcopy(model), min_channels=256)
        == [
            n
            for n in separable_convs_(copy.deepcopy(model))
            if n.startswith(("layer3.", "layer4."))
        ][1:]
    )  # layer3.0.conv1 takes 128 channels
    assert separable_convs_(copy.deepcopy(model), kernel_sizes=(5,)) == []
    assert separable_convs_(copy.deepcopy(model), min_channels=3, kernel_sizes=(7,)) == ["conv1"]
    with pytest.raises(SlimcvError, match="rank"):
        separable_convs_(model, rank=0)
    with pytest.raises(SlimcvError, match="kernel sizes"):
        SeparableConfig(kernel_sizes=(1,))


def test_artifact_reloads_in_a_fresh_process_and_exports(tmp_path) -> None:
    model = load_model("torchvision:resnet18", num_classes=10, image_size=32)
    randomize_batchnorm(model.module)
    result = separable(model, tmp_path / "sep")
    assert len(result.replaced) == 16
    assert result.macs_before - result.macs_after == _resnet18_expected_drop(1)
    manifest = json.loads((tmp_path / "sep" / "slimcv.json").read_text())
    assert manifest["architecture_changes"] == [
        {"kind": "separable_convs", "names": result.replaced, "rank": 1}
    ]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        np.save(tmp_path / "expected.npy", model.module.eval()(x).numpy())
    script = (
        "import sys, numpy as np, torch\n"
        "from slimcv.sources import load_model\n"
        "d = sys.argv[1]\n"
        "m = load_model(d + '/sep').module\n"
        "with torch.no_grad():\n"
        "    y = m(torch.load(d + '/x.pt')).numpy()\n"
        "assert np.array_equal(y, np.load(d + '/expected.npy')), 'outputs differ'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]

    # Export: BatchNorm still folds into the pointwise convs, and ONNX Runtime agrees.
    import onnx
    import onnxruntime as ort

    from slimcv.exporters.fold import fold_batchnorm
    from slimcv.exporters.onnx import export_onnx, graph_facts

    reloaded = load_model(str(tmp_path / "sep")).module
    folded = fold_batchnorm(reloaded)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    path = tmp_path / "sep.onnx"
    export_onnx(reloaded, path, SHAPE)
    facts = graph_facts(path)
    assert facts.get("BatchNormalization", 0) == 0
    depthwise = [
        n
        for n in onnx.load(str(path)).graph.node
        if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
    ]
    assert len(depthwise) == 16
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(onnx_out, np.load(tmp_path / "expected.npy"), atol=1e-4)


def test_cli_writes_an_artifact_and_refuses_bad_input(tmp_path, capsys) -> None:
    from slimcv.cli import main

    out = tmp_path / "cli"
    args = ["arch", "separable", "slimcv.distillation.students:tiny_cnn", "--out", str(out)]
    code = main([*args, "--min-channels", "8", "--image-size", "16", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0
    assert data["replaced"] == ["stage1.0", "stage2.0"]
    assert data["macs_after"] < data["macs_before"]
    assert load_model(str(out)).module(torch.randn(1, 3, 16, 16)).shape == (1, 10)
    assert main([*args, "--rank", "0"]) == 2
    assert "rank must be at least 1" in capsys.readouterr().err


def test_distill_takes_the_converted_artifact_as_student(tmp_path) -> None:
    from slimcv.distillation import DistillConfig, distill

    teacher = load_model("slimcv.distillation.students:small_cnn", num_classes=10, image_size=16)
    separable(teacher, tmp_path / "sep")
    student = load_model(str(tmp_path / "sep"))
    original = load_model("slimcv.distillation.students:small_cnn", num_classes=10, image_size=16)
    result = distill(
        original, student, "digits", tmp_path / "dist", DistillConfig(epochs=1, batch_size=128)
    )
    assert result.student_macs < 0.5 * result.teacher_macs[0]
    reloaded = load_model(str(tmp_path / "dist"))
    assert reloaded.meta["architecture_changes"][0]["names"] == ["stage1.0", "stage2.0"]
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.module(x), student.module.eval()(x))
