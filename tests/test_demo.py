"""The end-to-end demo (robust_spikes.demo) and the robust-spikes command line."""

from __future__ import annotations

import io
import itertools
import json
import re
import subprocess
import sys

import pytest
import torch

import robust_spikes
from robust_spikes.cli import main
from robust_spikes.demo import DemoResult, format_eps, run_demo

EPS = (0.0, 4 / 255, 16 / 255, 32 / 255)
COLUMNS = ("FGSM", "PGD-10", "worst")
SLACK = 0.02  # one attack run can beat another by chance on a few of the 450 images


@pytest.fixture(scope="module")
def demo() -> tuple[DemoResult, str]:
    """One short training run (3 epochs), attacked at EPS; shared as it takes seconds."""
    out = io.StringIO()
    result = run_demo(epochs=3, eps=EPS, progress=False, out=out)
    return result, out.getvalue()


# ------------------------------------------------------------------------ run_demo
def test_result_has_the_documented_keys_and_types(demo: tuple[DemoResult, str]) -> None:
    result, _ = demo
    assert set(result) == {
        "clean_accuracy",
        "robust_accuracy",
        "train_seconds",
        "num_test",
        "num_steps",
    }
    assert result["num_test"] == 450
    assert result["num_steps"] == 4
    assert result["train_seconds"] > 0
    assert list(result["robust_accuracy"]) == list(EPS)
    for accs in result["robust_accuracy"].values():
        assert set(accs) == set(COLUMNS)
        assert all(0.0 <= a <= 1.0 for a in accs.values())


def test_trains_to_a_useful_clean_accuracy(demo: tuple[DemoResult, str]) -> None:
    result, _ = demo
    assert result["clean_accuracy"] > 0.8


def test_eps_zero_reports_clean_accuracy(demo: tuple[DemoResult, str]) -> None:
    result, _ = demo
    clean = result["clean_accuracy"]
    assert result["robust_accuracy"][0.0] == {"FGSM": clean, "PGD-10": clean, "worst": clean}


def test_robust_accuracy_never_exceeds_clean(demo: tuple[DemoResult, str]) -> None:
    result, _ = demo
    for accs in result["robust_accuracy"].values():
        assert all(a <= result["clean_accuracy"] for a in accs.values())


@pytest.mark.parametrize("eps", [e for e in EPS if e > 0], ids=format_eps)
def test_pgd_is_at_least_as_strong_as_fgsm(demo: tuple[DemoResult, str], eps: float) -> None:
    accs = demo[0]["robust_accuracy"][eps]
    assert accs["PGD-10"] <= accs["FGSM"] + SLACK
    assert accs["worst"] <= min(accs["FGSM"], accs["PGD-10"])


def test_the_attack_is_real(demo: tuple[DemoResult, str]) -> None:
    result, _ = demo
    strongest = result["robust_accuracy"][max(EPS)]
    assert max(strongest.values()) < result["clean_accuracy"] - 0.2


def test_pgd_accuracy_does_not_grow_with_eps(demo: tuple[DemoResult, str]) -> None:
    robust = demo[0]["robust_accuracy"]
    pgd = [robust[e]["PGD-10"] for e in sorted(robust)]
    for smaller, larger in itertools.pairwise(pgd):
        assert larger <= smaller + SLACK


def test_report_has_the_table(demo: tuple[DemoResult, str]) -> None:
    result, report = demo
    assert re.search(
        r"^\| eps +\| eps \(float\) \| +FGSM \| PGD-10 \| worst \|$", report, re.MULTILINE
    )
    assert f"Clean accuracy: {100 * result['clean_accuracy']:.1f}%" in report
    for eps in EPS:
        assert f"| {format_eps(eps)} " in report
        assert f"{eps:.4f}" in report
    assert "| 32/255 " in report and "| 0 " in report


def test_same_seed_gives_the_same_numbers() -> None:
    def once() -> DemoResult:
        return run_demo(epochs=1, eps=(8 / 255,), progress=False, out=io.StringIO())

    before = torch.get_rng_state()
    first, second = once(), once()
    assert torch.equal(torch.get_rng_state(), before)  # the caller's global RNG is untouched
    assert first["clean_accuracy"] == second["clean_accuracy"]
    assert first["robust_accuracy"] == second["robust_accuracy"]


def test_progress_bars_go_to_stderr_not_to_the_report(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = io.StringIO()
    run_demo(epochs=1, eps=(0.0,), progress=True, out=out)
    captured = capsys.readouterr()
    assert "train" in captured.err and "loss=" in captured.err
    assert captured.out == ""
    assert "loss=" not in out.getvalue() and "Clean accuracy" in out.getvalue()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epochs": 0}, ValueError, "epochs must be a positive int, got 0"),
        ({"num_steps": 2.5}, ValueError, "num_steps must be a positive int, got 2.5"),
        ({"eps": ()}, ValueError, "eps must hold at least one radius"),
        ({"eps": (0.0, 1.5)}, ValueError, r"eps must hold finite numbers in \[0, 1\], got 1.5"),
        ({"eps": (float("nan"),)}, ValueError, "got nan"),
        ({"eps": 0.1}, TypeError, "eps must be a sequence of floats"),
        ({"seed": "0"}, TypeError, "seed must be an int, got '0'"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        run_demo(progress=False, out=io.StringIO(), **kwargs)


def test_format_eps() -> None:
    assert [format_eps(e) for e in (0.0, 1 / 255, 16 / 255, 1.0, 0.03)] == [
        "0",
        "1/255",
        "16/255",
        "1",
        "0.03",
    ]


# ----------------------------------------------------------------------------- CLI
def test_cli_demo_writes_json(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.json"
    argv = ["demo", "--epochs", "1", "--eps", "0", "8/255", "--no-progress", "--json", str(path)]
    assert main(argv) == 0
    saved = json.loads(path.read_text())
    assert set(saved) == {
        "clean_accuracy",
        "robust_accuracy",
        "train_seconds",
        "num_test",
        "num_steps",
    }
    assert [float(k) for k in saved["robust_accuracy"]] == [0.0, 8 / 255]
    assert saved["robust_accuracy"]["0.0"]["PGD-10"] == saved["clean_accuracy"]
    captured = capsys.readouterr()
    assert "| 8/255 " in captured.out
    assert captured.err == ""  # --no-progress: no bars


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"robust-spikes {robust_spikes.__version__}"


def test_cli_without_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "demo" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["demo", "--eps", "abc"], "'abc'"),
        (["demo", "--eps", "1/0"], "'1/0'"),
        (["demo", "--eps", "2"], "'2'"),
        (["demo", "--epochs", "0"], "--epochs"),
        (["demo", "--num-steps", "x"], "--num-steps"),
        (["evaluate"], "evaluate"),
    ],
)
def test_cli_bad_arguments_exit_2_naming_them(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert named in capsys.readouterr().err


def test_cli_json_into_a_missing_directory_fails_before_training(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--json", str(tmp_path / "missing" / "r.json")])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert "--json" in captured.err and "missing" in captured.err
    assert captured.out == ""


def test_python_dash_m_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "robust_spikes", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout
    assert "example:" in done.stdout
