"""Evaluation: how robust a spiking classifier is, measured so the number can be trusted.

* :func:`certify` / :func:`predict`: randomized-smoothing certification (Cohen et al.
  2019) with Gaussian noise (l2 radius) or Bernoulli rate coding (l1 radius, Mukhoty et
  al. 2024), with per-sample records in a :class:`CertificationResult`;
* :func:`clopper_pearson`: exact binomial confidence bounds (no scipy needed).
"""

from robust_spikes.evaluation._certify import (
    CertificationResult,
    CertifiedSample,
    certify,
    clopper_pearson,
    predict,
)

__all__ = ["CertificationResult", "CertifiedSample", "certify", "clopper_pearson", "predict"]
