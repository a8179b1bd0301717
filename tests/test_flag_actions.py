"""Flags that state their magnitude and lead to action (issue 14, items 5 and 2).

Every model here is constructed so that the outcome is certain on any CPU: a model whose
input gradient is exactly zero (no gradient attack can move it, a query attack breaks it
at its first query), a linear model whose margins are known in closed form, networks
that draw undeclared noise, and a frozen SpikingJelly network trained on firing rates
(tests/data/make_rate_trained_sj.py).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import snntorch as snn
import torch
import torchattacks
from helpers import RateInside
from torch import nn

import robust_spikes as rs
from robust_spikes.attacks import AdaptiveEnsemble, Member
from robust_spikes.evaluation import MASKING_CODES
from robust_spikes.evaluation._flags import masking_flags
from robust_spikes.evaluation._sample import SampleRecord
from robust_spikes.evaluation._settings import EvaluationSettings

EPS = 0.1
DATA = Path(__file__).parent / "data"


# --------------------------------------------------------------------------- models
class Vertex(nn.Module):
    """Class 1 iff at least half the pixels sit at 0.5 +- EPS (a vertex of the eps-box).

    Its input gradient is exactly zero, and a random start (uniform in the box) puts a
    pixel within 1% of a vertex with probability 0.01: white-box attacks cannot break
    it. Square starts at a vertex of the box and breaks every sample at its first query.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        at = ((x - 0.5).abs() >= 0.99 * EPS).flatten(1).float().mean(1)
        hit = (at >= 0.5).float()
        logits = torch.stack([1 - hit, hit], 1) * self.scale
        return logits + 0 * x.flatten(1).sum(1, keepdim=True)


