"""Randomized-smoothing certification: statistics against scipy, a closed-form smoothed
classifier, determinism, a trained digits SNN, Bernoulli (l1) certification, errors."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import statistics
import subprocess
import sys

import pytest
import snntorch as snn
import torch
from helpers import NUM_STEPS, digits_tensors, trained
from scipy import stats
from torch import nn

import robust_spikes as rs
from robust_spikes.evaluation import CertificationResult, certify, predict
from robust_spikes.evaluation._stats import binomial_pvalue as _binomial_pvalue
from robust_spikes.evaluation._stats import clopper_pearson

PHI = statistics.NormalDist()


# ----------------------------------------------------------------------------- models
class Threshold(nn.Module):
    """Linear classifier on pixel 0: class 0 iff x_0 > t (logits [x_0 - t, t - x_0]).

    Under x + sigma * z it picks class 0 with probability Phi((x_0 - t) / sigma), so the
    smoothed classifier's true l2 radius at x is |x_0 - t| (Cohen et al.'s bound is tight).
    """

    def __init__(self, t: float = 0.5) -> None:
        super().__init__()
        self.t = t
        self.inputs: list[torch.Tensor] = []
        self.modes: list[bool] = []
        self.record = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.record:
            self.inputs.append(x.clone())
        self.modes.append(self.training)
        v = x.flatten(1)[:, 0]
        return torch.stack([v - self.t, self.t - v], 1)


def point(x0: float, shape: tuple[int, ...] = (1, 2, 2)) -> torch.Tensor:
    x = torch.full(shape, 0.25)
    x.view(-1)[0] = x0
    return x


def pairs(x0s: list[float], t: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([point(x0) for x0 in x0s])
    labels = torch.tensor([0 if x0 > t else 1 for x0 in x0s])
    return images, labels


class BernoulliEncoder(rs.encoders.Encoder):
    """A stochastic encoder drawing from the classifier's generator."""

    is_stochastic = True

    def forward(
        self, x: torch.Tensor, num_steps: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        u = torch.rand((num_steps, *x.shape), generator=generator)
        return (u < x.clamp(0, 1)).to(x.dtype)


@pytest.fixture
def digits_snn() -> rs.SpikingClassifier:
    return rs.SpikingClassifier(trained("snntorch_conv"), NUM_STEPS)


# ------------------------------------------------------------------------- statistics
GRID = [
    (k, n)
    for n in (1, 2, 7, 100, 1000, 100_000)
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n} & set(range(n + 1)))
]


@pytest.mark.parametrize("alpha", [1e-9, 1e-3, 0.05, 0.5])
def test_clopper_pearson_matches_scipy(alpha: float) -> None:
    for k, n in GRID:
        # beta.isf(a, ...) is beta.ppf(1 - a, ...) without rounding 1 - a first.
        low = stats.beta.ppf(alpha, k, n - k + 1) if k > 0 else 0.0
        high = stats.beta.isf(alpha, k + 1, n - k) if k < n else 1.0
        low2 = stats.beta.ppf(alpha / 2, k, n - k + 1) if k > 0 else 0.0
        high2 = stats.beta.isf(alpha / 2, k + 1, n - k) if k < n else 1.0
        got = {
            "lower": clopper_pearson(k, n, alpha, side="lower"),
            "upper": clopper_pearson(k, n, alpha, side="upper"),
            "two-sided": clopper_pearson(k, n, alpha),
        }
        want = {"lower": (low, 1.0), "upper": (0.0, high), "two-sided": (low2, high2)}
        for side, pair in want.items():
            for g, w in zip(got[side], pair, strict=True):
                assert abs(g - w) <= 1e-9, (k, n, alpha, side, g, w)


