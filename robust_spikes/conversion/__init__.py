"""Robust ANN-to-SNN conversion (Özdenizci & Legenstein, TMLR 2024).

``convert(ann, calibration_data, target="snntorch")`` turns a ReLU network into a
spiking network of snnTorch or SpikingJelly with per-layer thresholds balanced on
calibration data and kept as ``nn.Parameter``; ``robust_finetune(model, data, epochs=...)``
then fine-tunes weights and thresholds with single-step R-FGSM on the TRADES objective.
Importing this package imports neither host framework.
"""

from robust_spikes.conversion._convert import convert, thresholds
from robust_spikes.conversion._finetune import robust_finetune

__all__ = ["convert", "robust_finetune", "thresholds"]