class Mean(nn.Module):
    """Logits ``[mean(x), 0.45]``: class 0 iff the mean pixel is above 0.45 (exact margins)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(0.45))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.flatten(1).mean(1)
        return 20 * torch.stack([mean, self.bias.expand_as(mean)], 1)


def fgsm(eps_scale: float, name: str) -> Member:
    def build(model: nn.Module, eps: float, eot: int) -> torchattacks.Attack:
        return torchattacks.FGSM(model, eps=eps * eps_scale)

    return Member(name, build)


def square(queries: int = 20) -> Member:
    def build(model: nn.Module, eps: float, eot: int) -> torchattacks.Attack:
        return torchattacks.Square(model, eps=eps, n_queries=queries, seed=0)

    return Member(f"Square-{queries}", build)


def constant(values: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor(values)[:, None, None, None].expand(-1, 1, 8, 8).clone()
    return x, torch.zeros(len(values), dtype=torch.long)


class Recording(AdaptiveEnsemble):
    """Records which images each escalation attack received."""

    def _run(self, member, x, y, eot, salt=""):  # type: ignore[no-untyped-def]
        if salt:
            self.calls.append((member.name, salt, x.clone()))
        return super()._run(member, x, y, eot, salt)


# --------------------------------------------------------------------- escalation
def test_escalation_runs_on_the_gap_samples_only_and_records_that_it_closed_the_gap() -> None:
    # mean 0.455: FGSM at eps/10 (0.01) already breaks it; 0.5: only the full-eps
    # transfer member (FGSM on the same model, named as a transfer attack) breaks it;
    # 0.9: nothing within eps=0.1 can bring the mean below 0.45; 0.3: wrong when clean
    x, y = constant([0.455, 0.5, 0.9, 0.5, 0.455, 0.3])
    model = Mean()
    atk = Recording(
        model,
        EPS,
        members=[fgsm(0.1, "FGSM/10"), fgsm(1.0, "Transfer-FGSM")],
        escalate_steps=10,
        escalate_restarts=2,
    )
    atk.calls = []
    atk(x, y)
    assert atk.broken_by == ["FGSM/10", "Transfer-FGSM", None, "Transfer-FGSM", "FGSM/10", "clean"]
    assert atk.escalated == [None, True, None, True, None, None]
    # the first escalation attack broke both, so it was the only one to run, on them only,
    # its two restarts side by side as two copies of them in one batch
    assert [(name, salt) for name, salt, _ in atk.calls] == [("PGD-10", "#restarts")]
    torch.testing.assert_close(atk.calls[0][2], x[[1, 3, 1, 3]])
    assert "escalation" in atk.seconds


def test_escalation_runs_on_a_seeded_draw_of_at_most_escalate_samples_gap_samples() -> None:
    # nine gap samples (only the transfer member breaks a mean of 0.5), one robust (0.9)
    x, y = constant([0.5] * 9 + [0.9])
    members = [fgsm(0.1, "FGSM/10"), fgsm(1.0, "Transfer-FGSM")]
    runs = []
    for seed in (0, 0, 1):
        atk = Recording(
            Mean(), EPS, members=members, escalate_steps=10, escalate_samples=4, seed=seed
        )
        atk.calls = []
        atk(x, y)
        assert atk.broken_by == ["Transfer-FGSM"] * 9 + [None]  # the draw changes no number
        drawn = [i for i, e in enumerate(atk.escalated) if e is not None]
        assert len(drawn) == 4 and all(atk.escalated[i] is True for i in drawn)
        # the escalation attack saw the drawn samples only (3 restarts as copies)
        torch.testing.assert_close(atk.calls[0][2], x[drawn * 3])
        runs.append(drawn)
    assert runs[0] == runs[1]  # seeded
    everyone = AdaptiveEnsemble(
        Mean(), EPS, members=members, escalate_steps=10, escalate_samples=None
    )
    everyone(x, y)
    assert everyone.escalated == [True] * 9 + [None]


def test_without_escalation_or_without_white_box_members_nothing_is_escalated() -> None:
    x, y = constant([0.5, 0.9])
    members = [fgsm(0.1, "FGSM/10"), fgsm(1.0, "Transfer-FGSM")]
    atk = AdaptiveEnsemble(Mean(), EPS, members=members, escalate_steps=None)
    atk(x, y)
    assert atk.broken_by == ["Transfer-FGSM", None] and atk.escalated == [None, None]
    only = AdaptiveEnsemble(Mean(), EPS, members=members[1:], escalate_steps=10)
    only(x, y)
    assert only.broken_by == ["Transfer-FGSM", None] and only.escalated == [None, None]


@pytest.mark.parametrize("bad", [0, -1, 2.5, "200"])
def test_bad_escalation_settings_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="escalate_steps"):
        AdaptiveEnsemble(Mean(), EPS, escalate_steps=bad)  # type: ignore[arg-type]
    if bad == 0:  # evaluate, as its CLI, takes 0 for "skip" (as convergence_steps does)
        return
    with pytest.raises(ValueError, match="escalation_steps must be an int >= 0"):
        rs.evaluate(Mean(), constant([0.5]), eps=EPS, escalation_steps=bad, progress=False)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_escalation_sample_caps_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="escalate_samples"):
        AdaptiveEnsemble(Mean(), EPS, escalate_samples=bad)  # type: ignore[arg-type]
    if bad == 0 and bad is not True:  # evaluate, as its CLI, takes 0 for "no cap"
        return
    with pytest.raises(
        ValueError, match=r"escalation_samples must be an int >= 0 \(0 or None lifts the cap\), got"
    ):
        rs.evaluate(Mean(), constant([0.5]), eps=EPS, escalation_samples=bad, progress=False)  # type: ignore[arg-type]


def test_masked_gradient_flag_states_the_gap_and_that_escalation_failed(tmp_path: Path) -> None:
    x, y = constant([0.5] * 6)
    path = tmp_path / "run.jsonl"
    report = rs.evaluate(
        Vertex(),
        (x, y),
        eps=[EPS],
        attacks=["FGSM", "PGD-20", "Square-20"],
        square_queries=20,
        convergence_steps=None,
        sanity_eps=0,
        escalation_steps=10,
        records=path,
        progress=False,
    )
    assert report.robust_accuracy[EPS]["worst"] == 0.0  # escalation does not change it
    assert report.settings["escalation"] == {
        "steps": 10,
        "restarts": 3,
        "surrogates": 1,
        "samples": 16,
    }
    flags = {f["code"]: f["message"] for f in report.flags}
    message = flags["black-box-beats-white-box"]
    assert "at eps=0.1, Square-20 alone broke 6 of 6 samples (100.0%)" in message
    assert "(PGD-10, 3 restarts each) broke none of them" in message
    # 10 steps cannot tell masking from a short attack: the message says so
    assert "masked gradient, or too few escalation steps" in message
    assert "escalation_steps=200" in message and "Try: " in message
    entries = [r["results"]["adaptive"][repr(EPS)] for r in report.records]
    assert [e["escalated"] for e in entries] == [False] * 6
    # the records alone give the same flags (the per-sample outcome is in the file)
    rows = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    assert [r["results"]["adaptive"][repr(EPS)]["escalated"] for r in rows] == [False] * 6
    assert rs.evaluation.RobustnessReport.from_records(path).flags == report.flags
    assert "Square-20 alone broke 6 of 6" in report.to_markdown()


# ---------------------------------------------------------- messages from records
def _records(broken: list[str | None], escalated: list[bool | str | None]) -> list[SampleRecord]:
    """Synthetic records: ``escalated`` ``"absent"`` leaves the key out (older records)."""
    out = []
    for i, (b, e) in enumerate(zip(broken, escalated, strict=True)):
        entry = {"broken_by": b, "fooled_by": [] if b is None else [b], "norm": 0.1}
        if e != "absent":
            entry["escalated"] = e
        out.append(
            {
                "index": i,
                "label": 0,
                "prediction": 0,
                "correct": True,
                "spikes": None,
                "grad_norm": 1.0,
                "sanity": None,
                "results": {"adaptive": {"0.1": entry}},
                "certified": None,
                "other_readout": None,
            }
        )
    return [SampleRecord.from_json(r) for r in out]


def _settings(escalation: dict | None) -> EvaluationSettings:
    return EvaluationSettings.from_json(
        {
            "protocol": "adaptive",
            "protocols": ["adaptive"],
            "eps": [0.1],
            "attacks": {
                "adaptive": [
                    {"name": "PGD-20", "kind": "white-box", "mode": None},
                    {"name": "PGD-20/ann", "kind": "transfer", "mode": "ann"},
                    {"name": "Square-5000", "kind": "black-box", "mode": None},
                ]
            },
            "escalation": escalation,
            "sanity_eps": None,
            "convergence": None,
            "stochastic": False,
            "norm": "Linf",
            "seed": 0,
            "batch_size": 64,
            "eot": 1,
            "prediction_samples": 1,
            "num_data": 100,  # not read by the flags
            "undeclared_randomness": None,
        }
    )


ESCALATION = {"steps": 200, "restarts": 3, "surrogates": 6}


@pytest.mark.parametrize(
    ("escalated", "verdict"),
    [
        ([True] * 5, "broke all of them: the default white-box members stopped short"),
        ([False] * 5, "broke none of them (masked gradient)"),
        ([True, True, False, True, False], "broke 3 of them (the default white-box members"),
    ],
)
def test_black_box_message_states_counts_attacks_eps_and_escalation(
    escalated: list[bool], verdict: str
) -> None:
    broken = ["Square-5000"] * 4 + ["PGD-20/ann"] + ["PGD-20"] * 10 + [None] * 85
    outcomes: list[bool | None] = [*escalated] + [None] * 95
    flags = masking_flags(_records(broken, outcomes), _settings(ESCALATION))
    assert [f["code"] for f in flags] == ["black-box-beats-white-box"]
    message = flags[0]["message"]
    assert "at eps=0.1, PGD-20/ann (1) and Square-5000 (4) alone broke 5 of 100 samples" in message
    attack = "PGD-200, then PGD-50 through 5 more surrogates, 3 restarts each"
    assert f"escalated white-box attack ({attack}) {verdict}" in message
    if False not in escalated:
        assert "stopped short" in message and "masked" not in message
    else:
        assert f"On {escalated.count(False)} sample(s) even the escalated" in message
        assert "too few escalation steps" not in message  # 200 steps: read as masking


def test_black_box_message_states_how_many_of_the_gap_a_capped_escalation_ran_on() -> None:
    # ten gap samples, a draw of four escalated: one fell, three resisted
    broken = ["Square-5000"] * 10 + [None] * 90
    outcomes: list[bool | None] = [True, False, False, False] + [None] * 96
    flags = masking_flags(_records(broken, outcomes), _settings({**ESCALATION, "samples": 4}))
    message = flags[0]["message"]
    assert "Square-5000 alone broke 10 of 100 samples" in message
    assert "3 restarts each), run on a random 4 of them, broke 1 of them (the" in message
    assert "3 resisted it too (masked gradient)" in message
    assert "On 3 sample(s) of the 4 it ran on, even the escalated gradient attack" in message
    # without a cap in the settings, missing outcomes mean the escalation is unknown
    flags = masking_flags(_records(broken, outcomes), _settings(ESCALATION))
    assert "escalated white-box" not in flags[0]["message"]
    assert "escalation_steps=200" in flags[0]["message"]


def test_black_box_message_without_escalation_points_to_it() -> None:
    broken = ["Square-5000"] * 3 + [None] * 7
    flags = masking_flags(_records(broken, ["absent"] * 10), _settings(None))  # type: ignore[list-item]
    message = flags[0]["message"]
    assert "Square-5000 alone broke 3 of 10 samples (30.0%)" in message
    assert "escalation_steps=200" in message and "escalated white-box" not in message


# ------------------------------------------------------------ undeclared randomness
class NoiseInside(nn.Module):
    """An snnTorch net that adds Gaussian noise from the global RNG (or none)."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma
        self.fc = nn.Linear(64, 10)
        self.lif = snn.Leaky(beta=0.9, init_hidden=True, output=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.sigma * torch.randn_like(x)
        return self.lif(self.fc(x.flatten(1)))


def _recording_pgd(seen: list[int]) -> Member:
    def build(model: nn.Module, eps: float, eot: int) -> torchattacks.Attack:
        seen.append(eot)
        return torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=2)

    return Member("PGD-2", build)


