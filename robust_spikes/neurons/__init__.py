"""Robust neurons: adapters that wrap snnTorch and SpikingJelly neurons.

* :class:`ThresholdAdaptation`: homeostatic threshold adaptation (TA-LIF, HoSNN).
* :class:`StochasticGate`: stochastic gating of output spikes (StoG).
* :func:`adapt` / :func:`unwrap`: swap the neurons of an existing model and back.
* :func:`record_signature`: the neural dynamic signature TA-LIF compares against.
"""

from robust_spikes.neurons import functional
from robust_spikes.neurons._adapt import adapt, unwrap
from robust_spikes.neurons._gating import StochasticGate
from robust_spikes.neurons._threshold import ThresholdAdaptation, record_signature

__all__ = [
    "StochasticGate",
    "ThresholdAdaptation",
    "adapt",
    "functional",
    "record_signature",
    "unwrap",
]
