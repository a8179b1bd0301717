"""Randomized-smoothing certification: Cohen et al. (2019) CERTIFY and PREDICT.

The smoothed classifier ``g(x) = argmax_c P(f(x') = c)`` takes the majority vote of the
base classifier ``f`` (here usually a :class:`~robust_spikes.SpikingClassifier`) over
random inputs ``x'`` drawn around ``x``. Two kinds of randomness are supported:

* ``norm="l2"``: Gaussian smoothing, ``x' = x + sigma * z`` with ``z ~ N(0, I)`` added to
  the image before the model (before the SNN's encoder), not clipped to [0, 1]. If the
  lower confidence bound ``p_lower`` of the top class's probability exceeds 1/2, ``g`` is
  constant within the l2 ball of radius ``sigma * Phi^-1(p_lower)`` (Cohen et al.,
  Theorem 1).
* ``norm="l1"``: Bernoulli rate coding (Mukhoty et al., ICLR 2024), ``x' ~ Bernoulli(x)``
  per pixel, one binary image per noisy sample, drawn here and given to the model (whose
  encoder should then be :class:`~robust_spikes.encoders.Direct`: it sees the same binary
  image at every step). The total variation between the coded inputs of ``x`` and of
  ``x + delta`` is at most ``||delta||_1``, so ``g`` is constant for
  ``||delta||_1 < p_lower - 1/2``. There is no noise level to choose: ``sigma`` must be
  ``None``. The radius refers to this one draw per noisy sample, not to a rate code of
  ``num_steps`` draws inside the model (whose bound would shrink with ``num_steps``);
  randomness the model adds after the draw leaves the certificate valid.

Both certificates also hold for a stochastic base model (its randomness is a random
function of the noisy input), e.g. a :class:`~robust_spikes.SpikingClassifier` with a
random encoder or stochastic neurons.

Radii are in the [0, 1] image scale. All randomness comes from one generator per sample,
seeded from ``(seed, sample index)``, so results do not depend on batching, order or
which subset is certified.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from robust_spikes import _data
from robust_spikes._optional import require
from robust_spikes._random import rand, randn

__all__ = ["CertificationResult", "CertifiedSample", "certify", "clopper_pearson", "predict"]

Norm = Literal["l2", "l1"]
_NORMS = ("l2", "l1")
_SIDES = ("two-sided", "lower", "upper")
_BLOCK = 64  # noise rows drawn per generator call: fixes the stream whatever the batch size
_CURVE_POINTS = 51

# Streams of the per-sample generators (noise, model's own), see _sample_seed.
_CERTIFY_STREAMS, _PREDICT_STREAMS = (0, 1), (2, 3)


# ------------------------------------------------------------------------------ statistics
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, eps = 1e-300, 1e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    max_iter = 1000 + 20 * int(math.sqrt(max(a, b)))
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge: {a=}, {b=}, {x=}")


def _betainc(a: float, b: float, x: float) -> tuple[float, float]:
    """Regularized incomplete beta ``I_x(a, b)`` and its complement ``1 - I_x(a, b)``.

    The smaller of the two is computed directly (relative accuracy about 1e-14 for the
    parameters of binomial bounds up to ~1e6 trials), the larger as one minus it.
    """
    if x <= 0.0:
        return 0.0, 1.0
    if x >= 1.0:
        return 1.0, 0.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        lower = front * _betacf(a, b, x) / a
        return lower, 1.0 - lower
    upper = front * _betacf(b, a, 1.0 - x) / b
    return 1.0 - upper, upper


def _beta_ppf(prob: float, a: float, b: float, *, upper: bool = False) -> float:
    """Quantile of Beta(a, b): ``x`` with ``cdf(x) = prob``, or ``sf(x) = prob`` if ``upper``.

    Safeguarded Newton iteration: a Newton step that leaves the bracket is replaced by a
    bisection step (geometric near 0 and 1, so tiny quantiles converge quickly). The
    equation is solved in whichever tail is below 1/2, so that small tail probabilities
    such as ``sf(x) = 1e-12`` keep their relative accuracy.
    """
    if prob <= 0.0:
        return 1.0 if upper else 0.0
    if prob >= 1.0:
        return 0.0 if upper else 1.0
    in_cdf = (prob <= 0.5) != upper  # solve cdf(x) = target, else sf(x) = target
    target = min(prob, 1.0 - prob)
    log_norm = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)

    def excess(x: float) -> float:  # increasing in x, zero at the quantile
        cdf, sf = _betainc(a, b, x)
        return cdf - target if in_cdf else target - sf

    lo, hi = 0.0, 1.0
    x = a / (a + b)
    for _ in range(2000):
        f = excess(x)
        if f == 0.0:
            return x
        if f < 0.0:
            lo = x
        else:
            hi = x
        log_pdf = log_norm + (a - 1.0) * math.log(x) + (b - 1.0) * math.log1p(-x)
        pdf = math.exp(min(log_pdf, 700.0))
        new = x - f / pdf if pdf > 0.0 else math.nan
        if not lo < new < hi:  # Newton left the bracket: bisect
            if lo == 0.0 and hi < 1e-3:
                new = hi * 1e-3
            elif hi == 1.0 and lo > 1.0 - 1e-3:
                new = 1.0 - (1.0 - lo) * 1e-3
            elif lo > 0.0 and hi / lo > 16.0:
                new = math.sqrt(lo * hi)
            else:
                new = 0.5 * (lo + hi)
            if not lo < new < hi:  # the bracket is down to adjacent floats
                return x
        if abs(new - x) <= 1e-15 * min(new, 1.0 - new):
            return new
        x = new
    raise ArithmeticError(f"beta quantile did not converge: {prob=}, {a=}, {b=}, {upper=}")


def clopper_pearson(
    successes: int,
    trials: int,
    alpha: float,
    *,
    side: Literal["two-sided", "lower", "upper"] = "two-sided",
) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval for a binomial proportion.

    ``side="lower"`` gives the one-sided interval ``[p_lower, 1]`` at confidence
    ``1 - alpha`` with ``p_lower`` the ``alpha`` quantile of Beta(k, n - k + 1) (what
    Cohen et al.'s CERTIFY uses); ``side="upper"`` gives ``[0, p_upper]`` with ``p_upper``
    the ``1 - alpha`` quantile of Beta(k + 1, n - k); ``"two-sided"`` splits ``alpha``
    equally between both ends. Computed without scipy (agrees with
    ``scipy.stats.beta.ppf`` to about 1e-12).

    Args:
        successes: number of successes ``k``, an int in ``[0, trials]``.
        trials: number of trials ``n``, a positive int.
        alpha: error probability in (0, 1); the confidence level is ``1 - alpha``.
        side: ``"two-sided"``, ``"lower"`` or ``"upper"``.

    Shape:
        no tensors: Python ints and a float in; a pair of floats in [0, 1] out.

    Returns:
        ``(low, high)``: always a pair, with ``high = 1.0`` for ``side="lower"`` and
        ``low = 0.0`` for ``side="upper"``.

    Raises:
        ValueError: ``trials`` not a positive int, ``successes`` outside ``[0, trials]``,
            ``alpha`` outside (0, 1), unknown ``side``.

    Example:
        >>> low, high = clopper_pearson(90, 100, 0.001, side="lower")
        >>> round(low, 4), high
        (0.7753, 1.0)
    """
    n = _check_count("trials", trials, minimum=1)
    k = _check_count("successes", successes, minimum=0)
    if k > n:
        raise ValueError(f"successes must be at most trials={n}, got {successes!r}")
    alpha = _check_alpha(alpha)
    if side not in _SIDES:
        raise ValueError(f"side must be one of {_SIDES}, got {side!r}")
    tail = alpha / 2.0 if side == "two-sided" else alpha
    low, high = 0.0, 1.0
    if side != "upper" and k > 0:
        low = tail ** (1.0 / n) if k == n else _beta_ppf(tail, k, n - k + 1)
    if side != "lower" and k < n:
        high = 1.0 - tail ** (1.0 / n) if k == 0 else _beta_ppf(tail, k + 1, n - k, upper=True)
    return low, high


