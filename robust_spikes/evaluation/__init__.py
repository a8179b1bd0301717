"""Evaluation: how robust a spiking classifier is, measured so the number can be trusted.

* :func:`certify` / :func:`predict`: randomized-smoothing certification (Cohen et al.
  2019) with Gaussian noise (l2 radius) or Bernoulli rate coding (l1 radius, Mukhoty et
  al. 2024), with per-sample records in a :class:`CertificationResult`;
* :func:`evaluate`: clean and robust accuracy under the paper and adaptive protocols,
  with resumable per-sample records, distributed runs and checks for gradient masking
  (:data:`MASKING_CODES`), summarised in a :class:`RobustnessReport`.

Constants (plain values, documented here because they cannot carry a docstring):

* ``MASKING_CODES``: ``tuple[str, ...]``, the codes of the gradient-masking checks, in
  the order they run; each flag of a :class:`RobustnessReport` is a dict
  ``{"code": ..., "message": ...}`` whose code is one of them (Athalye et al., ICML
  2018; Carlini et al. 2019).

Example:
    >>> len(MASKING_CODES), MASKING_CODES[0]
    (9, 'non-monotone')
    >>> "stochastic-without-eot" in MASKING_CODES
    True
"""

from robust_spikes.evaluation._certified import CertificationResult, CertifiedSample
from robust_spikes.evaluation._certify import certify, predict
from robust_spikes.evaluation._evaluate import evaluate
from robust_spikes.evaluation._flags import CODES as MASKING_CODES
from robust_spikes.evaluation._report import RobustnessReport

__all__ = [
    "MASKING_CODES",
    "CertificationResult",
    "CertifiedSample",
    "RobustnessReport",
    "certify",
    "evaluate",
    "predict",
]
