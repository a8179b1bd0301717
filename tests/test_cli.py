"""The evaluate and certify subcommands through robust_spikes.app.cli.main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import trained

from robust_spikes.app._loading import load_model
from robust_spikes.app.cli import build_parser, main


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "net.pt"
    torch.save(trained("snntorch_conv").state_dict(), path)
    return path


def argv(command: str, weights: Path, out: Path, limit: int, *options: str) -> list[str]:
    """``command`` on the test network with ``weights``, the first ``limit`` digits."""
    model = ["--model", "helpers:snntorch_conv", "--weights", str(weights)]
    return [command, *model, "--limit", str(limit), *options, "--out", str(out), "--no-progress"]


def test_every_subcommand_has_a_readable_help() -> None:
    parser = build_parser()
    text = parser.format_help()
    for name in ("demo", "evaluate", "certify"):
        assert name in text
    sub = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    evaluate_help = sub["evaluate"].format_help()
    assert "MODULE:FUNCTION" in evaluate_help and "--protocol" in evaluate_help
    assert "[0, 1] image scale" in evaluate_help


def test_evaluate_writes_the_report_files(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(argv("evaluate", weights, tmp_path, 12, "--eps", "0", "8/255", "--protocol", "paper"))
        == 0
    )
    for name in ("records.jsonl", "report.json", "report.csv", "report.md", "robustness.png"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["num_samples"] == 12 and saved["protocol"] == "paper"
    assert [float(k) for k in saved["robust_accuracy"]] == [0.0, 8 / 255]
    captured = capsys.readouterr()
    assert "| 8/255 " in captured.out and captured.err == ""


def test_evaluate_can_certify_the_same_samples(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = ["--eps", "8/255", "--protocol", "paper", "--certify-n0", "20", "--certify-n", "50"]
    assert main(argv("evaluate", weights, tmp_path, 4, *options, "--certify-sigma", "0.25")) == 0
    saved = json.loads((tmp_path / "report.json").read_text())
    assert {k: saved["settings"]["certify"][k] for k in ("sigma", "n0", "n")} == {
        "sigma": 0.25,
        "n0": 20,
        "n": 50,
    }
    assert [float(r) for r in saved["certified_accuracy"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert "Certified accuracy (randomized smoothing" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(argv("evaluate", weights, tmp_path / "bad", 4, *options, "--certify-sigma", "-1"))
    assert exc.value.code == 2 and "--certify-sigma must be a positive number, got -1.0" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as exc:
        main(argv("evaluate", weights, tmp_path / "bad", 4, *options))
    assert exc.value.code == 2 and "--certify-n0 and --certify-n need --certify-sigma" in (
        capsys.readouterr().err
    )


def test_certify_writes_the_certificates(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = ["--sigma", "0.25", "--n0", "10", "--n", "50"]
    assert main(argv("certify", weights, tmp_path, 3, *options)) == 0
    saved = json.loads((tmp_path / "certify.json").read_text())
    assert saved["summary"]["num_samples"] == 3 and saved["settings"]["sigma"] == 0.25
    assert "Certified accuracy" in capsys.readouterr().out


def test_certify_needs_sigma_for_l2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["certify", "--model", "robust_spikes.app.demo:build_net", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "--sigma" in capsys.readouterr().err


def test_load_model_wraps_a_plain_network() -> None:
    model = load_model("helpers:snntorch_conv", num_steps=3)
    assert model.num_steps == 3 and not model.training
