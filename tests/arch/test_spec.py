"""The spec grammar: every family's spec round-trips through its string, and every malformed
string fails with a message whose caret sits under the offending part."""

from __future__ import annotations

import pytest

from slimcv.arch import build_network, parse_network
from slimcv.arch.families import FAMILIES
from slimcv.errors import SpecError

VARIANTS = [(name, kwargs) for name in FAMILIES for kwargs in ({}, {"small_input": True})] + [
    ("mobilenetv2", {"width": 0.35}),
    ("mobilenetv2", {"width": 1.4}),
    ("efficientnet", {"phi": 3}),
    ("shufflenetv2", {"width": 0.5}),
    ("ghostnet", {"width": 1.3}),
]


@pytest.mark.parametrize(("family", "kwargs"), VARIANTS)
def test_every_family_round_trips_through_its_string(family: str, kwargs: dict) -> None:
    spec = FAMILIES.get(family)(**kwargs).spec
    text = spec.to_string()
    again = parse_network(text)
    assert again == spec
    assert again.to_string() == text
    # The string is canonical: defaults left out, so parsing and printing is a fixed point.
    assert parse_network(again.to_string()).to_string() == text


def test_round_trip_keeps_fractional_options() -> None:
    text = "stem_c16_arelu6,ir_r2_k5_s2_e4.5_c24_se0.25,ghost_k3_e2.3_c32,head_c64"
    assert parse_network(text).to_string() == text
    model = build_network(text, num_classes=3)
    assert model.spec == parse_network(text)


def _caret(message: str) -> tuple[str, int, int]:
    """(quoted spec, caret column in it, caret count) from a pointed error message."""
    lines = message.splitlines()
    caret_lines = [i for i, line in enumerate(lines) if line.strip() and set(line.strip()) == {"^"}]
    assert len(caret_lines) == 1, message
    index = caret_lines[0]
    quoted, carets = lines[index - 1], lines[index]
    assert quoted.startswith("  ") and carets.startswith("  ")
    start = carets.index("^")
    return quoted[2:], start - 2, carets.count("^")


@pytest.mark.parametrize(
    ("text", "message", "pointed"),
    [
        # typo'd kind: the kind is marked, with a suggestion
        ("stem_c16,ir_c24,irr_r2_c32", "unknown block kind 'irr' (did you mean 'ir'?)", "irr"),
        # an option the kind does not take
        ("stem_c16,ir_c24,ds_e6_c32", "a ds block takes no 'e' option", "e6"),
        # a key no kind knows
        ("stem_c16,ir_c24_x3", "unknown option 'x3' in a ir block", "x3"),
        # a value of the wrong type
        ("stem_c16,ir_kx_c24", "option 'kx' needs an integer after 'k'", "kx"),
        # missing channel count: the whole token is marked
        ("stem_c16,ir_r2_k3_s2,ir_c32", "has no channel count", "ir_r2_k3_s2"),
        # stem not first
        ("ir_c24,stem_c16,ir_c32", "the stem must come first", "stem_c16"),
        # head not last
        ("stem_c16,head_c64,ir_c32", "the head must come last", "head_c64"),
        # empty token
        ("stem_c16,ir_c24,,ir_c32", "empty token", ""),
        # a value the block rejects (even kernel)
        ("stem_c16,ir_k4_c24", "kernel size must be odd", "ir_k4_c24"),
    ],
)
def test_errors_point_at_the_bad_part(text: str, message: str, pointed: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_network(text)
    error = str(info.value)
    assert message in error.splitlines()[0]
    quoted, column, width = _caret(error)
    assert quoted == text
    if pointed:
        assert column == text.index(pointed, 1 if pointed.startswith("stem") else 0)
        assert width == len(pointed)
    else:  # the empty token sits right after the first of the two commas
        assert column == text.index(",,") + 1 and width == 1


def test_caret_accounts_for_spaces_after_commas() -> None:
    text = "stem_c16, ir_c24,  ri_c32"
    with pytest.raises(SpecError) as info:
        parse_network(text)
    _, column, width = _caret(str(info.value))
    assert (column, width) == (text.index("ri"), 2)