def test_clopper_pearson_edges() -> None:
    assert clopper_pearson(0, 10, 0.01, side="lower") == (0.0, 1.0)
    assert clopper_pearson(10, 10, 0.01, side="upper") == (0.0, 1.0)
    assert clopper_pearson(10, 10, 0.01, side="lower")[0] == pytest.approx(0.01**0.1, abs=1e-15)
    assert clopper_pearson(0, 10, 0.01, side="upper")[1] == pytest.approx(1 - 0.01**0.1, 1e-12)
    for k, n in GRID:
        low, high = clopper_pearson(k, n, 0.01)
        assert 0.0 <= low <= k / n <= high <= 1.0
        # a one-sided bound at alpha is tighter than the two-sided one at alpha
        assert clopper_pearson(k, n, 0.01, side="lower")[0] >= low


def test_binomial_pvalue_matches_scipy() -> None:
    for n in (1, 2, 5, 10, 11, 100, 101, 1000, 12_345):
        for k in sorted(
            {0, 1, n // 4, n // 2, n // 2 + 1, (9 * n) // 10, n - 1, n} & set(range(n + 1))
        ):
            want = stats.binomtest(k, n, 0.5).pvalue
            assert _binomial_pvalue(k, n) == pytest.approx(want, rel=1e-8, abs=1e-300), (k, n)


# ------------------------------------------------------------------------ closed form
@pytest.mark.parametrize("x0", [0.8, 1.1, 0.2])
def test_radius_matches_closed_form(x0: float) -> None:
    sigma, n, alpha, t = 0.5, 100_000, 0.001, 0.5
    gap = abs(x0 - t)
    p_a = PHI.cdf(gap / sigma)  # smoothed probability of the true class
    sd = math.sqrt(n * p_a * (1 - p_a))
    data = pairs([x0])
    (r,) = certify(
        Threshold(t), data, sigma=sigma, n=n, alpha=alpha, batch_size=25_000, progress=False
    ).records
    assert r.prediction == int(data[1][0]) and r.correct
    assert abs(r.count - n * p_a) <= 5 * sd
    assert r.p_lower == clopper_pearson(r.count, n, alpha, side="lower")[0]
    assert r.radius == pytest.approx(sigma * PHI.inv_cdf(r.p_lower), rel=1e-12)
    # Below the true radius, and within the Monte-Carlo tolerance: the radius a count
    # 5 standard deviations below its mean would still certify.
    floor = sigma * PHI.inv_cdf(clopper_pearson(math.floor(n * p_a - 5 * sd), n, alpha)[0])
    assert floor < r.radius < gap
    assert gap - floor < 0.025  # the tolerance itself is tight at this n


def test_close_to_threshold_abstains_or_certifies_tiny_radii() -> None:
    sigma, n, alpha, t, x0 = 0.5, 1000, 0.001, 0.5, 0.505
    p_a = PHI.cdf((x0 - t) / sigma)
    k_max = math.ceil(n * p_a + 5 * math.sqrt(n * p_a * (1 - p_a)))
    bound = sigma * PHI.inv_cdf(clopper_pearson(k_max, n, alpha, side="lower")[0])
    images = point(x0).expand(20, -1, -1, -1).clone()
    result = certify(Threshold(t), (images, torch.zeros(20, dtype=torch.long)), sigma=sigma,
                     n0=100, n=n, alpha=alpha, progress=False)  # fmt: skip
    assert bound < 0.05
    assert all(r.radius <= bound for r in result.records)
    assert result.abstain_rate >= 0.8


def test_abstain_frequency_at_the_threshold() -> None:
    """At x_0 = t both classes have probability 1/2: certify succeeds only when the
    selected class's count reaches the first k whose lower bound exceeds 1/2."""
    num, n, alpha = 300, 100, 0.05
    k_star = next(k for k in range(n + 1) if clopper_pearson(k, n, alpha, side="lower")[0] > 0.5)
    p_certify = stats.binom.sf(k_star - 1, n, 0.5)
    assert p_certify <= alpha
    images = point(0.5).expand(num, -1, -1, -1).clone()
    result = certify(Threshold(0.5), (images, torch.zeros(num, dtype=torch.long)), sigma=0.5,
                     n0=10, n=n, alpha=alpha, progress=False)  # fmt: skip
    certified = sum(r.prediction >= 0 for r in result.records)
    sd = math.sqrt(num * p_certify * (1 - p_certify))
    assert abs(certified - num * p_certify) <= 5 * sd
    assert {r.count >= k_star for r in result.records} == {True, False}
    assert all((r.prediction >= 0) == (r.count >= k_star) for r in result.records)


def test_predict_closed_form_and_abstain_frequency() -> None:
    images, labels = pairs([0.9, 0.1, 1.5])
    got = predict(Threshold(0.5), images, sigma=0.25, n=200, alpha=0.001)
    assert got.tolist() == labels.tolist()
    # At the threshold: PREDICT answers only when the binomial test rejects p = 1/2.
    num, n, alpha = 300, 50, 0.1
    p_answer = sum(
        stats.binom.pmf(k, n, 0.5) for k in range(n + 1) if _binomial_pvalue(k, n) <= alpha
    )
    assert p_answer <= alpha
    at = point(0.5).expand(num, -1, -1, -1).clone()
    answered = int((predict(Threshold(0.5), at, sigma=0.5, n=n, alpha=alpha) >= 0).sum())
    sd = math.sqrt(num * p_answer * (1 - p_answer))
    assert abs(answered - num * p_answer) <= 5 * sd


def test_gaussian_noise_is_added_unclipped_in_eval_mode() -> None:
    model = Threshold(0.5)
    model.record = True
    model.train()
    x = torch.rand(1, 1, 3, 3)
    sigma, n = 0.3, 2000
    certify(model, (x, torch.zeros(1, dtype=torch.long)), sigma=sigma, n0=10, n=n,
            batch_size=512, progress=False)  # fmt: skip
    assert model.training and set(model.modes) == {False}
    noise = torch.cat(model.inputs) - x
    assert noise.shape == (n + 10, 1, 3, 3)
    total = noise.numel()
    assert abs(float(noise.mean())) <= 5 * sigma / math.sqrt(total)
    assert abs(float(noise.std()) - sigma) <= 5 * sigma / math.sqrt(2 * total)
    inputs = torch.cat(model.inputs)
    assert float(inputs.min()) < 0.0 and float(inputs.max()) > 1.0  # not clipped


# ---------------------------------------------------------------------- determinism
def test_same_seed_same_records_whatever_the_batch_size() -> None:
    data = pairs([0.55, 0.7, 0.45, 0.52])
    run = {
        bs: certify(Threshold(), data, sigma=0.5, n0=30, n=300, batch_size=bs, progress=False)
        for bs in (1, 7, 64, 1000)
    }
    for bs in (1, 7, 64):
        assert run[bs].records == run[1000].records
    again = certify(Threshold(), data, sigma=0.5, n0=30, n=300, progress=False)
    assert again.records == run[1000].records
    other = certify(Threshold(), data, sigma=0.5, n0=30, n=300, seed=1, progress=False)
    assert [r.count for r in other.records] != [r.count for r in again.records]


def test_subsets_and_data_kinds_give_the_same_records() -> None:
    test = rs.data.digits("test")
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    torch.nn.init.normal_(net[1].weight, std=2.0, generator=torch.Generator().manual_seed(0))
    kw = dict(sigma=0.25, n0=10, n=40, progress=False)
    full = certify(net, test, max_samples=6, **kw).records
    assert [r.index for r in full] == list(range(6))
    subset = certify(net, test, indices=[4, 1], **kw).records
    assert subset == [full[4], full[1]]
    pair = certify(net, (test.images[:6], test.labels[:6]), **kw).records
    loader = torch.utils.data.DataLoader(test, batch_size=4)
    batches = certify(net, loader, max_samples=6, **kw).records
    from_batches = certify(net, loader, indices=[5, 1], **kw).records
    assert pair == full and batches == full
    assert from_batches == [full[5], full[1]]  # the order of indices, as for a dataset
    with pytest.raises(ValueError, match=r"indices must hold ints in \[0, 450\).* got 999"):
        certify(net, loader, indices=[1, 999], **kw)


def test_stochastic_model_is_reproducible_and_its_generator_restored() -> None:
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True)
    )
    generator = torch.Generator().manual_seed(3)
    model = rs.SpikingClassifier(net, NUM_STEPS, encoder=BernoulliEncoder(), generator=generator)
    state = generator.get_state()
    x, y = digits_tensors()[2:]
    one = certify(model, (x[:3], y[:3]), sigma=0.2, n0=10, n=30, progress=False)
    two = certify(model, (x[:3], y[:3]), sigma=0.2, n0=10, n=30, progress=False)
    assert one.records == two.records
    assert model.generator is generator and torch.equal(generator.get_state(), state)


