"""Gradient modes and surrogates: where the attack gradient changes.

``with model.gradient("bptt", surrogate=Triangle(gamma=1.0)):`` differentiates a
:class:`~robust_spikes.SpikingClassifier` through a chosen surrogate while its forward
pass stays exactly its own. :data:`SURROGATES` and :func:`ensemble` give the surrogate
catalogue, :data:`MODES` the gradient modes (METHODS.md section 7).
"""

from robust_spikes.gradients._modes import MODES, GradientContext, GradientMode, SurrogateGradient
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

__all__ = [
    "MODES",
    "PDSG",
    "SURROGATES",
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
    "spike",
]