def _binomial_pvalue(successes: int, trials: int) -> float:
    """Two-sided p-value of the exact binomial test of ``p = 1/2``.

    Sums the probabilities of all outcomes no more likely than the observed one (as
    ``scipy.stats.binomtest(k, n, 0.5).pvalue``); by symmetry that is
    ``min(1, 2 P(X <= min(k, n - k)))``, summed in log space.
    """
    n = _check_count("trials", trials, minimum=1)
    k = _check_count("successes", successes, minimum=0)
    if k > n:
        raise ValueError(f"successes must be at most trials={n}, got {successes!r}")
    m = min(k, n - k)
    if 2 * m == n:
        return 1.0
    i = torch.arange(m + 1, dtype=torch.float64)
    log_pmf = (
        math.lgamma(n + 1.0) - torch.lgamma(i + 1.0) - torch.lgamma(n - i + 1.0) - n * math.log(2.0)
    )
    return min(1.0, 2.0 * math.exp(float(torch.logsumexp(log_pmf, 0))))


_NORMAL = statistics.NormalDist()


def _radius(p_lower: float, sigma: float | None, norm: str) -> float:
    """Certified radius for a lower bound ``p_lower > 1/2`` of the top-class probability."""
    if norm == "l1":
        return p_lower - 0.5
    assert sigma is not None
    return sigma * _NORMAL.inv_cdf(p_lower)


