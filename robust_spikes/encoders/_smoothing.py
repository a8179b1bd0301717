"""Randomized smoothing coding (RSC-SNN, Wu et al., ACM MM 2024)."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from robust_spikes._checks import check_num_steps
from robust_spikes._random import randn
from robust_spikes.encoders._base import Encoder
from robust_spikes.encoders._direct import direct
from robust_spikes.encoders._poisson import (
    Grad,
    _check_gain,
    _check_generator,
    _check_grad,
    poisson,
)

__all__ = ["RandomizedSmoothing", "randomized_smoothing"]

Then = Literal["direct", "poisson"]
_THENS = ("direct", "poisson")


def _check_sigma(sigma: Any) -> float:
    ok = isinstance(sigma, int | float) and not isinstance(sigma, bool)
    if not ok or not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    return float(sigma)


def _check_then(then: Any) -> Then:
    if then not in _THENS:
        raise ValueError(f"then must be one of {_THENS}, got {then!r}")
    return then


def randomized_smoothing(
    x: torch.Tensor,
    num_steps: int,
    *,
    sigma: float,
    generator: torch.Generator | None,
    then: Then = "direct",
    gain: float = 1.0,
    grad: Grad = "sum",
) -> torch.Tensor:
    """Add Gaussian noise to the input once, then code it directly or as Poisson spikes.

    The randomized smoothing coding of Wu et al., "RSC-SNN: Exploring the trade-off
    between adversarial robustness and accuracy in spiking neural networks via
    randomized smoothing coding", ACM MM 2024: the encoder makes the smoothing of
    Cohen et al. (2019) explicit. One draw ``delta ~ N(0, sigma^2)`` of ``x``'s shape is
    taken per call from ``generator`` and shared by all steps; the smoothed input
    ``x + delta`` (not clamped) is then

    * ``then="direct"``: the analog input at every step, as :func:`direct`;
    * ``then="poisson"``: Bernoulli coded with rate ``clamp(gain * (x + delta), 0, 1)``
      as :func:`poisson`, whose uniforms are drawn after ``delta``.

    So one call is one sample of the base classifier ``f(x + delta)`` of the smoothed
    classifier. The gradient is exact for the noise (``d(x + delta)/dx = 1``) and, for
    ``then="poisson"``, the straight-through gradient of :func:`poisson` (``gain`` per
    step, through the clamp, summed or averaged over steps as ``grad`` says).

    ``sigma = 0`` is exactly the plain encoder: no noise is drawn, the result equals
    :func:`direct`, or :func:`poisson` with the same generator state, bit for bit.

    Args:
        x: images ``[N, ...]`` in the [0, 1] scale.
        num_steps: number of time steps ``T`` (a positive int).
        sigma: standard deviation of the noise in the [0, 1] image scale, finite, >= 0.
        generator: source of the noise (and Poisson) draws; may be ``None`` only when
            nothing random is drawn (``sigma = 0`` and ``then="direct"``).
        then: ``"direct"`` or ``"poisson"``, the coding applied to the noisy input.
        gain: Poisson rate multiplier (``then="poisson"``), finite, > 0.
        grad: ``"sum"`` or ``"mean"``, the Poisson straight-through combination.

    Returns:
        The coded sequence, of ``x``'s dtype.

    Shape:
        x: ``[N, ...]``; returns ``[num_steps, N, ...]``.

    Raises:
        ValueError: bad ``num_steps``, ``sigma``, ``then``, ``gain`` or ``grad``.
        TypeError: ``generator`` is not a ``torch.Generator`` where one is needed.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> seq = randomized_smoothing(torch.full((2, 3), 0.5), 4, sigma=0.25, generator=g)
        >>> seq.shape, bool((seq == seq[0]).all())  # one draw shared by all steps
        (torch.Size([4, 2, 3]), True)
    """
    num_steps = check_num_steps(num_steps)
    sigma = _check_sigma(sigma)
    then = _check_then(then)
    gain = _check_gain(gain)
    grad = _check_grad(grad)
    if sigma > 0:
        generator = _check_generator(generator, "randomized_smoothing")
        x = x + sigma * randn(x.shape, generator, device=x.device, dtype=x.dtype)
    if then == "direct":
        return direct(x, num_steps)
    generator = _check_generator(generator, "randomized_smoothing")
    return poisson(x, num_steps, generator=generator, gain=gain, grad=grad)


class RandomizedSmoothing(Encoder):
    """Randomized smoothing coding: Gaussian noise on the input, then direct or Poisson.

    RSC-SNN (Wu et al., ACM MM 2024): the robustness of Poisson-coded SNNs is randomized
    smoothing in disguise; an encoder with an explicit noise level ``sigma`` trades clean
    accuracy for robustness and can be certified (Cohen et al., 2019). One noise draw
    per call, shared by all steps, from the ``generator`` passed to :meth:`forward`; see
    :func:`randomized_smoothing` for the exact coding and gradient. ``sigma = 0`` is the
    plain :class:`~robust_spikes.encoders.Direct` or
    :class:`~robust_spikes.encoders.Poisson` encoder, bit for bit.

    ``is_stochastic`` is true when ``sigma > 0`` or ``then="poisson"``, and follows
    later assignments to ``sigma`` and ``then``.

    Args:
        sigma: noise standard deviation in the [0, 1] image scale, finite, >= 0.
        then: ``"direct"`` or ``"poisson"``.
        gain: Poisson rate multiplier (``then="poisson"``), finite, > 0.
        grad: ``"sum"`` or ``"mean"``, the Poisson straight-through combination.

    Shape:
        x: ``[N, ...]``; returns ``[num_steps, N, ...]``.

    Raises:
        ValueError: bad ``sigma``, ``then``, ``gain`` or ``grad``; bad ``num_steps``.
        TypeError: :meth:`forward` needs a ``torch.Generator`` and got none.

    Example:
        >>> enc = RandomizedSmoothing(sigma=0.25, then="poisson")
        >>> g = torch.Generator().manual_seed(0)
        >>> enc(torch.rand(5, 1, 8, 8, generator=g), 3, generator=g).shape
        torch.Size([3, 5, 1, 8, 8])
        >>> enc.is_stochastic, RandomizedSmoothing(0.0).is_stochastic
        (True, False)
    """

    def __init__(
        self, sigma: float, then: Then = "direct", gain: float = 1.0, grad: Grad = "sum"
    ) -> None:
        super().__init__()
        self.gain = _check_gain(gain)
        self.grad: Grad = _check_grad(grad)
        self._sigma = _check_sigma(sigma)
        self._then: Then = _check_then(then)
        self._update_flags()

    @property
    def sigma(self) -> float:
        """Noise standard deviation (validated on assignment)."""
        return self._sigma

    @sigma.setter
    def sigma(self, value: float) -> None:
        self._sigma = _check_sigma(value)
        self._update_flags()

    @property
    def then(self) -> Then:
        """The coding after the noise, ``"direct"`` or ``"poisson"`` (validated)."""
        return self._then

    @then.setter
    def then(self, value: Then) -> None:
        self._then = _check_then(value)
        self._update_flags()

    def _update_flags(self) -> None:
        self.is_stochastic = self._sigma > 0 or self._then == "poisson"
        self.is_static = not self.is_stochastic  # sigma = 0 with direct coding

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, then={self.then!r}, gain={self.gain}, grad={self.grad!r}"

    def forward(
        self, x: torch.Tensor, num_steps: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return randomized_smoothing(
            x,
            num_steps,
            sigma=self.sigma,
            generator=generator,
            then=self.then,
            gain=self.gain,
            grad=self.grad,
        )
