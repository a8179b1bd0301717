"""Robust ANN-to-SNN conversion (Özdenizci & Legenstein, TMLR 2024).

``convert(ann, calibration_data, target="snntorch")`` turns a ReLU network into a
spiking network of snnTorch or SpikingJelly with per-layer thresholds balanced on
calibration data and kept as ``nn.Parameter``; ``robust_finetune(model, data, epochs=...)``
then fine-tunes weights and thresholds with single-step R-FGSM on the TRADES objective.
Importing this package imports neither host framework.

Constants (plain values, documented here because they cannot carry a docstring):

* ``LIF_BETA``: ``float``, 0.95, the membrane leak per time step of the leaky neurons
  that ``convert(..., neuron="lif")`` makes (snnTorch ``beta``; SpikingJelly
  ``tau = 1 / (1 - LIF_BETA) = 20``).

Example:
    >>> import torch
    >>> from torch import nn
    >>> LIF_BETA, round(1 / (1 - LIF_BETA))
    (0.95, 20)
    >>> ann = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> snn = convert(ann, torch.rand(16, 4), neuron="lif", num_steps=4, calibration_steps=4)
    >>> [round(float(m.beta), 6) for m in snn.modules() if hasattr(m, "beta")] == [LIF_BETA]
    True
"""

from robust_spikes.conversion._calibrate import percentile
from robust_spikes.conversion._convert import LIF_BETA, convert, thresholds
from robust_spikes.conversion._finetune import robust_finetune
from robust_spikes.conversion._graph import ChannelAffine

__all__ = [
    "LIF_BETA",
    "ChannelAffine",
    "convert",
    "percentile",
    "robust_finetune",
    "thresholds",
]
