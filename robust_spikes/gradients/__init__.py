"""Gradient modes and surrogates: where the attack gradient changes.

``with model.gradient("bptt", surrogate=Triangle(gamma=1.0)):`` differentiates a
:class:`~robust_spikes.SpikingClassifier` through a chosen surrogate while its forward
pass stays exactly its own. :data:`SURROGATES` and :func:`ensemble` give the surrogate
catalogue, :data:`MODES` the gradient modes (METHODS.md section 7): ``"bptt"``, ``"pdsg"``,
``"bptr"`` and ``"rga"`` (rate-based backward passes, :mod:`._rate`) keep the forward pass
exactly; ``"ann"`` (the ReLU twin, :mod:`._twin`) replaces it.

Constants (plain values, documented here because they cannot carry a docstring):

* ``MODES``: ``dict[str, type]``, gradient-mode name (what ``model.gradient(mode)``
  takes) to the class that implements the mode.
* ``SURROGATES``: ``dict[str, type[Surrogate]]``, surrogate name (the class's ``name``)
  to the :class:`Surrogate` class; construct one with its shape parameter.

Example:
    >>> sorted(MODES)
    ['ann', 'bptr', 'bptt', 'pdsg', 'rga']
    >>> sorted(SURROGATES)
    ['exponential', 'exponential-d', 'pdsg', 'rectangular', 'straight-through', 'triangle']
    >>> SURROGATES["triangle"](gamma=0.5)
    Triangle(gamma=0.5)
"""

# _rate and _twin register "bptr", "rga" and "ann" in MODES when imported.
from robust_spikes.gradients import _rate, _twin  # noqa: F401
from robust_spikes.gradients._modes import MODES
from robust_spikes.gradients._surrogates import (
    PDSG,
    SURROGATES,
    Exponential,
    ExponentialD,
    Rectangular,
    StraightThrough,
    Surrogate,
    Triangle,
    ensemble,
)

__all__ = [
    "MODES",
    "PDSG",
    "SURROGATES",
    "Exponential",
    "ExponentialD",
    "Rectangular",
    "StraightThrough",
    "Surrogate",
    "Triangle",
    "ensemble",
]
