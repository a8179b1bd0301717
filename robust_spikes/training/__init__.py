"""Robust training: a resumable loop (:func:`fit`) and training adversaries.

``fit(model, data, epochs=..., adversary=FGSM(2 / 255))`` runs FGSM adversarial training;
``PGD``, ``TRADES`` and ``RFGSM`` (R-FGSM on the TRADES objective) are the other
adversaries. Regularizers (``(model) -> loss`` or objects with ``after_step(model)``)
and callbacks plug into the same loop.
"""

from robust_spikes.training._adversaries import FGSM, PGD, RFGSM, TRADES, Adversary
from robust_spikes.training._fit import History, fit

__all__ = ["FGSM", "PGD", "RFGSM", "TRADES", "Adversary", "History", "fit"]
