import json

import pytest
from search_helpers import fake_table

from slimcv.cli import main


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--space", "nasnet"], "unknown search space 'nasnet'"),
        (["--objectives", "accuracy,flops"], "unknown objective 'flops'"),
        (["--strategy", "bayes"], "unknown strategy 'bayes'"),
        (["--estimator", "oracle"], "unknown estimator 'oracle'"),
        (["--trials", "0"], "trials must be at least 1"),
        (["--latency-budget-ms", "5", "--objectives", "accuracy,macs"], "needs a latency"),
        (["--baseline", "torchvision:resnet18"], "must be an arch: source"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, needle, tmp_path, capsys):
    code = main(["search", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_impossible_budget_exits_2(tmp_path, capsys, monkeypatch):
    import slimcv.nas.latency as latency

    monkeypatch.setattr(latency, "latency_table", lambda *a, **k: fake_table())
    code = main(
        ["search", "--out", str(tmp_path / "o"), "--latency-budget-ms", "0.0001", "--trials", "2"]
    )
    assert code == 2
    assert "can meet the latency budget" in capsys.readouterr().err


def test_search_json(tmp_path, capsys):
    code = main(
        [
            "search",
            "--objectives",
            "accuracy,params",
            "--trials",
            "2",
            "--strategy",
            "evolution",
            "--estimator",
            "zero-cost",
            "--out",
            str(tmp_path / "o"),
            "--json",
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["trials"]) == 2 and data["front"]
    assert data["objectives"] == [
        {"key": "accuracy", "direction": "maximize"},
        {"key": "params", "direction": "minimize"},
    ]
    assert data["out_dir"] == str((tmp_path / "o").resolve())
