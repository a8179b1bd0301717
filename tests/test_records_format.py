"""The typed records and settings of ``rs.evaluate`` write the records file's JSON as it was.

``tests/data/records-v2.jsonl`` was written by ``golden_run`` (a frozen snnTorch net on 6
digits, both protocols, a query member whose successes were escalated, the convergence and
sanity checks, certification and the other readout). Each of its lines must load and be
written back byte for byte, the file must resume as it is, and a fresh evaluation must
round-trip. ``tests/data/records-v1.jsonl`` is the same run written by robust-spikes at
commit 96be3ca (format ``/1``, before Square and the escalation changed): the typed records
read its lines byte for byte too, and a resume of it is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import snntorch as snn
import torch
from helpers import NUM_STEPS, RateInside, trained
from torch import nn

import robust_spikes as rs
from robust_spikes.evaluation import RobustnessReport, _records
from robust_spikes.evaluation._sample import SampleRecord
from robust_spikes.evaluation._settings import EvaluationSettings

GOLDEN = Path(__file__).parent / "data" / "records-v2.jsonl"
V1 = Path(__file__).parent / "data" / "records-v1.jsonl"
GOLDEN_KW: dict[str, Any] = dict(
    eps=[0.0, 0.15],
    protocol="both",
    attacks=["FGSM", "Square-100"],
    convergence_steps=3,
    escalation_steps=2,
    escalation_samples=None,  # written before the cap existed: every gap sample escalated
    certify={"sigma": 0.25, "n0": 10, "n": 40, "radii": [0, 0.25]},
    batch_size=3,
    progress=False,
)


def golden_run(records: Path) -> RobustnessReport:
    """The evaluation that wrote ``GOLDEN`` (run it to write a new one after a FORMAT bump)."""
    ds = rs.data.digits("test")
    x, y = ds.images[:6].clone(), ds.labels[:6].clone()
    model = rs.SpikingClassifier(trained("snntorch_conv"), NUM_STEPS, readout="membrane")
    return rs.evaluate(model, (x, y), records=records, **GOLDEN_KW)


def test_the_golden_file_covers_every_optional_part() -> None:
    lines = GOLDEN.read_text().splitlines()
    settings = json.loads(lines[0])["settings"]
    assert settings["certify"] is not None and settings["escalation"] is not None
    assert settings["convergence"] == "PGD-3" and settings["sanity_eps"] == 0.5
    rows = [json.loads(line) for line in lines[1:]]
    adaptive = [r["results"]["adaptive"] for r in rows]
    assert all("escalated" not in a["0.0"] and "escalated" in a["0.15"] for a in adaptive)
    assert {a["0.15"]["escalated"] for a in adaptive} == {None, True}
    assert {a["0.15"]["broken_by"] for a in adaptive} == {None, "clean", "FGSM", "Square-100"}
    assert all(r["certified"] is not None and r["other_readout"] is not None for r in rows)


@pytest.mark.parametrize("path", [GOLDEN, V1], ids=["v2", "v1"])
def test_every_golden_line_is_written_back_byte_for_byte(path: Path) -> None:
    header, *lines = path.read_text().splitlines()
    settings = EvaluationSettings.from_json(json.loads(header)["settings"])
    assert EvaluationSettings.from_json(settings.to_json()) == settings
    assert _records.dumps(settings.to_json()) == _records.dumps(json.loads(header)["settings"])
    for line in lines:
        record = SampleRecord.from_json(json.loads(line))
        assert _records.dumps(record.to_json()) == line
        assert SampleRecord.from_json(record.to_json()) == record


def test_the_golden_file_resumes_unchanged_and_reports_as_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    shutil.copy(GOLDEN, path)
    resumed = golden_run(path)  # every sample is recorded: nothing is evaluated again
    assert path.read_bytes() == GOLDEN.read_bytes()
    assert resumed.to_dict() == RobustnessReport.from_records(GOLDEN).to_dict()
    rows = [json.loads(line) for line in GOLDEN.read_text().splitlines()[1:]]
    assert resumed.records == rows


def test_a_file_of_the_previous_format_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    shutil.copy(V1, path)
    with pytest.raises(ValueError, match="robust-spikes-records/1' records, written by another"):
        golden_run(path)
    assert path.read_bytes() == V1.read_bytes()


@pytest.mark.parametrize("stochastic", [False, True])
def test_a_fresh_evaluation_round_trips_through_json(tmp_path: Path, stochastic: bool) -> None:
    torch.manual_seed(0)
    if stochastic:
        net: nn.Module = RateInside()
    else:
        net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True)
        )
    ds = rs.data.digits("test")
    x, y = ds.images[:4].clone(), ds.labels[:4].clone()
    kw: dict[str, Any] = dict(
        eps=[0.0, 0.1], attacks=["FGSM"], convergence_steps=0, sanity_eps=0, progress=False
    )
    if stochastic:
        kw.update(num_samples=2, eot=2, certify={"sigma": 0.25, "n0": 4, "n": 8})
    path = tmp_path / "r.jsonl"
    report = rs.evaluate(rs.SpikingClassifier(net, NUM_STEPS), (x, y), records=path, **kw)
    header, *lines = path.read_text().splitlines()
    written = json.loads(header)["settings"]
    assert (written["undeclared_randomness"] is not None) == stochastic
    assert (written["certify"] is not None) == stochastic
    settings = EvaluationSettings.from_json(written)
    assert EvaluationSettings.from_json(settings.to_json()) == settings
    assert _records.dumps(settings.to_json()) == _records.dumps(written)
    assert report.settings == settings.to_json()
    assert [json.loads(line) for line in lines] == report.records
    for line in lines:
        record = SampleRecord.from_json(json.loads(line))
        assert SampleRecord.from_json(record.to_json()) == record
        assert _records.dumps(record.to_json()) == line
