"""Encoders: images ``[N, ...]`` in [0, 1] to time-major sequences ``[T, N, ...]``.

Each coding is a pure function (the maths) and an :class:`Encoder` module (its
settings) that :class:`~robust_spikes.SpikingClassifier` calls with its generator:
:class:`Direct` (analog input), :class:`Poisson` (Bernoulli rate coding with a
straight-through gradient), :class:`RandomizedSmoothing` (Gaussian noise, then direct or
Poisson coding), :class:`Latency` (time to first spike, surrogate gradient) and
:class:`Frames` (batch-first event frames ``[N, T, ...]``, already a sequence).
"""

from robust_spikes.encoders._base import Encoder
from robust_spikes.encoders._direct import Direct, direct
from robust_spikes.encoders._frames import Frames, frames
from robust_spikes.encoders._latency import Latency, latency
from robust_spikes.encoders._poisson import Poisson, poisson
from robust_spikes.encoders._smoothing import RandomizedSmoothing, randomized_smoothing

__all__ = [
    "Direct",
    "Encoder",
    "Frames",
    "Latency",
    "Poisson",
    "RandomizedSmoothing",
    "direct",
    "frames",
    "latency",
    "poisson",
    "randomized_smoothing",
]
