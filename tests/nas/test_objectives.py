import pytest

from slimcv.errors import SearchError
from slimcv.nas.objectives import parse_objectives


def test_parse_directions_and_runtime():
    objectives = parse_objectives("accuracy, latency:onnxruntime,params")
    assert [(o.key, o.direction) for o in objectives] == [
        ("accuracy", "maximize"),
        ("latency:onnxruntime", "minimize"),
        ("params", "minimize"),
    ]
    assert objectives[1].runtime == "onnxruntime"
    assert objectives[0].minimized(90.0) == -90.0 and objectives[2].minimized(5) == 5


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("accuracy,flops", "known: accuracy, params, macs, size, latency:onnxruntime"),
        ("accuracy,latency:tensorflow", "latency:openvino"),
        ("accuracy,accuracy", "twice"),
        ("", "no objectives"),
        ("latency:onnxruntime,latency:openvino", "one latency objective"),
    ],
)
def test_bad_objectives_are_one_line_errors(text, needle):
    with pytest.raises(SearchError, match=needle.replace(".", r"\.")) as info:
        parse_objectives(text)
    assert "\n" not in str(info.value)
