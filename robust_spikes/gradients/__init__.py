"""Gradient modes and surrogates: where the attack gradient changes.

``with model.gradient("bptt", surrogate=Triangle(gamma=1.0)):`` differentiates a
:class:`~robust_spikes.SpikingClassifier` through a chosen surrogate while its forward
pass stays exactly its own. :data:`SURROGATES` and :func:`ensemble` give the surrogate
catalogue, :data:`MODES` the gradient modes (METHODS.md section 7): ``"bptt"``, ``"pdsg"``,
``"bptr"`` and ``"rga"`` (rate-based backward passes, :mod:`._rate`) keep the forward pass
exactly; ``"ann"`` (the ReLU twin, :mod:`._twin`) replaces it.
"""

from robust_spikes.gradients._modes import MODES, GradientContext, GradientMode, SurrogateGradient
from robust_spikes.gradients._rate import BPTR, RGA, rga_derivative
from robust_spikes.gradients._surrogates import (
    PDSG,
    SURROGATES,
    Exponential,
    ExponentialD,
    Rectangular,
    SpikeFunction,
    StraightThrough,
    Surrogate,
    Tie,
    Triangle,
    ensemble,
    spike,
)
from robust_spikes.gradients._twin import ANNTwin

__all__ = [
    "BPTR",
    "MODES",
    "PDSG",
    "RGA",
    "SURROGATES",
    "ANNTwin",
    "Exponential",
    "ExponentialD",
    "GradientContext",
    "GradientMode",
    "Rectangular",
    "SpikeFunction",
    "StraightThrough",
    "Surrogate",
    "SurrogateGradient",
    "Tie",
    "Triangle",
    "ensemble",
    "rga_derivative",
    "spike",
]
