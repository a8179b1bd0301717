"""The results of randomized-smoothing certification: one record per sample, and their sum."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["CertificationResult", "CertifiedSample"]

_CURVE_POINTS = 51


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

    Accuracies and rates are fractions in [0, 1], radii in the [0, 1] image scale.

    Attributes:
        records: one :class:`CertifiedSample` per certified sample, in data order.
        sigma: Gaussian noise level (``None`` for ``norm="l1"``).
        n0: noisy samples used to select the top class.
        n: noisy samples used to bound its probability.
        alpha: failure probability of each certificate.
        norm: ``"l2"`` (Gaussian smoothing) or ``"l1"`` (Bernoulli rate coding).
        seed: base seed of the per-sample generators.
        num_classes: number of classes of the model.

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