# ------------------------------------------------------------------- a trained SNN
def test_certify_trained_digits_snn(digits_snn: rs.SpikingClassifier) -> None:
    _, _, x, y = digits_tensors()
    x, y = x[:8], y[:8]
    digits_snn.train()
    sigma, n = 0.25, 50
    result = certify(digits_snn, (x, y), sigma=sigma, n0=10, n=n, progress=False)
    assert digits_snn.input_range == (0.0, 1.0)  # restored
    assert all(m.training for m in digits_snn.modules())  # modes restored
    with torch.no_grad():
        clean = float((digits_snn(x).argmax(1) == y).float().mean())
    assert isinstance(result, CertificationResult) and len(result) == 8
    for r in result.records:
        assert r.radius >= 0.0 and 0 <= r.count <= n
        assert (r.prediction == -1) == (r.radius == 0.0) == (r.p_lower <= 0.5)
        assert r.correct == (r.prediction == r.label)
        assert r.p_lower <= r.count / n
        if r.prediction >= 0:
            assert r.radius == pytest.approx(sigma * PHI.inv_cdf(r.p_lower))
    accuracy0 = result.certified_accuracy(0.0)
    # smoothing at sigma=0.25 costs this model accuracy; measured (frozen weights): clean
    # 7 of 8, certified at radius 0 7 of 8 (counts 41-50 of 50; one abstention at 26)
    assert 0.5 <= accuracy0 <= clean
    curve = result.curve()
    assert curve[0] == (0.0, accuracy0) and len(curve) == 51
    assert all(a >= b for (_, a), (_, b) in itertools.pairwise(curve))
    assert result.certified_accuracy(curve[-1][0] + 1e-9) == 0.0
    again = certify(
        digits_snn, (x[:4], y[:4]), sigma=sigma, n0=10, n=n, batch_size=7, progress=False
    )
    assert again.records == result.records[:4]
    summary = json.loads(json.dumps(result.to_dict()))
    assert summary["settings"] == {"sigma": 0.25, "n0": 10, "n": 50, "alpha": 0.001,
                                   "norm": "l2", "seed": 0, "num_classes": 10}  # fmt: skip
    assert summary["records"][3] == dataclasses.asdict(result.records[3])
    assert summary["summary"]["certified_accuracy"] == accuracy0


