"""Encoders: images ``[N, ...]`` in [0, 1] to time-major sequences ``[T, N, ...]``."""

from robust_spikes.encoders._base import Encoder
from robust_spikes.encoders._direct import Direct, direct

__all__ = ["Direct", "Encoder", "direct"]
