"""Network families as data: functions of a few keyword parameters that return a spec.

A family is a published layout (MobileNetV2's ``t, c, n, s`` table, EfficientNet-B0's stages)
written as a :class:`~slimcv.arch.spec.NetworkSpec`, plus the knobs its paper scales it with
(a width multiplier, EfficientNet's compound coefficient ``phi``) and the input resolution it
was designed for. Families register in :data:`FAMILIES`; the model source
``arch:mobilenetv2:width=0.5,small_input=true`` and ``slimcv arch list|show|build`` look them up
there.

Every family takes ``small_input``: the stem keeps stride 1 and the first stride-2 stage keeps
stride 1 too, so the total stride drops from 32 to 8 (a 32x32 digits image ends at 4x4 instead
of 1x1, the usual CIFAR adaptation of ImageNet networks); the default resolution becomes 32.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from slimcv.arch.spec import BlockSpec, NetworkSpec, parse_network
from slimcv.errors import SpecError
from slimcv.registry import Registry

#: Default input side of networks given as raw spec strings.
DEFAULT_RESOLUTION = 224
#: Default input side of every family with ``small_input=True``.
SMALL_RESOLUTION = 32

ParamValue = bool | int | float


@dataclass(frozen=True)
class FamilyNetwork:
    """What a family returns: the network and the input side it was designed for."""

    spec: NetworkSpec
    resolution: int


@dataclass(frozen=True)
class FamilyParam:
    """One keyword parameter of a family; its type is the type of its default."""

    name: str
    default: ParamValue
    help: str = ""

    @property
    def type_name(self) -> str:
        return type(self.default).__name__

    def parse(self, raw: str, family: str) -> ParamValue:
        """Converts a ``key=value`` string value to the parameter's type.

        Raises:
            SpecError: the value does not read as that type.
        """
        text = raw.strip()
        if isinstance(self.default, bool):
            lowered = text.lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
        else:
            try:
                return type(self.default)(text)
            except ValueError:
                pass
        raise SpecError(
            f"{family}: {self.name}={raw!r} is not a valid {self.type_name} "
            f"(e.g. {self.name}={_show(self.default)})"
        )


FamilyFactory = Callable[..., FamilyNetwork]


@dataclass(frozen=True)
class Family:
    """A registered family: its parameters (from the factory's signature) and the factory."""

    name: str
    summary: str
    params: tuple[FamilyParam, ...]
    factory: FamilyFactory

    def __call__(self, **kwargs: Any) -> FamilyNetwork:
        """Builds the family's spec; unknown keywords raise :class:`SpecError`."""
        known = {p.name: p for p in self.params}
        for key, value in kwargs.items():
            if key not in known:
                raise SpecError(self._unknown_key(key))
            expected = type(known[key].default)
            # bool is an int subclass, and an int where a float is expected is fine.
            ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                raise SpecError(f"{self.name}: {key} must be a {expected.__name__}, got {value!r}")
        return self.factory(**kwargs)

    def parse_params(self, text: str) -> dict[str, ParamValue]:
        """Parses ``key=value,key=value`` into typed keyword arguments.

        Raises:
            SpecError: a malformed item, an unknown key or a value of the wrong type.
        """
        known = {p.name: p for p in self.params}
        values: dict[str, ParamValue] = {}
        for item in text.split(","):
            if not item.strip():
                raise SpecError(f"{self.name}: empty parameter in {text!r} (two commas in a row?)")
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep:
                raise SpecError(f"{self.name}: parameter {item.strip()!r} needs key=value")
            if key not in known:
                raise SpecError(self._unknown_key(key))
            if key in values:
                raise SpecError(f"{self.name}: parameter {key!r} given twice")
            values[key] = known[key].parse(raw, self.name)
        return values

    def describe_params(self) -> str:
        """``width=1.0, small_input=False``: the parameters and their defaults."""
        return ", ".join(f"{p.name}={_show(p.default)}" for p in self.params)

    def _unknown_key(self, key: str) -> str:
        import difflib

        names = [p.name for p in self.params]
        close = difflib.get_close_matches(key, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"family {self.name} has no parameter {key!r}{hint}; it takes {', '.join(names)}"


FAMILIES: Registry[Family] = Registry("network family")


def register_family(name: str, summary: str, **helps: str) -> Callable[[FamilyFactory], Family]:
    """Registers a factory whose keyword-only parameters (with defaults) are the family's knobs.

    Args:
        name: the family name used in ``arch:NAME``.
        summary: one line for ``slimcv arch list``.
        helps: a help line per parameter.
    """

    def decorator(factory: FamilyFactory) -> Family:
        params = []
        for param in inspect.signature(factory).parameters.values():
            if param.kind is not inspect.Parameter.KEYWORD_ONLY or param.default is param.empty:
                raise TypeError(f"family {name}: parameter {param.name} must be keyword-only")
            params.append(FamilyParam(param.name, param.default, helps.get(param.name, "")))
        family = Family(name, summary, tuple(params), factory)
        FAMILIES.register(name)(family)
        return family

    return decorator


def for_small_input(spec: NetworkSpec) -> NetworkSpec:
    """Stem at stride 1 and the first stride-2 stage at stride 1: total stride / 4.

    ImageNet networks shrink a 224 input 32 times; a 32x32 image would be 1x1 before the last
    stages. Keeping the two earliest reductions (the cheapest place to keep resolution, where
    channels are few) leaves 4x4 maps at the end, as CIFAR versions of these networks do.
    """
    blocks = list(spec.blocks)
    for index, block in enumerate(blocks):
        if block.stride == 2:
            blocks[index] = replace(block, stride=1)
            break
    return replace(spec, blocks=tuple(blocks), stem_stride=1)


def _finish(spec: NetworkSpec, resolution: int, small_input: bool) -> FamilyNetwork:
    if small_input:
        return FamilyNetwork(for_small_input(spec), SMALL_RESOLUTION)
    return FamilyNetwork(spec, resolution)


def _positive(family: str, name: str, value: float) -> None:
    if not value > 0:
        raise SpecError(f"{family}: {name} must be positive, got {value}")


def _show(value: ParamValue) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


_SMALL_HELP = "stem stride 1 and one stride-2 stage less (total stride 8), for 32x32 inputs"

# MobileNetV1 (Howard et al. 2017, Table 1): 13 depthwise separable layers after the stem.
_MOBILENETV1 = "stem_c32_s2,ds_c64,ds_r2_s2_c128,ds_r2_s2_c256,ds_r6_s2_c512,ds_r2_s2_c1024"


@register_family(
    "mobilenetv1",
    "MobileNetV1: 13 depthwise separable convs, ReLU, no head conv (Howard et al. 2017)",
    width="width multiplier alpha on every layer (channels rounded to multiples of 8)",
    small_input=_SMALL_HELP,
)
def mobilenetv1(*, width: float = 1.0, small_input: bool = False) -> FamilyNetwork:
    """MobileNetV1. The ``ds`` kind adds a skip where shapes match (stride 1, same width), which
    the paper's network lacks; parameter and MAC counts are the paper's."""
    _positive("mobilenetv1", "width", width)
    spec = parse_network(_MOBILENETV1)
    return _finish(spec.scaled(width=width), 224, small_input)


# MobileNetV2 (Sandler et al. 2018, Table 2): t (expansion), c (channels), n (repeats), s.
_MOBILENETV2_TCNS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


@register_family(
    "mobilenetv2",
    "MobileNetV2: inverted residuals with linear bottlenecks, ReLU6 (Sandler et al. 2018)",
    width="width multiplier (make_divisible by 8; the 1280 head is only ever widened)",
    small_input=_SMALL_HELP,
)
def mobilenetv2(*, width: float = 1.0, small_input: bool = False) -> FamilyNetwork:
    """MobileNetV2 exactly as torchvision builds it (same parameter count at every width)."""
    _positive("mobilenetv2", "width", width)
    blocks = tuple(
        BlockSpec("ir", out_channels=c, repeats=n, kernel_size=3, stride=s, expansion=float(t))
        for t, c, n, s in _MOBILENETV2_TCNS
    )
    spec = NetworkSpec(blocks, stem_channels=32, stem_stride=2, head_channels=1280, act="relu6")
    return _finish(spec.scaled(width=width), 224, small_input)


# EfficientNet-B0 (Tan & Le 2019, Table 1): MBConv stages with SE 0.25 and SiLU.
_EFFICIENTNET_B0 = (
    "stem_c32_s2_asilu,"
    "ir_k3_e1_c16_se0.25,"
    "ir_r2_k3_s2_e6_c24_se0.25,"
    "ir_r2_k5_s2_e6_c40_se0.25,"
    "ir_r3_k3_s2_e6_c80_se0.25,"
    "ir_r3_k5_e6_c112_se0.25,"
    "ir_r4_k5_s2_e6_c192_se0.25,"
    "ir_k3_e6_c320_se0.25,"
    "head_c1280"
)


@register_family(
    "efficientnet",
    "EfficientNet: B0's MBConv+SE stages, SiLU; phi compound-scales depth, width, resolution",
    phi="compound coefficient: depth 1.2^phi, width 1.1^phi, resolution 1.15^phi (0 = B0)",
    small_input=_SMALL_HELP + " (resolution 32 * 1.15^phi)",
)
def efficientnet(*, phi: int = 0, small_input: bool = False) -> FamilyNetwork:
    """EfficientNet-B0 scaled by ``phi`` (see :mod:`slimcv.arch.scaling`). ``phi=1..7`` gives
    B1..B7-style networks from the paper's formula (the released B1..B7 used hand-rounded
    multipliers, so they differ slightly)."""
    from slimcv.arch.scaling import compound_scale

    if phi < 0:
        raise SpecError(f"efficientnet: phi must be >= 0, got {phi}")
    base = parse_network(_EFFICIENTNET_B0)
    if small_input:
        base = for_small_input(base)
    spec, resolution = compound_scale(base, SMALL_RESOLUTION if small_input else 224, phi)
    return FamilyNetwork(spec, resolution)


# ShuffleNetV2 (Ma et al. 2018, Table 5): stage output channels and conv5 width per multiplier.
_SHUFFLENETV2_WIDTHS: dict[float, tuple[int, int, int, int]] = {
    0.5: (48, 96, 192, 1024),
    1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024),
    2.0: (244, 488, 976, 2048),
}


@register_family(
    "shufflenetv2",
    "ShuffleNetV2: channel split + shuffle units, 3x3/2 max-pool stem (Ma et al. 2018)",
    width="0.5, 1.0, 1.5 or 2.0: the paper's stage channels for that multiplier",
    small_input="stem stride 1 and no max pool (total stride 8), for 32x32 inputs",
)
def shufflenetv2(*, width: float = 1.0, small_input: bool = False) -> FamilyNetwork:
    """ShuffleNetV2 as torchvision builds it (same parameter count): stem conv 24/2, max pool,
    stages of 4, 8, 4 units, conv5. With ``small_input`` the max pool is dropped."""
    if width not in _SHUFFLENETV2_WIDTHS:
        raise SpecError(
            f"shufflenetv2: width must be one of {', '.join(map(str, _SHUFFLENETV2_WIDTHS))} "
            f"(the paper's stage channels), got {width}"
        )
    c2, c3, c4, c5 = _SHUFFLENETV2_WIDTHS[width]
    pool = "" if small_input else "maxpool_k3_s2_c24,"
    spec = parse_network(
        f"stem_c24_s{1 if small_input else 2},{pool}"
        f"shuffle_r4_k3_s2_c{c2},shuffle_r8_k3_s2_c{c3},shuffle_r4_k3_s2_c{c4},head_c{c5}"
    )
    return FamilyNetwork(spec, SMALL_RESOLUTION if small_input else 224)


# GhostNet 1.0 (Han et al. 2020, Table 1). The ghost kind's expansion is relative to the
# block's input width: 72 hidden from 24 in is e3, 184 from 80 is e2.3.
_GHOSTNET = (
    "stem_c16_s2,"
    "ghost_k3_e1_c16,"
    "ghost_r2_k3_s2_e3_c24,"
    "ghost_r2_k5_s2_e3_c40_se0.25,"
    "ghost_k3_s2_e6_c80,"
    "ghost_k3_e2.5_c80,"
    "ghost_r2_k3_e2.3_c80,"
    "ghost_r2_k3_e6_c112_se0.25,"
    "ghost_k5_s2_e6_c160_se0.25,"
    "ghost_k5_e6_c160,"
    "ghost_k5_e6_c160_se0.25,"
    "ghost_k5_e6_c160,"
    "ghost_k5_e6_c160_se0.25,"
    "head_c960"
)


@register_family(
    "ghostnet",
    "GhostNet-like: ghost bottlenecks with SE in the paper's places (Han et al. 2020)",
    width="width multiplier (channels rounded to multiples of 8)",
    small_input=_SMALL_HELP,
)
def ghostnet(*, width: float = 1.0, small_input: bool = False) -> FamilyNetwork:
    """GhostNet 1.0's 16 bottlenecks and 960-wide head conv. "-like": the paper's extra
    1280-wide layer after pooling is left out (the spec's head runs before pooling), and SE
    widths are ``int(hidden / 4)`` rather than rounded to 4."""
    _positive("ghostnet", "width", width)
    return _finish(parse_network(_GHOSTNET).scaled(width=width), 224, small_input)


# MobileViT-XXS (Mehta & Rastegari 2022, Table 4): MV2 blocks with expansion 2, then three
# MobileViT stages of 2, 4 and 3 transformer layers, 4 heads, 2x2 patches, SiLU.
_MOBILEVIT_XXS = (
    "stem_c16_s2_asilu,"
    "ir_k3_e2_c16,"
    "ir_r3_k3_s2_e2_c24,"
    "mvit_k3_s2_e2_c48_d2_h4_p2,"
    "mvit_k3_s2_e2_c64_d4_h4_p2,"
    "mvit_k3_s2_e2_c80_d3_h4_p2,"
    "head_c320"
)


@register_family(
    "mobilevit_xxs",
    "MobileViT-XXS-like: MV2 blocks then conv + transformer stages (Mehta & Rastegari 2022)",
    width="width multiplier (channels rounded to multiples of 8; heads stay 4)",
    small_input=_SMALL_HELP,
)
def mobilevit_xxs(*, width: float = 1.0, small_input: bool = False) -> FamilyNetwork:
    """MobileViT-XXS's layout. "-like": the mvit kind's transformer is as wide as the block
    (48/64/80, not the paper's 64/80/96) and its stride-2 inverted residual expands 4x, not 2x.
    Designed for 256x256 inputs."""
    _positive("mobilevit_xxs", "width", width)
    return _finish(parse_network(_MOBILEVIT_XXS).scaled(width=width), 256, small_input)


def resolve_arch(text: str) -> tuple[NetworkSpec, int]:
    """Resolves what follows ``arch:`` in a model source to a spec and its default resolution.

    ``FAMILY``, ``FAMILY:key=value,...`` or a raw spec string (resolution 224). A bare name
    that is neither a family nor a spec token reports the unknown family.

    Raises:
        SpecError: a malformed spec string (with a pointer), or bad family parameters.
        UnknownNameError: an unknown family name (with a "did you mean").
    """
    name, sep, params = text.strip().partition(":")
    name = name.strip()
    if sep or name in FAMILIES or not _looks_like_spec(name):
        family = FAMILIES.get(name)
        kwargs = family.parse_params(params) if sep else {}
        result = family(**kwargs)
        return result.spec, result.resolution
    return parse_network(text.strip()), DEFAULT_RESOLUTION


def _looks_like_spec(text: str) -> bool:
    # Family names are single words; spec strings have "_" options or "," between tokens.
    return "," in text or "_" in text