# ---------------------------------------------------------------------------- l1
def test_l1_bernoulli_inputs_and_radius(digits_snn: rs.SpikingClassifier) -> None:
    model = Threshold(0.5)
    model.record = True
    x = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    n = 4000
    result = certify(model, (x, torch.zeros(1, dtype=torch.long)), norm="l1", n0=10, n=n,
                     batch_size=1000, progress=False)  # fmt: skip
    inputs = torch.cat(model.inputs)
    assert set(inputs.unique().tolist()) <= {0.0, 1.0}
    tol = 5 * torch.sqrt(x * (1 - x) / inputs.shape[0]) + 1e-6
    assert bool(((inputs.mean(0) - x[0]).abs() <= tol[0]).all())
    # pixel 0 is 1 with probability x_0: that is the smoothed probability of class 0
    (r,) = result.records
    assert result.sigma is None and result.norm == "l1"
    assert abs(r.count / n - max(float(x.flatten()[0]), 1 - float(x.flatten()[0]))) < 0.05
    _, _, images, labels = digits_tensors()
    snn_result = certify(
        digits_snn, (images[:6], labels[:6]), norm="l1", n0=10, n=50, progress=False
    )
    certified = [r for r in snn_result.records + result.records if r.prediction >= 0]
    assert certified
    for r in certified:
        assert r.radius == r.p_lower - 0.5 and 0.0 < r.radius < 0.5


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": 0.0}, "sigma must be a positive float.*got 0.0"),
        ({"sigma": -1.0}, "sigma must be a positive float.*got -1.0"),
        ({"sigma": None}, "sigma must be a positive float.*got None"),
        ({"sigma": math.nan}, "sigma must be a positive float.*got nan"),
        ({"sigma": 0.5, "norm": "l1"}, "sigma must be None for norm='l1'.*got 0.5"),
        ({"sigma": 0.5, "n0": 0}, "n0 must be a positive int, got 0"),
        ({"sigma": 0.5, "n": 0}, "n must be a positive int, got 0"),
        ({"sigma": 0.5, "n": 10.0}, "n must be a positive int, got 10.0"),
        ({"sigma": 0.5, "alpha": 0.0}, r"alpha must be a float in \(0, 1\), got 0.0"),
        ({"sigma": 0.5, "alpha": 1.5}, r"alpha must be a float in \(0, 1\), got 1.5"),
        ({"sigma": 0.5, "norm": "linf"}, "norm must be one of .*'l2', 'l1'.*got 'linf'"),
        ({"sigma": 0.5, "batch_size": 0}, "batch_size must be a positive int, got 0"),
        ({"sigma": 0.5, "seed": -1}, "seed must be an int >= 0, got -1"),
        ({"sigma": 0.5, "max_samples": 0}, "max_samples must be a positive int, got 0"),
        ({"sigma": 0.5, "indices": [9]}, r"indices must hold ints in \[0, 3\).* got 9"),
        ({"sigma": 0.5, "num_classes": 3}, r"model must return logits \[100, 3\], got \(100, 2\)"),
    ],
)
def test_certify_errors_name_the_argument(kwargs: dict, match: str) -> None:
    data = pairs([0.8, 0.2, 0.6])
    with pytest.raises(ValueError, match=match):
        certify(Threshold(), data, progress=False, **kwargs)


