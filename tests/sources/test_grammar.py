from pathlib import Path

import pytest

from slimcv.errors import SourceError
from slimcv.sources import parse_source


@pytest.mark.parametrize(
    ("text", "kind", "target", "attr"),
    [
        ("torchvision:resnet18", "torchvision", "resnet18", None),
        ("timm:efficientnet_lite0", "timm", "efficientnet_lite0", None),
        ("timm:efficientnet_lite0:imagenet", "timm", "efficientnet_lite0", "imagenet"),
        ("my_pkg.models:build", "module", "my_pkg.models", "build"),
    ],
)
def test_parse_zoo_and_modules(text, kind, target, attr):
    spec = parse_source(text)
    assert (spec.kind, spec.target, spec.attr) == (kind, target, attr)


def test_parse_paths(tmp_path: Path):
    (tmp_path / "net.py").write_text("def make():\n    pass\n")
    (tmp_path / "m.onnx").write_bytes(b"")
    (tmp_path / "art").mkdir()
    (tmp_path / "art" / "slimcv.json").write_text("{}")
    assert parse_source(f"{tmp_path}/net.py:make").kind == "file"
    assert parse_source(str(tmp_path / "m.onnx")).kind == "onnx"
    assert parse_source(str(tmp_path / "art")).kind == "artifact"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty model source"),
        ("resnet18", "malformed model source"),
        ("torchvision:", "expected torchvision:NAME"),
        ("torchvision:a:b", "expected torchvision:NAME"),
        ("timm:resnet18:foo", "unknown weights tag"),
        ("missing.onnx", "ONNX file not found"),
        ("nowhere/net.py:make", "Python file not found"),
        ("some/dir/that/is/not/here", "no such file or directory"),
    ],
)
def test_parse_errors_are_one_clear_line(text, message):
    with pytest.raises(SourceError, match=message) as info:
        parse_source(text)
    assert "\n" not in str(info.value)


def test_directory_without_manifest_is_rejected(tmp_path: Path):
    with pytest.raises(SourceError, match="not a slimcv artifact"):
        parse_source(str(tmp_path))
