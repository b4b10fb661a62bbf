"""Architectures as data: a compact string grammar and the dataclasses it decodes to.

A network is a comma-separated list of tokens, in the spirit of timm's EfficientNet block
strings::

    stem_c32_s2, ir_r1_k3_e1_c16, ir_r2_k3_s2_e6_c24, ir_r3_k5_s2_e6_c40_se0.25, head_c1280

Each token is a kind followed by ``_``-separated options, each a letter key and a value:

=======  =====================================================  ===========
option   meaning                                                 example
=======  =====================================================  ===========
``c``    output channels                                         ``c24``
``r``    repeats (blocks in this stage; the first one strides)   ``r3``
``k``    depthwise / conv kernel size                            ``k5``
``s``    stride of the first block                               ``s2``
``e``    expansion ratio                                         ``e6``, ``e4.5``
``se``   squeeze-excitation ratio (bare ``se`` means 0.25)       ``se0.25``
``g``    groups                                                  ``g2``
``a``    activation: ``relu``, ``relu6``, ``silu``, ``hswish``, ``gelu``  ``asilu``
``d``    transformer depth (attention blocks)                    ``d2``
``h``    attention heads                                         ``h4``
``p``    patch size (MobileViT)                                  ``p2``
``w``    window size (window attention)                          ``w4``
=======  =====================================================  ===========

``stem`` and ``head`` are the first 3x3 conv and the last 1x1 conv; the activation on the stem
(``stem_c32_s2_asilu``) is the network's default. Which options a block kind accepts is
declared by the kind (see :mod:`slimcv.arch.builder`), so a typo is caught at parse time with
the token and the position it sits at.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from slimcv.errors import SpecError

ACTIVATIONS = ("relu", "relu6", "silu", "hswish", "gelu")

# key -> (BlockSpec field, parser)
_OPTION_FIELDS: dict[str, tuple[str, type]] = {
    "c": ("out_channels", int),
    "r": ("repeats", int),
    "k": ("kernel_size", int),
    "s": ("stride", int),
    "e": ("expansion", float),
    "se": ("se_ratio", float),
    "g": ("groups", int),
    "a": ("act", str),
    "d": ("depth", int),
    "h": ("heads", int),
    "p": ("patch_size", int),
    "w": ("window", int),
}
_OPTION = re.compile(r"^(se|[a-z])(.*)$")


@dataclass(frozen=True)
class BlockSpec:
    """One stage: ``repeats`` blocks of one kind; the first takes ``stride``.

    Fields left at ``None`` take the kind's default when built.
    """

    kind: str
    out_channels: int
    repeats: int = 1
    kernel_size: int | None = None
    stride: int = 1
    expansion: float | None = None
    se_ratio: float = 0.0
    groups: int | None = None
    act: str | None = None
    depth: int | None = None
    heads: int | None = None
    patch_size: int | None = None
    window: int | None = None

    def __post_init__(self) -> None:
        if self.out_channels < 1:
            raise SpecError(f"{self.kind}: channels must be positive, got {self.out_channels}")
        if self.repeats < 1:
            raise SpecError(f"{self.kind}: repeats must be at least 1, got {self.repeats}")
        if self.stride not in (1, 2):
            raise SpecError(f"{self.kind}: stride must be 1 or 2, got {self.stride}")
        if self.kernel_size is not None and (self.kernel_size < 1 or self.kernel_size % 2 == 0):
            raise SpecError(f"{self.kind}: kernel size must be odd, got {self.kernel_size}")
        if self.expansion is not None and self.expansion <= 0:
            raise SpecError(f"{self.kind}: expansion must be positive, got {self.expansion}")
        if not 0 <= self.se_ratio <= 1:
            raise SpecError(f"{self.kind}: SE ratio must be in [0, 1], got {self.se_ratio}")
        if self.act is not None and self.act not in ACTIVATIONS:
            raise SpecError(
                f"{self.kind}: unknown activation {self.act!r}; known: {', '.join(ACTIVATIONS)}"
            )

    def to_string(self) -> str:
        """The token this spec parses from (defaults left out)."""
        parts = [self.kind]
        if self.repeats != 1:
            parts.append(f"r{self.repeats}")
        if self.kernel_size is not None:
            parts.append(f"k{self.kernel_size}")
        if self.stride != 1:
            parts.append(f"s{self.stride}")
        if self.expansion is not None:
            parts.append(f"e{_number(self.expansion)}")
        parts.append(f"c{self.out_channels}")
        if self.se_ratio:
            parts.append(f"se{_number(self.se_ratio)}")
        for key, name in (("g", "groups"), ("d", "depth"), ("h", "heads"), ("p", "patch_size")):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{key}{value}")
        if self.window is not None:
            parts.append(f"w{self.window}")
        if self.act is not None:
            parts.append(f"a{self.act}")
        return "_".join(parts)


@dataclass(frozen=True)
class NetworkSpec:
    """A whole classification network: stem, stages, optional head conv, classifier.

    Attributes:
        blocks: the stages, in order.
        stem_channels: output channels of the 3x3 stem conv.
        stem_stride: its stride (1 keeps small inputs such as 32x32 digits at full size).
        head_channels: width of the 1x1 conv before pooling; 0 for none.
        act: default activation of the network.
    """

    blocks: tuple[BlockSpec, ...]
    stem_channels: int = 32
    stem_stride: int = 2
    head_channels: int = 0
    act: str = "relu"

    def __post_init__(self) -> None:
        if not self.blocks:
            raise SpecError("a network needs at least one block")
        if self.stem_channels < 1:
            raise SpecError(f"stem channels must be positive, got {self.stem_channels}")
        if self.stem_stride not in (1, 2):
            raise SpecError(f"stem stride must be 1 or 2, got {self.stem_stride}")
        if self.act not in ACTIVATIONS:
            raise SpecError(f"unknown activation {self.act!r}; known: {', '.join(ACTIVATIONS)}")

    @property
    def total_stride(self) -> int:
        stride = self.stem_stride
        for block in self.blocks:
            stride *= block.stride
        return stride

    @property
    def num_blocks(self) -> int:
        return sum(b.repeats for b in self.blocks)

    def to_string(self) -> str:
        """The canonical string; ``parse_network(spec.to_string()) == spec``."""
        stem = f"stem_c{self.stem_channels}"
        if self.stem_stride != 1:
            stem += f"_s{self.stem_stride}"
        if self.act != "relu":
            stem += f"_a{self.act}"
        tokens = [stem, *(b.to_string() for b in self.blocks)]
        if self.head_channels:
            tokens.append(f"head_c{self.head_channels}")
        return ",".join(tokens)

    def scaled(self, width: float = 1.0, depth: float = 1.0, divisor: int = 8) -> NetworkSpec:
        """Widths times ``width`` (rounded to ``divisor``), repeats times ``depth`` (ceil).

        The head conv is only ever widened, never narrowed (MobileNetV2's rule: a narrow
        network still needs a wide final feature).
        """
        from slimcv.arch.layers import make_divisible

        if width <= 0 or depth <= 0:
            raise SpecError(f"width and depth multipliers must be positive, got {width}, {depth}")
        blocks = tuple(
            replace(
                b,
                out_channels=make_divisible(b.out_channels * width, divisor),
                repeats=max(1, math.ceil(b.repeats * depth)),
            )
            for b in self.blocks
        )
        head = self.head_channels
        if head and width > 1:
            head = make_divisible(head * width, divisor)
        return replace(
            self,
            blocks=blocks,
            stem_channels=make_divisible(self.stem_channels * width, divisor),
            head_channels=head,
        )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _pointer(text: str, start: int, length: int) -> str:
    return f"\n  {text}\n  {' ' * start}{'^' * max(1, length)}"


def parse_block(
    token: str, *, allowed: dict[str, set[str]] | None = None, text: str = "", offset: int = 0
) -> BlockSpec:
    """Parses one block token such as ``ir_r2_k3_s2_e6_c24_se0.25``.

    Args:
        token: the token.
        allowed: kind -> accepted option keys; defaults to the kinds registered in
            :mod:`slimcv.arch.builder`.
        text, offset: the whole string and the token's position in it, for the error pointer.

    Raises:
        SpecError: unknown kind or option, malformed value, missing channels; the message
            quotes the string and marks the offending part.
    """
    if allowed is None:
        from slimcv.arch.kinds import block_options

        allowed = block_options()
    text = text or token
    parts = token.split("_")
    kind = parts[0]
    if kind not in allowed:
        import difflib

        close = difflib.get_close_matches(kind, list(allowed), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError(
            f"unknown block kind {kind!r}{hint}; known: {', '.join(sorted(allowed))}"
            + _pointer(text, offset, len(kind))
        )
    values: dict[str, object] = {}
    position = offset + len(kind) + 1
    for part in parts[1:]:
        values.update(_parse_option(kind, part, allowed[kind], text, position))
        position += len(part) + 1
    if "out_channels" not in values:
        raise SpecError(
            f"block {token!r} has no channel count (add c<N>, e.g. c24)"
            + _pointer(text, offset, len(token))
        )
    try:
        return BlockSpec(kind=kind, **values)  # type: ignore[arg-type]
    except SpecError as exc:
        raise SpecError(f"{exc}" + _pointer(text, offset, len(token))) from None


def _parse_option(
    kind: str, part: str, accepted: set[str], text: str, position: int
) -> dict[str, object]:
    match = _OPTION.match(part)
    key = match.group(1) if match else part
    if not match or key not in _OPTION_FIELDS:
        raise SpecError(
            f"unknown option {part!r} in a {kind} block; options are "
            + ", ".join(f"{k}<value>" for k in sorted(accepted))
            + _pointer(text, position, len(part))
        )
    if key not in accepted:
        raise SpecError(
            f"a {kind} block takes no {key!r} option; it takes "
            + ", ".join(sorted(accepted))
            + _pointer(text, position, len(part))
        )
    name, kind_of = _OPTION_FIELDS[key]
    raw = match.group(2)
    if key == "se" and raw == "":
        return {name: 0.25}
    try:
        value = kind_of(raw)
        if kind_of is str and not raw:
            raise ValueError
    except ValueError:
        expected = {int: "an integer", float: "a number", str: "a name"}[kind_of]
        raise SpecError(
            f"option {part!r} needs {expected} after {key!r}" + _pointer(text, position, len(part))
        ) from None
    return {name: value}


def parse_network(text: str) -> NetworkSpec:
    """Parses a whole network string (see the module docstring).

    Raises:
        SpecError: anything malformed, with a pointer to where.
    """
    from slimcv.arch.kinds import block_options

    allowed = block_options()
    stem: dict[str, object] = {}
    head = 0
    blocks: list[BlockSpec] = []
    offset = 0
    raw_tokens = text.split(",")
    for index, raw in enumerate(raw_tokens):
        token = raw.strip()
        start = offset + (len(raw) - len(raw.lstrip()))
        offset += len(raw) + 1
        if not token:
            raise SpecError("empty token (two commas in a row?)" + _pointer(text, start, 1))
        if token.startswith("stem"):
            if index != 0:
                raise SpecError("the stem must come first" + _pointer(text, start, len(token)))
            spec = parse_block(token, allowed={"stem": {"c", "s", "a"}}, text=text, offset=start)
            stem = {"stem_channels": spec.out_channels, "stem_stride": spec.stride}
            if spec.act:
                stem["act"] = spec.act
        elif token.startswith("head"):
            if index != len(raw_tokens) - 1:
                raise SpecError("the head must come last" + _pointer(text, start, len(token)))
            head = parse_block(token, allowed={"head": {"c"}}, text=text, offset=start).out_channels
        else:
            blocks.append(parse_block(token, allowed=allowed, text=text, offset=start))
    if not blocks:
        raise SpecError(f"no blocks in {text!r}")
    return NetworkSpec(blocks=tuple(blocks), head_channels=head, **stem)  # type: ignore[arg-type]
