"""The full demo (robust_spikes.app.demo) in its quick setting, and the robust-spikes command."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import robust_spikes
from robust_spikes.app.cli import main
from robust_spikes.app.demo import MODELS, DemoResult, comparison_table, run_demo
from robust_spikes.evaluation._report import format_eps

EPS = (8 / 255,)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, str, Path]:
    """One quick run (1 epoch, 12 digits, few attacks); shared as it takes a while."""
    out, folder = io.StringIO(), tmp_path_factory.mktemp("demo")
    result = run_demo(folder, quick=True, eps=EPS, seeds=[0], progress=False, out=out)
    return result, out.getvalue(), folder


def test_every_model_is_trained_and_evaluated_under_both_protocols(
    demo: tuple[DemoResult, str, Path],
) -> None:
    result, _, _ = demo
    assert list(result["reports"]) == list(MODELS) and len(MODELS) >= 5
    assert result["num_test"] == 12 and result["seconds"] > 0
    for name, (report,) in result["reports"].items():
        assert report.protocols == ["paper", "adaptive"], name
        assert report.num_samples == 12
        robust = report.robust_accuracy[EPS[0]]
        assert robust["worst"] <= min(robust["paper/worst"], robust["adaptive/worst"])
        assert max(robust.values()) <= report.clean_accuracy
    stochastic = {n for n, (r,) in result["reports"].items() if r.settings["stochastic"]}
    assert stochastic == {"stochastic gates (StoG)", "Poisson-coded"}


def test_the_table_and_the_files(demo: tuple[DemoResult, str, Path]) -> None:
    result, text, folder = demo
    assert result["table"] in text
    assert re.search(
        r"^\| model +\| clean \| paper 8/255 \| adaptive 8/255 \| flags", text, re.MULTILINE
    )
    for name in MODELS:
        assert f"| {name} " in result["table"]
    assert (folder / "report.md").read_text().startswith(result["table"])
    saved = json.loads((folder / "report.json").read_text())
    assert set(saved) == set(MODELS)
    assert saved["LIF"]["0"]["num_samples"] == 12
    assert (folder / "robustness.png").read_bytes()[:4] == b"\x89PNG"


def test_the_table_gives_mean_and_range_over_seeds(demo: tuple[DemoResult, str, Path]) -> None:
    result, _, _ = demo
    (lif,) = result["reports"]["LIF"]
    clean = lif.clean_accuracy
    table = comparison_table({"LIF": [lif, lif]}, dataset="the digits")
    assert "mean (min-max) over 2 seeds" in table
    assert f"| {100 * clean:.1f} ({100 * clean:.0f}-{100 * clean:.0f}) |" in table
    paper = lif.protocol_accuracy("paper")[EPS[0]]["worst"]
    adaptive = lif.protocol_accuracy("adaptive")[EPS[0]]["worst"]
    assert adaptive <= paper  # the adaptive worst case contains the paper attacks


def test_bad_arguments_are_named() -> None:
    with pytest.raises(
        ValueError, match=r"eps must hold finite numbers in \[0, 1\] \(the image scale\), got 1.5"
    ):
        run_demo(quick=True, eps=(1.5,), progress=False, out=io.StringIO())
    with pytest.raises(ValueError, match=r"seeds must be a non-empty sequence of distinct ints"):
        run_demo(quick=True, seeds=["0"], progress=False, out=io.StringIO())  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"seeds must .* got \[1, 1\]"):
        run_demo(quick=True, seeds=[1, 1], progress=False, out=io.StringIO())
    with pytest.raises(ValueError, match="dataset must be one of"):
        run_demo(quick=True, dataset="mnist", progress=False, out=io.StringIO())


def test_format_eps() -> None:
    assert [format_eps(e) for e in (0.0, 1 / 255, 16 / 255, 1.0, 0.03)] == [
        "0",
        "1/255",
        "16/255",
        "1",
        "0.03",
    ]


# ----------------------------------------------------------------------------- CLI
def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"robust-spikes {robust_spikes.__version__}"


def test_cli_without_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "demo" in err and "evaluate" in err and "certify" in err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["demo", "--eps", "abc"], "'abc'"),
        (["demo", "--eps", "1/0"], "'1/0'"),
        (["demo", "--eps", "2"], "'2'"),
        (["evaluate"], "--model"),
        (["evaluate", "--model", "x:y", "--out", "o"], "--eps"),
        (["evaluate", "--model", "nowhere", "--eps", "0.1", "--out", "o"], "nowhere"),
        (["evaluate", "--model", "math:nothing", "--eps", "0.1", "--out", "o"], "nothing"),
        (["evaluate", "--model", "math:pi", "--eps", "0.1", "--out", "o"], "float"),
    ],
)
def test_cli_bad_arguments_exit_2_naming_them(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert named in capsys.readouterr().err


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "robust_spikes", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "evaluate" in done.stdout and "certify" in done.stdout
    assert "examples:" in done.stdout
