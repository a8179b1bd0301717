"""Poisson (Bernoulli rate) coding with a straight-through gradient (Sharmin et al., 2020)."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from robust_spikes._checks import check_num_steps
from robust_spikes._random import rand
from robust_spikes.encoders._base import Encoder

__all__ = ["Poisson", "poisson"]

Grad = Literal["sum", "mean"]
_GRADS = ("sum", "mean")


def _check_grad(grad: Any) -> Grad:
    if grad not in _GRADS:
        raise ValueError(f"grad must be one of {_GRADS}, got {grad!r}")
    return grad


def _check_gain(gain: Any) -> float:
    ok = isinstance(gain, int | float) and not isinstance(gain, bool)
    if not ok or not math.isfinite(gain) or gain <= 0:
        raise ValueError(f"gain must be a finite number > 0, got {gain!r}")
    return float(gain)


def _check_generator(generator: Any, who: str) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{who} draws its randomness from a torch.Generator, got generator="
            f"{type(generator).__name__} (SpikingClassifier passes its own; otherwise pass "
            "generator=torch.Generator().manual_seed(seed))"
        )
    return generator


def _straight_through(hard: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """``hard`` in the forward pass, the gradient of ``surrogate`` in the backward pass.

    ``surrogate - surrogate.detach()`` is exactly zero for finite values, so the result
    equals ``hard`` bit for bit; ``surrogate`` may broadcast against ``hard``, in which
    case autograd sums its gradient over the broadcast (time) dimension.
    """
    return hard + (surrogate - surrogate.detach())


def poisson(
    x: torch.Tensor,
    num_steps: int,
    *,
    generator: torch.Generator,
    gain: float = 1.0,
    grad: Grad = "sum",
    signed: bool = False,
) -> torch.Tensor:
    """Bernoulli (Poisson rate) spikes with a straight-through gradient.

    The forward pass draws, independently per step and element,
    ``s_t = 1[U_t < clamp(gain * x, 0, 1)]`` with ``U_t ~ Uniform[0, 1)`` from
    ``generator``, the rate coding of Sharmin et al., "Inherent adversarial robustness
    of deep spiking neural networks: effects of discrete input encoding and non-linear
    activations", ECCV 2020. With ``signed=True`` (inputs normalised to [-1, 1]) the
    spikes are ``s_t = sign(x) * 1[U_t < clamp(gain * |x|, 0, 1)]``.

    Sampling has no derivative (snnTorch's ``spikegen.rate`` returns an exactly zero
    gradient, so attacks through it silently do nothing). The backward pass here is the
    straight-through estimator of Sharmin et al.: each step's spikes are treated as the
    expected spike ``E[s_t] = gain * x``, so ``d s_t / d x = gain`` per step, the chain
    rule through the gain included. The clamp of the rate to [0, 1] is passed straight
    through as well: the gradient is ``gain`` also where the rate saturates, at ``x = 0``,
    ``x = 1`` or ``gain * x > 1``, so attacks starting from saturated pixels still move
    them. With ``grad="sum"`` the gradient reaching ``x`` is the sum over steps of the
    step gradients, ``dL/dx = gain * sum_t dL/ds_t`` (the papers' choice); with
    ``grad="mean"`` it is their mean, ``dL/dx = gain / num_steps * sum_t dL/ds_t``. The
    two differ by the constant ``num_steps``: irrelevant to sign attacks (FGSM, PGD),
    relevant to step sizes of APGD, L2 attacks and EOT averaging.

    Args:
        x: intensities, in [0, 1] (or [-1, 1] with ``signed=True``); values outside
            are clamped for the rate, not for the gradient.
        num_steps: number of time steps ``T`` (a positive int).
        generator: source of the uniform draws (keyword-only, required).
        gain: rate multiplier, a finite number > 0 (``p = clamp(gain * x, 0, 1)``).
        grad: ``"sum"`` or ``"mean"``, how step gradients combine (see above).
        signed: emit ``-1`` spikes for negative inputs.

    Returns:
        Spikes with values in {0, 1} ({-1, 0, 1} when signed), of ``x``'s dtype.

    Shape:
        x: ``[N, ...]``; returns ``[num_steps, N, ...]``.

    Raises:
        ValueError: bad ``num_steps``, ``gain`` or ``grad``.
        TypeError: ``generator`` is not a ``torch.Generator``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.tensor([[0.0, 1.0]], requires_grad=True)
        >>> s = poisson(x, 4, generator=g)
        >>> s[:, 0].tolist()
        [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
        >>> s.sum().backward()
        >>> x.grad
        tensor([[4., 4.]])
    """
    num_steps = check_num_steps(num_steps)
    gain = _check_gain(gain)
    grad = _check_grad(grad)
    generator = _check_generator(generator, "poisson")
    u = rand((num_steps, *x.shape), generator, device=x.device, dtype=x.dtype)
    with torch.no_grad():
        rate = (x.abs() if signed else x) * gain
        hard = (u < rate.clamp(0.0, 1.0)).to(x.dtype)
        if signed:
            hard = hard * torch.sign(x)
    scale = gain if grad == "sum" else gain / num_steps
    return _straight_through(hard, x * scale)


class Poisson(Encoder):
    """Poisson (Bernoulli rate) coding with a straight-through gradient.

    Sharmin et al., ECCV 2020: at each step ``s_t = 1[U_t < gain * x]``; the gradient is
    passed straight through the sampling and the clamp to the pixel, ``gain`` per step,
    summed (``grad="sum"``) or averaged (``grad="mean"``) over time. See :func:`poisson`
    for the exact definition. Stochastic: the draws come from the ``generator`` passed
    to :meth:`forward` (a :class:`~robust_spikes.SpikingClassifier` passes its own), so
    evaluations should use EOT and multi-sample votes.

    Args:
        gain: rate multiplier, a finite number > 0.
        grad: ``"sum"`` or ``"mean"``.
        signed: emit ``sign(x)`` spikes for inputs in [-1, 1].

    Shape:
        x: ``[N, ...]``; returns ``[num_steps, N, ...]``.

    Raises:
        ValueError: bad ``gain`` or ``grad`` (at construction), bad ``num_steps``.
        TypeError: :meth:`forward` called without a ``torch.Generator``.

    Example:
        >>> enc = Poisson(gain=0.5)
        >>> s = enc(torch.ones(2, 1, 8, 8), 16, generator=torch.Generator().manual_seed(0))
        >>> s.shape, sorted(s.unique().tolist())
        (torch.Size([16, 2, 1, 8, 8]), [0.0, 1.0])
    """

    is_stochastic = True

    def __init__(self, gain: float = 1.0, grad: Grad = "sum", signed: bool = False) -> None:
        super().__init__()
        self.gain = _check_gain(gain)
        self.grad: Grad = _check_grad(grad)
        self.signed = bool(signed)

    def extra_repr(self) -> str:
        return f"gain={self.gain}, grad={self.grad!r}, signed={self.signed}"

    def forward(
        self, x: torch.Tensor, num_steps: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        generator = _check_generator(generator, type(self).__name__)
        return poisson(
            x, num_steps, generator=generator, gain=self.gain, grad=self.grad, signed=self.signed
        )
