"""The command line and the API take the same values for the same settings."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import snntorch as snn
import torch
from torch import nn

import robust_spikes as rs
from robust_spikes.app.cli import build_parser, main
from robust_spikes.attacks._ensemble import ESCALATE_SAMPLES

MODEL = "robust_spikes.app.demo:build_net"


def model() -> rs.SpikingClassifier:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True)
    )
    return rs.SpikingClassifier(net, num_steps=4)


def data(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    ds = rs.data.digits("test")
    return ds.images[:n], ds.labels[:n]


KW: dict[str, Any] = dict(eps=[0.1], sanity_eps=0, progress=False)


def test_convergence_steps_zero_skips_the_check_as_none_does() -> None:
    skipped = rs.evaluate(model(), data(), attacks=["FGSM"], convergence_steps=0, **KW)
    none = rs.evaluate(model(), data(), attacks=["FGSM"], convergence_steps=None, **KW)
    assert skipped.records == none.records
    assert skipped.settings["convergence"] is None
    names = [a["name"] for a in skipped.settings["attacks"]["adaptive"]]
    assert names == ["FGSM", "paper:FGSM", "paper:PGD-7"]
    checked = rs.evaluate(model(), data(), attacks=["FGSM"], convergence_steps=3, **KW)
    assert checked.settings["convergence"] == "PGD-3"
    for bad in (-1, True, 2.0):
        with pytest.raises(ValueError, match=r"convergence_steps must be an int >= 0 \(0 or"):
            rs.evaluate(model(), data(), attacks=["FGSM"], convergence_steps=bad, **KW)


def test_square_n_names_a_square_member_with_n_queries() -> None:
    kw = dict(attacks=["Square-20"], convergence_steps=0, **KW)
    by_name = rs.evaluate(model(), data(), **kw)  # square_queries keeps its default 5000
    by_setting = rs.evaluate(model(), data(), square_queries=20, **kw)
    assert by_name.records == by_setting.records
    assert by_name.settings["attacks"]["adaptive"][0] == {
        "name": "Square-20",
        "kind": "black-box",
        "mode": None,
    }
    for bad in ("Square-0", "Square-020", "Square-x", "Square-", "PGD-1000"):
        with pytest.raises(ValueError, match=rf"unknown member '{bad}'.* or Square-N"):
            rs.evaluate(model(), data(), attacks=[bad], **KW)


def _defaults(command: str, *required: str) -> dict[str, Any]:
    return vars(build_parser().parse_args([command, "--model", MODEL, *required, "--out", "o"]))


def test_cli_defaults_are_the_api_defaults() -> None:
    api = inspect.signature(rs.evaluate).parameters
    cli = _defaults("evaluate", "--eps", "0.1")
    for name in ("protocol", "norm", "seed", "batch_size", "eot", "square_queries"):
        assert cli[name] == api[name].default, name
    assert cli["convergence_steps"] == api["convergence_steps"].default
    assert cli["escalation_steps"] == api["escalation_steps"].default
    assert cli["escalation_samples"] == api["escalation_samples"].default == ESCALATE_SAMPLES
    assert cli["num_samples"] is api["num_samples"].default is None
    api = inspect.signature(rs.certify).parameters
    cli = _defaults("certify", "--sigma", "0.25")
    for name in ("norm", "n0", "n", "alpha", "seed", "batch_size"):
        assert cli[name] == api[name].default, name


def test_cli_square_n_and_convergence_zero_reach_the_api(tmp_path: Path) -> None:
    argv = ["evaluate", "--model", MODEL, "--limit", "2", "--eps", "0.1", "--out", str(tmp_path)]
    options = ["--attacks", "Square-10", "--convergence-steps", "0", "--no-progress"]
    assert main([*argv, *options]) == 0
    settings = json.loads((tmp_path / "report.json").read_text())["settings"]
    assert settings["protocol"] == "adaptive" and settings["convergence"] is None
    names = [a["name"] for a in settings["attacks"]["adaptive"]]
    assert names == ["Square-10", "paper:FGSM", "paper:PGD-7"]


def test_cli_takes_l2_radii_above_one_as_the_api_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", "--model", MODEL, "--limit", "2", "--eps", "1.5", "--no-progress"]
    l2 = ["--norm", "L2", "--protocol", "paper", "--out", str(tmp_path / "l2")]
    assert main([*argv, *l2]) == 0
    saved = json.loads((tmp_path / "l2" / "report.json").read_text())
    assert [float(k) for k in saved["robust_accuracy"]] == [1.5]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--protocol", "paper", "--out", str(tmp_path / "linf")])
    assert exc.value.code == 2
    assert "--eps must be in [0, 1] (the image scale) for Linf" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["certify", "--norm", "l1", "--sigma", "0.25"], "--sigma is for --norm l2 only"),
        (["evaluate", "--eps", "0.1", "--seed", "-1"], "expected an integer >= 0, got '-1'"),
        (
            ["evaluate", "--eps", "0.1", "--convergence-steps", "-5"],
            "expected an integer >= 0, got '-5'",
        ),
    ],
)
def test_cli_refuses_what_the_api_refuses_as_a_usage_error(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--model", MODEL, "--limit", "2", "--out", str(tmp_path), "--no-progress"])
    assert exc.value.code == 2 and message in capsys.readouterr().err