# ------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class CertifiedSample:
    """The certificate of one sample.

    Attributes:
        index: position of the sample in the data (seeds its randomness).
        label: true class.
        prediction: class of the smoothed classifier, ``-1`` when it abstains.
        radius: certified radius in the [0, 1] image scale (``norm``-ball), 0 on abstain.
        correct: ``prediction == label`` (``False`` on abstain).
        p_lower: one-sided Clopper-Pearson lower bound of the top class's probability.
        count: how many of the ``n`` noisy samples the base model gave the top class.

    Shape:
        no tensors: Python ints, floats and a bool, one record per certified sample;
        ``radius`` is in the [0, 1] image scale (l2 or l1 ball, see ``norm``).

    Example:
        >>> sample = CertifiedSample(index=0, label=3, prediction=3, radius=0.5,
        ...                          correct=True, p_lower=0.98, count=99)
        >>> sample.correct and sample.radius > 0
        True
    """

    index: int
    label: int
    prediction: int
    radius: float
    correct: bool
    p_lower: float
    count: int


@dataclass
class CertificationResult:
    """Per-sample certificates and the settings that produced them.

    Attributes:
        records: one :class:`CertifiedSample` per certified sample, in data order.
        sigma: Gaussian noise level (``None`` for ``norm="l1"``).
        n0: noisy samples used to select the top class.
        n: noisy samples used to bound its probability.
        alpha: failure probability of each certificate.
        norm: ``"l2"`` (Gaussian smoothing) or ``"l1"`` (Bernoulli rate coding).
        seed: base seed of the per-sample generators.
        num_classes: number of classes of the model.

    Shape:
        no tensors: a list of :class:`CertifiedSample` records and plain settings;
        accuracies and rates are fractions in [0, 1], radii in the [0, 1] image scale.

    Example:
        >>> records = [
        ...     CertifiedSample(0, label=3, prediction=3, radius=0.5, correct=True,
        ...                     p_lower=0.98, count=99),
        ...     CertifiedSample(1, label=1, prediction=-1, radius=0.0, correct=False,
        ...                     p_lower=0.4, count=52),
        ... ]
        >>> result = CertificationResult(records, sigma=0.25, n0=100, n=100, alpha=0.001,
        ...                              norm="l2", seed=0, num_classes=10)
        >>> result.certified_accuracy(0.0), result.certified_accuracy(0.6), result.abstain_rate
        (0.5, 0.0, 0.5)
    """

    records: list[CertifiedSample]
    sigma: float | None
    n0: int
    n: int
    alpha: float
    norm: str
    seed: int
    num_classes: int

    @property
    def settings(self) -> dict[str, Any]:
        """The settings as a dict: sigma, n0, n, alpha, norm, seed, num_classes."""
        return {
            "sigma": self.sigma,
            "n0": self.n0,
            "n": self.n,
            "alpha": self.alpha,
            "norm": self.norm,
            "seed": self.seed,
            "num_classes": self.num_classes,
        }

    def __len__(self) -> int:
        return len(self.records)

    def certified_accuracy(self, radius: float = 0.0) -> float:
        """Fraction of samples classified correctly with certified radius >= ``radius``.

        At ``radius=0`` this is the accuracy of the smoothed classifier, abstentions
        counted as errors.
        """
        if not self.records:
            raise ValueError("certified_accuracy needs at least one record, got none")
        radius = float(radius)
        if not radius >= 0.0:
            raise ValueError(f"radius must be a float >= 0, got {radius!r}")
        hits = sum(r.correct and r.radius >= radius for r in self.records)
        return hits / len(self.records)

    def curve(self, radii: Sequence[float] | None = None) -> list[tuple[float, float]]:
        """Certified accuracy at each radius, as ``[(radius, accuracy), ...]``.

        Args:
            radii: radii to evaluate; default 51 evenly spaced radii from 0 to the largest
                certified radius of a correct sample (just ``[0]`` when there is none).
        """
        if radii is None:
            top = max((r.radius for r in self.records if r.correct), default=0.0)
            if top > 0.0:
                last = _CURVE_POINTS - 1
                radii = [top * i / last for i in range(last)] + [top]
            else:
                radii = [0.0]
        return [(float(r), self.certified_accuracy(r)) for r in radii]

    @property
    def abstain_rate(self) -> float:
        """Fraction of samples on which the smoothed classifier abstains."""
        if not self.records:
            raise ValueError("abstain_rate needs at least one record, got none")
        return sum(r.prediction < 0 for r in self.records) / len(self.records)

    def to_dict(self) -> dict[str, Any]:
        """Settings, summary and records as plain (JSON-serialisable) Python values."""
        return {
            "settings": self.settings,
            "summary": {
                "num_samples": len(self.records),
                "certified_accuracy": self.certified_accuracy(0.0) if self.records else None,
                "abstain_rate": self.abstain_rate if self.records else None,
            },
            "records": [dataclasses.asdict(r) for r in self.records],
        }