@pytest.mark.parametrize(
    ("net", "random"),
    [(RateInside, True), (lambda: NoiseInside(0.1), True), (lambda: NoiseInside(0.0), False)],
)
def test_undeclared_randomness_is_flagged_and_evaluated_with_eot(net, random: bool) -> None:
    torch.manual_seed(0)
    model = rs.SpikingClassifier(net(), 4)
    assert model.is_stochastic is False
    x = torch.rand(6, 1, 8, 8)
    y = model.predict(x, num_samples=51)  # labels the vote agrees with: the attack runs
    model.train()
    seen: list[int] = []
    rng = torch.get_rng_state()
    report = rs.evaluate(
        model, (x, y), eps=[0.1], attacks=[_recording_pgd(seen)], eot=3, num_samples=5,
        convergence_steps=None, sanity_eps=0, progress=False,
    )  # fmt: skip
    assert torch.equal(torch.get_rng_state(), rng) and model.training
    flags = {f["code"]: f["message"] for f in report.flags}
    assert ("undeclared-randomness" in flags) == random
    assert report.settings["stochastic"] is random
    assert seen == ([3] if random else [1])  # the attack got EOT with 3 gradient samples
    if random:
        assert report.settings["undeclared_randomness"] == {"samples": 4, "differed": 4}
        assert report.settings["eot"] == 3 and report.settings["prediction_samples"] == 5
        message = flags["undeclared-randomness"]
        assert "same 4 samples" in message and "for 4 of them" in message
        assert "EOT with 3 gradient samples per step and a vote over 5 passes" in message
    else:
        assert report.settings["undeclared_randomness"] is None


