"""``slimcv arch list|show|build`` as a user meets them: JSON that adds up, an artifact that
reloads, and one pointed error for a typo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from slimcv.arch.families import FAMILIES
from slimcv.arch.kinds import BLOCK_KINDS
from slimcv.cli import main
from slimcv.sources import load_model, read_manifest


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_names_every_family_and_kind(capsys) -> None:
    code, out, _ = run_cli(capsys, "arch", "list", "--json")
    assert code == 0
    data = json.loads(out)
    families = {f["name"]: f for f in data["families"]}
    assert set(families) == set(FAMILIES)
    v2 = families["mobilenetv2"]
    assert v2["resolution"] == 224
    assert [(p["name"], p["type"], p["default"]) for p in v2["params"]] == [
        ("width", "float", 1.0),
        ("small_input", "bool", False),
    ]
    assert families["efficientnet"]["params"][0]["name"] == "phi"
    kinds = {k["name"]: k for k in data["block_kinds"]}
    assert set(kinds) == set(BLOCK_KINDS)
    assert set(kinds["ir"]["options"]) == {"a", "c", "e", "k", "r", "s", "se"}
    assert all(k["summary"] for k in kinds.values())


def test_list_table(capsys) -> None:
    code, out, _ = run_cli(capsys, "arch", "list")
    assert code == 0
    assert "mobilenetv2" in out and "width=1.0, small_input=false" in out and "shuffle" in out


def test_show_json_stages_add_up(capsys) -> None:
    code, out, _ = run_cli(
        capsys,
        "arch",
        "show",
        "mobilenetv2:width=0.5,small_input=true",
        "--num-classes",
        "10",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["source"] == "arch:mobilenetv2:width=0.5,small_input=true"
    assert data["image_size"] == 32 and data["total_stride"] == 8
    stages = data["stages"]
    assert [s["name"] for s in stages] == [
        "stem",
        *(f"stage{i}" for i in range(7)),
        "head",
        "classifier",
    ]
    assert sum(s["params"] for s in stages) == data["params"] == 700_490
    assert sum(s["macs"] for s in stages) == data["macs"]
    assert data["macs"] == pytest.approx(28e6, rel=0.01)
    # Output sizes follow the strides: stem 1, stage1 1 (small input), then 2, 2, 1, 2, 1.
    assert [s["output_size"] for s in stages[:-1]] == [
        [32, 32],
        [32, 32],
        [32, 32],
        [16, 16],
        [8, 8],
        [8, 8],
        [4, 4],
        [4, 4],
        [4, 4],
    ]
    stage1 = stages[2]
    assert (stage1["kind"], stage1["repeats"], stage1["channels"], stage1["stride"]) == (
        "ir",
        2,
        16,
        1,
    )
    assert (stage1["kernel"], stage1["expansion"], stage1["se"]) == (3, 6.0, 0.0)
    assert stages[-1]["params"] == 1280 * 10 + 10


def test_show_raw_spec_and_image_size(capsys) -> None:
    spec = "stem_c16,ir_r2_k5_s2_e4_c24_se0.25,head_c64"
    code, out, _ = run_cli(capsys, "arch", "show", f"arch:{spec}", "--image-size", "40", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["spec"] == spec and data["image_size"] == 40
    assert data["stages"][1]["output_size"] == [20, 20]
    assert data["stages"][1]["se"] == 0.25 and data["stages"][1]["kernel"] == 5


def test_show_table_prints_the_spec_on_one_line(capsys) -> None:
    code, out, _ = run_cli(capsys, "arch", "show", "efficientnet:phi=1,small_input=true")
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith("spec: stem_c32_asilu,ir_r2_k3_e1_c16_se0.25,")
    assert first.endswith("head_c1408")
    assert "stage6" in out and "input 40x40" in out


def test_build_writes_an_artifact_that_reloads(capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "net"
    code, out, _ = run_cli(
        capsys,
        "arch",
        "build",
        "shufflenetv2:width=0.5,small_input=true",
        "--num-classes",
        "10",
        "--out",
        str(out_dir),
        "--json",
    )
    assert code == 0
    result = json.loads(out)
    assert result["source"] == "arch:shufflenetv2:width=0.5,small_input=true"
    assert result["image_size"] == 32 and result["num_classes"] == 10
    manifest = read_manifest(out_dir)
    assert manifest["source"] == result["source"]
    assert manifest["history"][-1]["command"] == "arch build"
    reloaded = load_model(str(out_dir))
    assert reloaded.preprocess.image_size == 32 and reloaded.num_classes == 10
    assert sum(p.numel() for p in reloaded.module.parameters()) == result["params"]
    assert reloaded.module.spec.to_string() == result["spec"]
    # Same weights: two reloads give the same outputs, and not a constant.
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a, b = reloaded.module(x), load_model(str(out_dir)).module(x)
    torch.testing.assert_close(a, b)
    assert a.abs().max() > 0 and not torch.allclose(a[0], a[1])


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_typo_in_a_spec_is_exit_2_with_a_caret(capsys, tmp_path: Path) -> None:
    spec = "stem_c16,ir_r2_k3_s2_e6_c24,ir_k3_s2_e6_cc32"
    for argv in (
        ("arch", "show", spec),
        ("arch", "build", f"arch:{spec}", "--num-classes", "10", "--out", str(tmp_path / "x")),
        ("profile", f"arch:{spec}"),
    ):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == ""
        lines = _error_lines(err)
        assert lines[0].startswith("error: option 'cc32' needs an integer after 'c'")
        assert "Traceback" not in err
        carets = [line for line in lines if set(line.strip()) == {"^"}]
        assert len(carets) == 1
        quoted = lines[lines.index(carets[0]) - 1]
        assert quoted.strip() == spec
        assert carets[0].index("^") == quoted.index(spec) + spec.index("cc32")
        assert carets[0].count("^") == len("cc32")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["arch", "show", "mobilenetv3"], "unknown network family 'mobilenetv3'"),
        (["arch", "show", "mobilenetv2:depth=2"], "has no parameter 'depth'"),
        (["arch", "show", "efficientnet:phi=two"], "is not a valid int"),
        (["arch", "show", "mobilenetv2", "--image-size", "0"], "--image-size must be positive"),
        (["arch", "show", "shufflenetv2:width=0.7"], "width must be one of"),
        (["arch", "show", "stem_c16,ir_c24,,ir_c32"], "empty token"),
        (["arch", "build", "mobilenetv2", "--out", "{out}"], "Missing option '--num-classes'"),
    ],
)
def test_bad_input_is_exit_2(capsys, tmp_path: Path, argv: list[str], message: str) -> None:
    argv = [a.format(out=tmp_path / "never") for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    lines = _error_lines(err)
    assert lines[0].startswith("error: ") and message in lines[0]
    if "empty token" not in message:
        assert len(lines) == 1
    assert not (tmp_path / "never").exists()
