"""Families as data: the published layouts match their reference implementations parameter
for parameter, every family builds and runs, and bad parameters are one-line SpecErrors."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torchvision

from slimcv.arch import build_network
from slimcv.arch.families import FAMILIES, for_small_input, resolve_arch
from slimcv.arch.spec import parse_network
from slimcv.errors import SpecError, UnknownNameError


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("width", [1.0, 0.5, 0.75, 1.4])
def test_mobilenetv2_matches_torchvision_parameter_for_parameter(width: float) -> None:
    ours = build_network(FAMILIES.get("mobilenetv2")(width=width).spec)
    reference = torchvision.models.mobilenet_v2(width_mult=width)
    assert _params(ours) == _params(reference)
    # The 1280 head is widened above width 1 and never narrowed below it.
    assert ours.spec.head_channels == (1792 if width == 1.4 else 1280)


def test_mobilenetv2_layout_is_the_papers_table() -> None:
    spec = FAMILIES.get("mobilenetv2")().spec
    rows = [(b.expansion, b.out_channels, b.repeats, b.stride) for b in spec.blocks]
    assert rows == [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]
    assert (spec.stem_channels, spec.stem_stride, spec.head_channels, spec.act) == (
        32,
        2,
        1280,
        "relu6",
    )


def test_efficientnet_b0_matches_torchvision() -> None:
    ours = build_network(FAMILIES.get("efficientnet")().spec)
    assert _params(ours) == _params(torchvision.models.efficientnet_b0()) == 5_288_548


@pytest.mark.parametrize(("width", "name"), [(0.5, "x0_5"), (1.0, "x1_0"), (2.0, "x2_0")])
def test_shufflenetv2_matches_torchvision(width: float, name: str) -> None:
    ours = build_network(FAMILIES.get("shufflenetv2")(width=width).spec)
    reference = getattr(torchvision.models, f"shufflenet_v2_{name}")()
    assert _params(ours) == _params(reference)


def test_mobilenetv1_has_the_papers_size() -> None:
    # Howard et al. 2017, Table 8: 4.2 M parameters, 569 M mult-adds at 224.
    from slimcv.analysis.profile import profile_model

    network = FAMILIES.get("mobilenetv1")()
    model = build_network(network.spec)
    assert network.spec.num_blocks == 13
    assert _params(model) == pytest.approx(4.2e6, rel=0.01)
    assert profile_model(model, (1, 3, 224, 224)).macs == pytest.approx(569e6, rel=0.01)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_builds_for_small_inputs(family: str) -> None:
    network = FAMILIES.get(family)(small_input=True)
    assert network.resolution == 32
    assert network.spec.total_stride == 8  # a 32x32 digits image ends at 4x4, not 1x1
    model = build_network(network.spec, num_classes=10).eval()
    seen: list[torch.Size] = []
    model.head.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    assert tuple(seen[0][-2:]) == (4, 4)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_is_stride_32_at_its_resolution(family: str) -> None:
    network = FAMILIES.get(family)()
    assert network.spec.total_stride == 32
    assert network.resolution in (224, 256)


def test_small_input_drops_the_first_stride() -> None:
    spec = parse_network("stem_c16_s2,ir_c16,ir_s2_c24,ir_s2_c32")
    small = for_small_input(spec)
    assert small.stem_stride == 1
    assert [b.stride for b in small.blocks] == [1, 1, 2]
    assert small.total_stride == spec.total_stride // 4


def test_params_parse_from_strings() -> None:
    family = FAMILIES.get("mobilenetv2")
    assert family.parse_params("width=0.5,small_input=true") == {
        "width": 0.5,
        "small_input": True,
    }
    assert family.parse_params(" small_input = off ") == {"small_input": False}
    spec, resolution = resolve_arch("efficientnet:phi=2")
    assert resolution == 296 and spec.head_channels == 1552


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mobilenetv2:widht=0.5", "has no parameter 'widht' (did you mean 'width'?)"),
        ("mobilenetv2:width=wide", "width='wide' is not a valid float"),
        ("mobilenetv2:small_input=maybe", "not a valid bool"),
        ("efficientnet:phi=1.5", "phi='1.5' is not a valid int"),
        ("efficientnet:phi=-1", "phi must be >= 0"),
        ("mobilenetv2:width=0", "width must be positive"),
        ("mobilenetv2:width", "needs key=value"),
        ("mobilenetv2:width=1,width=2", "given twice"),
        ("mobilenetv2:width=1,,small_input=true", "empty parameter"),
        ("shufflenetv2:width=0.75", "width must be one of 0.5, 1.0, 1.5, 2.0"),
    ],
)
def test_bad_family_parameters_are_one_line_spec_errors(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)) as info:
        resolve_arch(text)
    assert "\n" not in str(info.value)


def test_unknown_family_suggests_a_known_one() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'mobilenetv2'"):
        resolve_arch("mobilenetv3")


def test_raw_specs_resolve_at_224() -> None:
    spec, resolution = resolve_arch("stem_c16,ir_r2_k3_s2_e6_c24")
    assert resolution == 224 and spec.blocks[0].repeats == 2


def test_family_call_checks_keyword_types() -> None:
    family = FAMILIES.get("efficientnet")
    with pytest.raises(SpecError, match="phi must be a int"):
        family(phi=True)
    with pytest.raises(SpecError, match="no parameter 'width'"):
        family(width=1.0)
    # An int where a float is expected is fine.
    assert FAMILIES.get("mobilenetv2")(width=1).spec == FAMILIES.get("mobilenetv2")().spec
    assert math.isclose(FAMILIES.get("mobilenetv2").params[0].default, 1.0)