def test_adaptive_ensemble_can_be_told_the_model_is_stochastic() -> None:
    torch.manual_seed(0)
    model = rs.SpikingClassifier(NoiseInside(0.1), 4)
    seen: list[int] = []
    x = torch.rand(3, 1, 8, 8)
    y = model.predict(x, num_samples=51)
    kwargs = {"members": [_recording_pgd(seen)], "eot": 4, "cascade": False}
    AdaptiveEnsemble(model, 0.1, stochastic=True, **kwargs)(x, y)
    AdaptiveEnsemble(model, 0.1, **kwargs)(x, y)
    assert seen == [4, 1]
    with pytest.raises(ValueError, match="stochastic must be True, False or None, got 'yes'"):
        AdaptiveEnsemble(model, 0.1, stochastic="yes")  # type: ignore[arg-type]


# ------------------------------------------------------------------ readout sanity
def _frozen_sj() -> tuple[nn.Module, object]:
    spec = importlib.util.spec_from_file_location("make_sj", DATA / "make_rate_trained_sj.py")
    assert spec is not None and spec.loader is not None
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    net = make.build()
    net.load_state_dict(torch.load(DATA / "sj_rate_digits.pt", weights_only=True))
    return net.eval(), make


def test_readout_mismatch_on_a_network_trained_on_firing_rates() -> None:
    net, make = _frozen_sj()
    test = rs.data.digits("test")
    x, y = test.images[:48], test.labels[:48]
    with torch.no_grad():
        own = make.firing_rate(net, x).argmax(1)  # SpikingJelly's own decision
        count = rs.SpikingClassifier(net, make.T, readout="count")(x).argmax(1)
        membrane = rs.SpikingClassifier(net, make.T, readout="membrane")(x).argmax(1)
    assert torch.equal(count, own)
    acc_count, acc_membrane = [float((p == y).float().mean()) for p in (count, membrane)]
    model = rs.SpikingClassifier(net, make.T, readout="membrane")
    report = rs.evaluate(model, (x, y), eps=[0], protocol="paper", sanity_eps=0, progress=False)
    assert model.readout == "membrane"
    flags = {f["code"]: f["message"] for f in report.flags}
    assert report.clean_accuracy == pytest.approx(acc_membrane)
    message = flags["readout-mismatch"]
    assert f"readout='membrane' is {100 * acc_membrane:.1f}% on 48 samples" in message
    assert f"the {100 * acc_count:.1f}% that readout='count' gives" in message
    assert "Try: SpikingClassifier(..., readout='count')" in message
    fixed = rs.SpikingClassifier(net, make.T, readout="count")
    report = rs.evaluate(fixed, (x, y), eps=[0], protocol="paper", sanity_eps=0, progress=False)
    assert "readout-mismatch" not in {f["code"] for f in report.flags}
    assert report.records[0]["other_readout"]["readout"] == "membrane"


def test_readout_check_skips_models_without_another_readout() -> None:
    x, y = constant([0.5, 0.4])
    report = rs.evaluate(Mean(), (x, y), eps=[0], protocol="paper", sanity_eps=0, progress=False)
    assert [r["other_readout"] for r in report.records] == [None, None]
    assert "readout-mismatch" in MASKING_CODES and "undeclared-randomness" in MASKING_CODES


def test_default_members_run_every_white_box_member_before_transfer_and_query_ones() -> None:
    from robust_spikes.attacks import default_members
    from robust_spikes.attacks._ensemble import member_kind

    net = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True)
    )
    kinds = [member_kind(m) for m in default_members(rs.SpikingClassifier(net, 4))]
    assert kinds == ["white-box"] * 11 + ["transfer", "black-box"]


def test_black_box_message_with_escalation_settings_but_records_without_outcomes() -> None:
    broken = ["Square-5000"] * 3 + [None] * 7
    flags = masking_flags(_records(broken, ["absent"] * 10), _settings(ESCALATION))  # type: ignore[list-item]
    message = flags[0]["message"]
    assert "Square-5000 alone broke 3 of 10 samples" in message
    assert "escalated white-box" not in message and "gradient is usable" not in message
