"""rs.evaluate: report contents, resume after a kill, and 1 vs 2 processes (torchrun)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from helpers import NUM_STEPS, digits_tensors, trained

import robust_spikes as rs
from robust_spikes.app.cli import main
from robust_spikes.evaluation import RobustnessReport

ROOT = Path(__file__).resolve().parents[1]
EPS = [0.0, 0.1]
ATTACKS = ["FGSM", "PGD-20", "Square-50"]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run like the subprocesses below (OMP_NUM_THREADS=1): bitwise equal floats."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def model() -> rs.SpikingClassifier:
    return rs.SpikingClassifier(trained("snntorch_conv"), NUM_STEPS)


def data(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    _, _, x, y = digits_tensors()
    return x[:n], y[:n]


@pytest.fixture(scope="module")
def report() -> RobustnessReport:
    return rs.evaluate(
        model(),
        data(),
        eps=EPS,
        protocol="both",
        attacks=ATTACKS,
        square_queries=50,
        convergence_steps=20,
        batch_size=16,
        progress=False,
    )


# ------------------------------------------------------------------------- contents
def test_summary_has_the_documented_keys(report: RobustnessReport) -> None:
    d = report.to_dict()
    assert {
        "clean_accuracy",
        "robust_accuracy",
        "attack_success_rate",
        "num_samples",
        "mean_spike_count",
        "flags",
        "protocol",
        "seed",
        "eot",
        "prediction_samples",
        "settings",
    } <= set(d)
    assert d["num_samples"] == 32 and d["protocol"] == "both" and d["eot"] == 1
    assert d["certified_accuracy"] is None and d["settings"]["certify"] is None
    assert list(d["robust_accuracy"]) == EPS
    for accs in d["robust_accuracy"].values():
        assert {
            "paper/FGSM",
            "paper/PGD-7",
            "paper/worst",
            "adaptive/PGD-20/convergence",
            "worst",
        } <= set(accs)
    assert d["mean_spike_count"] > 0
    assert all(set(f) == {"code", "message"} for f in d["flags"])


def test_accuracies_are_consistent(report: RobustnessReport) -> None:
    clean = report.clean_accuracy
    robust = report.robust_accuracy
    assert all(v == clean for v in robust[0.0].values())
    for eps in EPS:
        accs = robust[eps]
        assert accs["worst"] <= min(accs.values()) + 1e-12
        assert max(accs.values()) <= clean
        adaptive = [
            v for k, v in accs.items() if k.startswith("adaptive/") and k != "adaptive/worst"
        ]
        assert adaptive == sorted(adaptive, reverse=True)  # cumulative cascade
        rate = report.attack_success_rate[eps]
        assert rate == pytest.approx(1 - accs["worst"] / clean)
    assert robust[0.1]["worst"] < clean - 0.2  # the attacks are real


def test_records_hold_valid_perturbations(report: RobustnessReport) -> None:
    for r in report.records:
        for protocol in ("paper", "adaptive"):
            for eps in EPS:
                entry = r["results"][protocol][repr(eps)]
                assert entry["norm"] <= eps + 1e-6
                if entry["broken_by"] not in (None, "clean"):
                    assert entry["broken_by"] in entry["fooled_by"]
                    assert r["correct"]


def test_renderings(report: RobustnessReport, tmp_path: Path) -> None:
    md = report.to_markdown()
    assert "| eps " in md and "paper" in md and "Masking checks" in md
    report.to_json(tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["num_samples"] == 32
    report.to_csv(tmp_path / "r.csv")
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0] == "protocol,eps,attack,accuracy" and len(lines) > 10
    report.plot(tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_same_seed_same_records_and_the_callers_rng_is_untouched() -> None:
    m = model()
    state, gen = torch.get_rng_state(), m.generator.get_state()
    kwargs = dict(
        eps=[0.1],
        attacks=["PGD-20"],
        convergence_steps=None,
        sanity_eps=0,
        batch_size=8,
        progress=False,
    )
    first = rs.evaluate(m, data(16), **kwargs)
    assert torch.equal(torch.get_rng_state(), state) and torch.equal(m.generator.get_state(), gen)
    assert rs.evaluate(m, data(16), **kwargs).records == first.records


def test_truncated_records_resume_to_the_same_file(tmp_path: Path) -> None:
    kwargs = dict(
        eps=[0.1],
        attacks=["FGSM", "PGD-20"],
        convergence_steps=None,
        sanity_eps=0,
        batch_size=4,
        progress=False,
    )
    full, part = tmp_path / "full.jsonl", tmp_path / "part.jsonl"
    reference = rs.evaluate(model(), data(16), records=full, **kwargs)
    lines = full.read_text().splitlines(keepends=True)
    part.write_text("".join(lines[:6]) + lines[6][:25])  # 5 records and half of a sixth
    resumed = rs.evaluate(model(), data(16), records=part, **kwargs)
    assert part.read_bytes() == full.read_bytes()
    assert resumed.to_dict() == reference.to_dict()
    assert RobustnessReport.from_records(part).to_dict() == reference.to_dict()
    with pytest.raises(ValueError, match=r"other settings \(differing: seed\)"):
        rs.evaluate(model(), data(16), records=part, **{**kwargs, "seed": 1})
    # A file of robust-spikes 0.1 (no fingerprint, no "certify" key) is refused, untouched;
    # RobustnessReport.from_records still reads it.
    lines = full.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    del header["settings"]["certify"], header["fingerprint"]
    old = tmp_path / "old.jsonl"
    old.write_text(json.dumps(header) + "\n" + "".join(lines[1:]))
    before = old.read_bytes()
    with pytest.raises(ValueError, match=r"older robust-spikes without a fingerprint.* delete"):
        rs.evaluate(model(), data(16), records=old, **kwargs)
    assert old.read_bytes() == before
    assert RobustnessReport.from_records(old).records == reference.records


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": [1.5]}, r"eps must hold finite numbers in \[0, 1\]"),
        ({"eps": []}, "eps must be a number or a non-empty sequence"),
        ({"eps": 0.1, "protocol": "strong"}, "protocol must be one of"),
        ({"eps": 0.1, "norm": "L1"}, "norm must be one of"),
        ({"eps": 0.1, "attacks": ["PGD-1000"]}, "unknown member 'PGD-1000'"),
        ({"eps": 0.1, "batch_size": 0}, "batch_size must be a positive int, got 0"),
        ({"eps": 0.1, "seed": -1}, "seed must be an int"),
        ({"eps": 0.1, "certify": 0.25}, "certify must be a dict of certification settings"),
        ({"eps": 0.1, "certify": {"sigma": -1}}, "certify: sigma must be a positive float"),
        ({"eps": 0.1, "certify": {"sigma": 0.2, "m": 5}}, r"got unknown keys \['m'\]"),
        ({"eps": 0.1, "certify": {"sigma": 0.2, "radii": []}}, r"certify\['radii'\] must be"),
        ({"eps": 0.1, "certify": {"norm": "l1", "sigma": 0.2}}, "sigma must be None for"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        rs.evaluate(model(), data(4), progress=False, **kwargs)


def png_width(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")  # IHDR width


def test_certification_equals_certify_whatever_the_batch_size(tmp_path: Path) -> None:
    m, (x, y) = model(), data(12)
    settings = {"sigma": 0.25, "n0": 20, "n": 100, "radii": [0.25, 0, 0.1]}
    kwargs = dict(
        eps=[0.1],
        attacks=["FGSM"],
        convergence_steps=None,
        sanity_eps=0,
        seed=3,
        certify=settings,
        progress=False,
    )
    chunked = rs.evaluate(m, (x, y), batch_size=5, records=tmp_path / "r.jsonl", **kwargs)
    whole = rs.evaluate(m, (x, y), batch_size=12, **kwargs)
    reference = rs.certify(m, (x, y), sigma=0.25, n0=20, n=100, seed=3, progress=False)
    certificates = [r["certified"] for r in chunked.records]
    assert certificates == [r["certified"] for r in whole.records]
    assert [(c["prediction"], c["radius"], c["p_lower"], c["count"]) for c in certificates] == [
        (r.prediction, r.radius, r.p_lower, r.count) for r in reference.records
    ]
    expected = {r: reference.certified_accuracy(r) for r in (0.0, 0.1, 0.25)}
    assert chunked.certified_accuracy == expected and expected[0.0] > 0.0
    assert chunked.to_dict()["certified_accuracy"] == expected
    curve = chunked.certified_curve(points=11)
    assert len(curve) == 11 and curve[0] == (0.0, expected[0.0])
    with pytest.raises(ValueError, match="points must be an int >= 2, got 1"):
        chunked.certified_curve(points=1)
    with pytest.raises(ValueError, match="certified_curve needs an evaluation run with certify"):
        rs.evaluate(m, (x[:2], y[:2]), **{**kwargs, "certify": None}).certified_curve()
    assert "Certified accuracy (randomized smoothing, l2 radius, sigma 0.25" in (
        chunked.to_markdown()
    )
    chunked.to_csv(tmp_path / "r.csv")
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert rows[-3:] == [f"certified,{r},l2,{a}" for r, a in expected.items()]
    chunked.plot(tmp_path / "with.png")
    whole_without = rs.evaluate(m, (x, y), **{**kwargs, "certify": None})
    whole_without.plot(tmp_path / "without.png")
    assert png_width(tmp_path / "with.png") > 1.5 * png_width(tmp_path / "without.png")
    assert RobustnessReport.from_records(tmp_path / "r.jsonl").to_dict() == chunked.to_dict()
    with pytest.raises(ValueError, match=r"other settings \(differing: certify\)"):
        rs.evaluate(
            m, (x, y), batch_size=5, records=tmp_path / "r.jsonl",
            **{**kwargs, "certify": {**settings, "n": 200}},
        )  # fmt: skip
    # Other radii only change the summary: the finished records are reused as they are.
    records = [dict(r) for r in chunked.records]
    again = rs.evaluate(
        m, (x, y), batch_size=5, records=tmp_path / "r.jsonl",
        **{**kwargs, "certify": {**settings, "radii": [0.05]}},
    )  # fmt: skip
    assert again.records == records
    assert again.certified_accuracy == {0.05: reference.certified_accuracy(0.05)}


def test_l1_certification_of_images_outside_0_1_is_refused_before_any_work(
    tmp_path: Path,
) -> None:
    x, y = data(4)
    net = rs.SpikingClassifier(model().net, NUM_STEPS, input_range=None)
    with pytest.raises(ValueError, match=r"certify\['norm'\]='l1' needs images in \[0, 1\].*max 2"):
        rs.evaluate(
            net, (2 * x, y), eps=[0.1], attacks=["FGSM"], records=tmp_path / "r.jsonl",
            certify={"norm": "l1"}, progress=False,
        )  # fmt: skip
    assert not (tmp_path / "r.jsonl").exists()


# --------------------------------------------------------------- processes and kills
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights of the test network; the CLI builds it with helpers:snntorch_conv."""
    path = tmp_path_factory.mktemp("model") / "weights.pt"
    torch.save(trained("snntorch_conv").state_dict(), path)
    return path


