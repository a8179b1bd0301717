"""Exact binomial statistics without scipy: Clopper-Pearson bounds and the binomial test.

Used by randomized-smoothing certification (Cohen et al., ICML 2019: the one-sided lower
bound of the top class's probability, and the abstention test of PREDICT). The regularized
incomplete beta function is evaluated by its continued fraction (modified Lentz's method)
and inverted by bisection, in float64.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from robust_spikes._checks import check_count

__all__ = ["binomial_pvalue", "check_alpha", "clopper_pearson"]

_SIDES = ("two-sided", "lower", "upper")


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

    Returns:
        ``(low, high)``: always a pair of floats in [0, 1], with ``high = 1.0`` for
        ``side="lower"`` and ``low = 0.0`` for ``side="upper"``.

    Raises:
        ValueError: ``trials`` not a positive int, ``successes`` outside ``[0, trials]``,
            ``alpha`` outside (0, 1), unknown ``side``.

    Example:
        >>> low, high = clopper_pearson(90, 100, 0.001, side="lower")
        >>> round(low, 4), high
        (0.7753, 1.0)
    """
    n = check_count("trials", trials, minimum=1)
    k = check_count("successes", successes, minimum=0)
    if k > n:
        raise ValueError(f"successes must be at most trials={n}, got {successes!r}")
    alpha = check_alpha(alpha)
    if side not in _SIDES:
        raise ValueError(f"side must be one of {_SIDES}, got {side!r}")
    tail = alpha / 2.0 if side == "two-sided" else alpha
    low, high = 0.0, 1.0
    if side != "upper" and k > 0:
        low = tail ** (1.0 / n) if k == n else _beta_ppf(tail, k, n - k + 1)
    if side != "lower" and k < n:
        high = 1.0 - tail ** (1.0 / n) if k == 0 else _beta_ppf(tail, k + 1, n - k, upper=True)
    return low, high


def binomial_pvalue(successes: int, trials: int) -> float:
    """Two-sided p-value of the exact binomial test of ``p = 1/2``.

    Sums the probabilities of all outcomes no more likely than the observed one (as
    ``scipy.stats.binomtest(k, n, 0.5).pvalue``); by symmetry that is
    ``min(1, 2 P(X <= min(k, n - k)))``, summed in log space.
    """
    n = check_count("trials", trials, minimum=1)
    k = check_count("successes", successes, minimum=0)
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


def check_alpha(alpha: Any) -> float:
    """Return ``alpha`` as a float if it is a level in (0, 1), else raise ``ValueError``."""
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be a float in (0, 1), got {alpha!r}")
    return float(alpha)