# ------------------------------------------------------------------------- certification
def certify(
    model: nn.Module,
    data: Any,
    *,
    sigma: float | None = None,
    n0: int = 100,
    n: int = 1000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    norm: Norm = "l2",
    num_classes: int | None = None,
    indices: Sequence[int] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> CertificationResult:
    """Certify the smoothed classifier of ``model`` on every sample of ``data`` (CERTIFY).

    For each sample: ``n0`` noisy copies pick the top class ``c_A`` (most frequent
    argmax), ``n`` fresh copies count it, and ``p_lower`` is the one-sided Clopper-Pearson
    lower bound of its probability at confidence ``1 - alpha``. If ``p_lower > 1/2`` the
    smoothed classifier predicts ``c_A`` with radius ``sigma * Phi^-1(p_lower)`` (l2) or
    ``p_lower - 1/2`` (l1), else it abstains (prediction ``-1``, radius 0). Each
    certificate is wrong with probability at most ``alpha``. See the module docstring for
    the two kinds of noise.

    The model runs in eval mode under ``torch.no_grad`` (modes are restored afterwards),
    its ``input_range`` (if it has one) is set to ``None`` meanwhile since noisy images
    leave [0, 1], and a model with a ``generator`` attribute (a stochastic encoder or
    neurons) draws from a per-sample generator meanwhile. Every call of the model gets at
    most ``batch_size`` noisy copies of one sample. For a deterministic model the result
    does not depend on ``batch_size``; a stochastic model's own draws do.

    Args:
        model: base classifier, ``model(x) -> logits [N, K]`` (e.g. a
            :class:`~robust_spikes.SpikingClassifier`, which resets its state on every call).
        data: an ``(images, labels)`` pair of tensors, a Dataset of ``(image, label)``
            pairs (e.g. ``robust_spikes.data.digits("test")``), a DataLoader, or any
            iterable of ``(images, labels)`` batches (a list of batch tuples included).
        sigma: standard deviation of the Gaussian noise for ``norm="l2"`` (image scale);
            must be ``None`` for ``norm="l1"``.
        n0: noisy samples to select the top class.
        n: noisy samples to estimate its probability.
        alpha: failure probability in (0, 1).
        batch_size: most noisy samples per model call.
        norm: ``"l2"`` (Gaussian smoothing) or ``"l1"`` (Bernoulli rate coding).
        num_classes: number of classes; default the width of the model's logits.
        indices: certify only these positions of ``data``, in this order (an iterable is
            read up to the largest position).
        max_samples: certify at most this many samples (the first ones, after ``indices``).
        seed: base seed; sample ``i`` draws from a generator seeded from ``(seed, i)``.
        progress: show a tqdm progress bar on stderr.

    Returns:
        A :class:`CertificationResult`.

    Shape:
        images ``[C, H, W]`` (or ``[F]``) per sample; the model receives
        ``[min(batch_size, n), C, H, W]`` noisy copies.

    Raises:
        ValueError: bad ``sigma``, ``n0``, ``n``, ``alpha``, ``batch_size``, ``norm``,
            ``num_classes``, ``indices``, ``max_samples`` or ``seed``; ``data`` of another
            kind, without samples, or with labels that are not one int per image; images
            outside [0, 1] for ``norm="l1"``; logits that are not ``[N, num_classes]``.
        TypeError: ``model`` is not an ``nn.Module``.

    Example:
        >>> import robust_spikes as rs
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        >>> data = rs.data.digits("test")
        >>> result = certify(net, data, sigma=0.25, n0=10, n=50, max_samples=3, progress=False)
        >>> len(result.records), result.settings["n"]
        (3, 50)
        >>> 0.0 <= result.certified_accuracy(0.0) <= 1.0
        True
    """
    settings = check_settings(model, sigma, n0, n, alpha, batch_size, norm, num_classes, seed)
    samples, total = _samples(data, indices, max_samples)
    counter = VoteCounter(model, settings, num_classes)
    tqdm = require("tqdm", "robust_spikes.certify").tqdm
    bar = tqdm(samples, total=total, desc="certify", unit="sample", disable=not progress)
    with bar:
        records = certify_samples(counter, bar, n0=n0, n=n, alpha=alpha)
    if not records or counter.num_classes is None:
        raise ValueError("data must contain at least one sample to certify, got none")
    return CertificationResult(
        records=records,
        sigma=settings.sigma,
        n0=n0,
        n=n,
        alpha=float(alpha),
        norm=norm,
        seed=seed,
        num_classes=counter.num_classes,
    )


def certify_samples(
    counter: VoteCounter,
    samples: Iterable[tuple[int, torch.Tensor, int]],
    *,
    n0: int,
    n: int,
    alpha: float,
) -> list[CertifiedSample]:
    """CERTIFY on ``(index, image, label)`` triples with validated settings (see certify).

    Sample ``index`` draws from generators seeded from ``(seed, index)``, so a caller that
    certifies part of a data set (``robust_spikes.evaluate``, chunk by chunk) passes the
    global indices and gets the certificates :func:`certify` gives for the whole.
    """
    settings, model = counter.settings, counter.model
    records: list[CertifiedSample] = []
    with _certifying(model):
        for index, x, label in samples:
            with counter.sample(index, _check_sample(x, settings.norm, index), *_CERTIFY_STREAMS):
                top = int(counter.counts(n0).argmax())
                count = int(counter.counts(n)[top])
            p_lower = clopper_pearson(count, n, alpha, side="lower")[0]
            if p_lower > 0.5:
                prediction, radius = top, _radius(p_lower, settings.sigma, settings.norm)
            else:
                prediction, radius = -1, 0.0
            records.append(
                CertifiedSample(
                    index=index,
                    label=label,
                    prediction=prediction,
                    radius=radius,
                    correct=prediction == label,
                    p_lower=p_lower,
                    count=count,
                )
            )
    return records


def predict(
    model: nn.Module,
    x: torch.Tensor,
    *,
    sigma: float | None = None,
    n: int = 1000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    norm: Norm = "l2",
    num_classes: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """The smoothed classifier's prediction for each image (Cohen et al.'s PREDICT).

    For each image, ``n`` noisy copies are classified; with ``n_A`` and ``n_B`` the counts
    of the two most frequent classes, the top class is returned if the two-sided exact
    binomial test of ``n_A`` out of ``n_A + n_B`` against 1/2 rejects at level ``alpha``,
    else ``-1`` (abstain). A returned class differs from the smoothed classifier's true
    prediction with probability at most ``alpha``. Noise, modes and generators are handled
    as in :func:`certify`; image ``i`` draws from a generator seeded from ``(seed, i)``
    (independent of :func:`certify`'s draws).

    Args:
        model: base classifier, ``model(x) -> logits [N, K]``.
        x: images in the [0, 1] scale.
        sigma, n, alpha, batch_size, norm, num_classes, seed: as in :func:`certify`.
        progress: show a tqdm progress bar on stderr.

    Returns:
        ``int64`` predictions, ``-1`` where the smoothed classifier abstains.

    Shape:
        x: ``[N, C, H, W]`` (or ``[N, F]``); returns ``[N]``.

    Raises:
        ValueError, TypeError: as :func:`certify`; ``x`` not a non-empty batch.

    Example:
        >>> import robust_spikes as rs
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        >>> x = rs.data.digits("test").images[:2]
        >>> predict(net, x, sigma=0.25, n=20).shape
        torch.Size([2])
    """
    settings = check_settings(model, sigma, 1, n, alpha, batch_size, norm, num_classes, seed)
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a non-empty batch of images [N, C, H, W], got {got}")
    counter = VoteCounter(model, settings, num_classes)
    tqdm = require("tqdm", "robust_spikes.evaluation.predict").tqdm
    out = torch.full((x.shape[0],), -1, dtype=torch.int64)
    bar = tqdm(range(x.shape[0]), desc="predict", unit="sample", disable=not progress)
    with _certifying(model), bar:
        for i in bar:
            with counter.sample(i, _check_sample(x[i], norm, i), *_PREDICT_STREAMS):
                counts = counter.counts(n)
            top2 = torch.topk(counts, 2)
            n_a, n_b = (int(c) for c in top2.values)
            if _binomial_pvalue(n_a, n_a + n_b) <= alpha:
                out[i] = int(top2.indices[0])
    return out


# ------------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class _Settings:
    sigma: float | None
    norm: str
    batch_size: int
    seed: int


def _check_count(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return value


def _check_alpha(alpha: Any) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be a float in (0, 1), got {alpha!r}")
    return float(alpha)


def check_settings(
    model: Any,
    sigma: Any,
    n0: Any,
    n: Any,
    alpha: Any,
    batch_size: Any,
    norm: Any,
    num_classes: Any,
    seed: Any,
) -> _Settings:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    if norm == "l2":
        ok = isinstance(sigma, int | float) and not isinstance(sigma, bool)
        if not (ok and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive float for norm='l2', got {sigma!r}")
        sigma = float(sigma)
    elif sigma is not None:
        raise ValueError(
            "sigma must be None for norm='l1' (Bernoulli rate coding has no noise level), "
            f"got {sigma!r}"
        )
    _check_count("n0", n0, minimum=1)
    _check_count("n", n, minimum=1)
    _check_alpha(alpha)
    _check_count("batch_size", batch_size, minimum=1)
    if num_classes is not None:
        _check_count("num_classes", num_classes, minimum=2)
    _check_count("seed", seed, minimum=0)
    return _Settings(sigma=sigma, norm=norm, batch_size=batch_size, seed=seed)


def _sample_seed(seed: int, index: int, stream: int) -> int:
    """A 63-bit seed mixed from ``(seed, index, stream)`` (BLAKE2b)."""
    key = f"robust_spikes.certify:{seed}:{index}:{stream}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def _samples(
    data: Any, indices: Sequence[int] | None, max_samples: int | None
) -> tuple[Iterator[tuple[int, torch.Tensor, int]], int]:
    """``(index, image, label)`` for every selected sample (``_data``'s contract), and their
    number; ``index`` is the sample's position in ``data``."""
    if max_samples is not None:
        _check_count("max_samples", max_samples, minimum=1)
    chosen = None if indices is None else [_check_index(i) for i in indices]
    x, y = _data.tensors(data, "data", indices=chosen, limit=max_samples)
    positions = list(range(len(y))) if chosen is None else chosen[: len(y)]
    return ((p, x[j], int(y[j])) for j, p in enumerate(positions)), len(positions)


def _check_index(i: Any) -> int:
    if isinstance(i, torch.Tensor) and i.numel() == 1:
        i = int(i)
    if isinstance(i, bool) or not isinstance(i, int) or i < 0:
        raise ValueError(f"indices must hold ints >= 0 (positions in data), got {i!r}")
    return i


def _check_sample(x: torch.Tensor, norm: str, index: int) -> torch.Tensor:
    if not x.is_floating_point():
        raise TypeError(f"sample {index}: image must be a float tensor, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"sample {index}: image must be finite, got NaN or inf values")
    if norm == "l1":
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"sample {index}: norm='l1' needs pixel values in [0, 1] (they are Bernoulli "
                f"probabilities), got min {lo:.4g} and max {hi:.4g}"
            )
    return x


class VoteCounter:
    """Classifies noisy copies of one sample at a time and counts the argmax classes."""

    def __init__(self, model: nn.Module, settings: _Settings, num_classes: int | None) -> None:
        self.model, self.settings, self.num_classes = model, settings, num_classes
        self.device = next(
            (t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu")
        )
        self._draws: _Draws | None = None
        self._x: torch.Tensor | None = None

    @contextlib.contextmanager
    def sample(
        self, index: int, x: torch.Tensor, noise_stream: int, model_stream: int
    ) -> Iterator[None]:
        """Draw noise for sample ``index``; the model's own generator is seeded for it too."""
        seed = self.settings.seed
        gen = torch.Generator().manual_seed(_sample_seed(seed, index, noise_stream))
        kind = randn if self.settings.norm == "l2" else rand
        x = x.to(self.device)
        self._draws, self._x = _Draws(x.shape, gen, kind, x.dtype), x.unsqueeze(0)
        saved = getattr(self.model, "generator", None)
        if isinstance(saved, torch.Generator):  # a stochastic encoder or neurons
            own = torch.Generator(device=saved.device)
            own.manual_seed(_sample_seed(seed, index, model_stream))
            setattr(self.model, "generator", own)  # noqa: B010
        try:
            yield
        finally:
            self._draws = self._x = None
            if isinstance(saved, torch.Generator):
                setattr(self.model, "generator", saved)  # noqa: B010

    def counts(self, num: int) -> torch.Tensor:
        """Argmax counts ``[K]`` (``int64``, CPU) over ``num`` fresh noisy copies."""
        assert self._draws is not None and self._x is not None
        x, draws, settings = self._x, self._draws, self.settings
        total: torch.Tensor | None = None
        remaining = num
        while remaining > 0:
            m = min(settings.batch_size, remaining)
            draw = draws.take(m).to(self.device)
            if settings.norm == "l2":
                assert settings.sigma is not None
                batch = x + settings.sigma * draw
            else:
                batch = (draw < x).to(x.dtype)
            classes = self._classes(self.model(batch), m)
            counts = torch.bincount(classes, minlength=self.num_classes or 0)
            total = counts if total is None else total + counts
            remaining -= m
        assert total is not None
        return total

    def _classes(self, logits: Any, m: int) -> torch.Tensor:
        k = self.num_classes
        ok = isinstance(logits, torch.Tensor) and logits.dim() == 2 and logits.shape[0] == m
        if not ok or (k is not None and logits.shape[1] != k):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            want = f"[{m}, {k if k is not None else 'K'}]"
            raise ValueError(f"model must return logits {want}, got {got}")
        if k is None:
            if logits.shape[1] < 2:
                raise ValueError(
                    f"model must return logits for at least 2 classes, got {logits.shape[1]}"
                )
            self.num_classes = int(logits.shape[1])
        return logits.argmax(1).cpu()


class _Draws:
    """Noise rows of one sample, drawn in blocks of ``_BLOCK`` rows from its generator.

    The blocks are the same whatever sizes the rows are taken in, so the noise of a sample
    does not depend on the batch size.
    """

    def __init__(
        self,
        shape: torch.Size,
        generator: torch.Generator,
        kind: Callable[..., torch.Tensor],
        dtype: torch.dtype,
    ) -> None:
        self.shape, self.generator, self.kind, self.dtype = tuple(shape), generator, kind, dtype
        self.buffer: torch.Tensor | None = None

    def take(self, m: int) -> torch.Tensor:
        parts = [] if self.buffer is None else [self.buffer]
        have = sum(p.shape[0] for p in parts)
        while have < m:
            parts.append(
                self.kind((_BLOCK, *self.shape), self.generator, device="cpu", dtype=self.dtype)
            )
            have += _BLOCK
        rows = parts[0] if len(parts) == 1 else torch.cat(parts)
        self.buffer = rows[m:] if rows.shape[0] > m else None
        return rows[:m]


@contextlib.contextmanager
def _certifying(model: nn.Module) -> Iterator[None]:
    """Eval mode, no gradients and no input-range check; all restored on exit."""
    modes = [(m, m.training) for m in model.modules()]
    has_range = hasattr(model, "input_range")
    saved_range = getattr(model, "input_range", None)
    model.eval()
    try:
        if has_range:
            setattr(model, "input_range", None)  # noqa: B010  (noisy images leave [0, 1])
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes:
            m.training = mode
        if has_range:
            setattr(model, "input_range", saved_range)  # noqa: B010
