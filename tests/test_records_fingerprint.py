"""Records files carry a fingerprint of the model and the data; a resume that does not
match refuses, naming what differs, and leaves the file as it was."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

import pytest
import snntorch as snn
import torch
from torch import nn

import robust_spikes as rs
from robust_spikes.evaluation import _fingerprint

KW: dict[str, Any] = dict(
    eps=[0.1], attacks=["FGSM"], convergence_steps=0, sanity_eps=0, batch_size=4, progress=False
)


def net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 10),
        nn.BatchNorm1d(10),
        snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )


def model(seed: int = 0, **kwargs: Any) -> rs.SpikingClassifier:
    return rs.SpikingClassifier(net(seed).eval(), num_steps=kwargs.pop("num_steps", 4), **kwargs)


def data(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    ds = rs.data.digits("test")
    return ds.images[:n].clone(), ds.labels[:n].clone()


def half_file(tmp_path: Path, m: nn.Module, d: Any) -> Path:
    """A records file of ``m`` on ``d`` cut after two chunks, as a killed run leaves it."""
    full = tmp_path / "full.jsonl"
    rs.evaluate(m, d, records=full, **KW)
    lines = full.read_text().splitlines(keepends=True)
    part = tmp_path / "part.jsonl"
    part.write_text("".join(lines[:9]) + lines[9][:20])
    return part


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m.net[1].weight.data.add_(1e-3), r"another model \(parameters differ\)"),
        (lambda m: m.net[2].running_mean.add_(0.5), r"another model \(parameters differ\)"),
        (lambda m: m.net[3].beta.fill_(0.8), r"another model \(parameters differ\)"),
        (
            lambda m: setattr(m, "num_steps", 8),
            r"another model \(wrapper num_steps: 4 in the file, 8 now\)",
        ),
        (
            lambda m: setattr(m, "readout", "count"),
            r"another model \(wrapper readout: .*'count' now\)",
        ),
        (
            lambda m: setattr(m, "input_range", None),
            r"another model \(wrapper input_range: \[0.0, 1.0\]",
        ),
        (
            lambda m: setattr(m, "encoder", rs.encoders.Poisson()),
            r"another model \(modules differ; wrapper encoder: 'Direct\(\)' in the file, .Poi",
        ),
    ],
)
def test_a_resume_with_another_model_is_refused_and_the_file_kept(
    tmp_path: Path, change: Any, match: str
) -> None:
    part = half_file(tmp_path, model(), data())
    before = part.read_bytes()
    other = model()
    with torch.no_grad():
        change(other)
    with pytest.raises(ValueError, match=rf"part.jsonl' was written for {match}.* delete it"):
        rs.evaluate(other, data(), records=part, **KW)
    assert part.read_bytes() == before  # nothing appended, nothing cut


def test_a_resume_with_another_normalize_is_refused(tmp_path: Path) -> None:
    normalize = ([0.5], [0.25])
    part = half_file(tmp_path, model(normalize=normalize), data())
    with pytest.raises(ValueError, match=r"another model \(wrapper normalize: "):
        rs.evaluate(model(normalize=([0.5], [0.3])), data(), records=part, **KW)


def test_a_resume_with_a_model_of_other_seed_the_issue_case(tmp_path: Path) -> None:
    """Issue 14: another model's records used to be reported as this model's number."""
    part = half_file(tmp_path, model(seed=1), data())
    with pytest.raises(ValueError, match=r"another model \(parameters differ\)"):
        rs.evaluate(model(seed=2), data(), records=part, **KW)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda x, y: (x.flip(0), y.flip(0)), r"images differ; labels differ"),  # reordered
        (lambda x, y: (x.clamp(0.01, 1.0), y), r"images differ\)"),
        (lambda x, y: (x, (y + 1) % 10), r"labels differ\)"),
    ],
)
def test_a_resume_on_other_data_is_refused(tmp_path: Path, change: Any, match: str) -> None:
    x, y = data()
    part = half_file(tmp_path, model(), (x, y))
    with pytest.raises(ValueError, match=rf"was written for other data \({match}"):
        rs.evaluate(model(), change(x, y), records=part, **KW)


def test_the_same_model_and_data_in_another_form_resume_to_the_uninterrupted_file(
    tmp_path: Path,
) -> None:
    x, y = data()
    part = half_file(tmp_path, model(), (x, y))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=5)
    resumed = rs.evaluate(model(), loader, records=part, **KW)
    assert part.read_bytes() == (tmp_path / "full.jsonl").read_bytes()
    assert resumed.records == rs.evaluate(model(), (x, y), **KW).records


def test_fingerprints_are_golden_and_depend_only_on_content() -> None:
    """Raw little-endian bytes through BLAKE2b: the same hex digests on every machine."""
    x = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) / 8
    y = torch.tensor([3, 1])
    fp = _fingerprint.data_fingerprint(x, y)
    assert fp == {
        "num_samples": 2,
        "images": "48f828582c06d63e3920b43aed351f6f",
        "labels": "df6737f00386a988da902f4af7f340d5",
    }
    # the same digest from the definition: name, dtype, shape, then little-endian float32s
    raw = b"images\0torch.float32\0(2, 3, 4)\0" + struct.pack("<24f", *(i / 8 for i in range(24)))
    assert fp["images"] == hashlib.blake2b(raw, digest_size=16).hexdigest()
    assert _fingerprint.data_fingerprint(x.clone(), y.clone()) == fp  # not the object
    assert _fingerprint.data_fingerprint(x.double(), y) != fp  # the dtype is content
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.arange(6.0).reshape(2, 3))
        lin.bias.copy_(torch.tensor([0.5, -0.5]))
    assert _fingerprint.model_fingerprint(lin)["parameters"] == "13b35d8f50da8e213448d1b2a55d5e2f"


def test_evaluating_does_not_change_the_fingerprint() -> None:
    m = model()
    before = _fingerprint.model_fingerprint(m)
    rs.evaluate(m, data(), **KW)
    assert _fingerprint.model_fingerprint(m) == before