def test_other_errors() -> None:
    data = pairs([0.8, 0.2])
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got function"):
        certify(lambda x: x, data, sigma=0.5, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"data must be an \(images, labels\) pair.* got int 3"):
        certify(Threshold(), 3, sigma=0.5, progress=False)
    with pytest.raises(ValueError, match=r"norm='l1' needs pixel values in \[0, 1\].*max 2"):
        certify(Threshold(), pairs([2.0]), norm="l1", progress=False)
    with pytest.raises(ValueError, match="successes must be at most trials=5, got 6"):
        clopper_pearson(6, 5, 0.1)
    with pytest.raises(ValueError, match=r"side must be one of .*got 'left'"):
        clopper_pearson(1, 5, 0.1, side="left")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trials must be a positive int, got 0"):
        clopper_pearson(0, 0, 0.1)
    with pytest.raises(ValueError, match=r"alpha must be a float in \(0, 1\), got 1"):
        clopper_pearson(1, 5, 1)
    with pytest.raises(ValueError, match=r"x must be a non-empty batch of images"):
        predict(Threshold(), torch.zeros(0, 1, 2, 2), sigma=0.5)


def test_importing_the_package_does_not_import_scipy() -> None:
    code = (
        "import sys, robust_spikes, robust_spikes.evaluation; "
        "assert 'scipy' not in sys.modules, 'scipy imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