def cli_args(weights: Path, out: Path) -> list[str]:
    return [
        "evaluate",
        "--model",
        "helpers:snntorch_conv",
        "--weights",
        str(weights),
        "--limit",
        "40",
        "--batch-size",
        "2",
        "--eps",
        "0.1",
        "--protocol",
        "adaptive",
        "--attacks",
        "FGSM",
        "PGD-20",
        "--convergence-steps",
        "0",
        "--out",
        str(out),
        "--no-progress",
    ]


@pytest.fixture(scope="module")
def reference(saved_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    with one_thread():
        assert main(cli_args(saved_model, out)) == 0
    return out


def env() -> dict[str, str]:
    e = dict(os.environ, OMP_NUM_THREADS="1")
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests"), e.get("PYTHONPATH", "")])
    return e


def test_a_killed_evaluation_resumes_to_the_uninterrupted_result(
    saved_model: Path, reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = tmp_path / "records.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "robust_spikes", *cli_args(saved_model, tmp_path)],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if records.exists() and records.read_text().count("\n") >= 5:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    done = records.read_text().count("\n") - 1
    assert 4 <= done < 40  # killed mid-run
    with one_thread():
        assert main(cli_args(saved_model, tmp_path)) == 0
    capsys.readouterr()
    assert records.read_bytes() == (reference / "records.jsonl").read_bytes()
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(
        (reference / "report.json").read_text()
    )


def test_torchrun_two_processes_give_the_single_process_records(
    saved_model: Path, reference: Path, tmp_path: Path
) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "robust_spikes",
            *cli_args(saved_model, tmp_path),
        ],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "records.jsonl").read_bytes() == (reference / "records.jsonl").read_bytes()
    assert not list(tmp_path.glob("records.jsonl.part-*"))
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(
        (reference / "report.json").read_text()
    )
