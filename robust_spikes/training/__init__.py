"""Robust training: a resumable loop, adversaries, HIRE-SNN and regularisers.

``fit(model, data, epochs=..., adversary=FGSM(2 / 255))`` runs FGSM adversarial training;
``PGD``, ``TRADES`` and ``RFGSM`` (R-FGSM on the TRADES objective) are the other
adversaries. :func:`hire` trains with HIRE-SNN's crafted input noise at the cost of plain
training. Regularizers (``(model) -> loss`` callables, or objects with ``after_step(model)``
or ``before_epoch(model, epoch)``, such as :class:`GatePenalty` and
:class:`OrthogonalRetraction`) and callbacks plug into both loops.
"""

from robust_spikes.training._adversaries import FGSM, PGD, RFGSM, TRADES, Adversary
from robust_spikes.training._fit import History, fit
from robust_spikes.training._hire import hire
from robust_spikes.training._regularizers import GatePenalty, OrthogonalRetraction

__all__ = [
    "FGSM",
    "PGD",
    "RFGSM",
    "TRADES",
    "Adversary",
    "GatePenalty",
    "History",
    "OrthogonalRetraction",
    "fit",
    "hire",
]
