"""Time-to-first-spike (latency) coding with a documented surrogate gradient."""

from __future__ import annotations

import math
from typing import Any

import torch

from robust_spikes._checks import check_num_steps
from robust_spikes.encoders._base import Encoder
from robust_spikes.encoders._poisson import _straight_through

__all__ = ["Latency", "latency"]


def _check_threshold(threshold: Any) -> float:
    ok = isinstance(threshold, int | float) and not isinstance(threshold, bool)
    if not ok or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return float(threshold)


def latency(x: torch.Tensor, num_steps: int, *, threshold: float = 0.0) -> torch.Tensor:
    """Linear time-to-first-spike code: one spike per input, brighter inputs earlier.

    Forward pass (deterministic): each input ``x_i >= threshold`` spikes exactly once,
    at step ``t_i = round(tau_i)`` with the continuous spike time
    ``tau_i = (1 - clamp(x_i, 0, 1)) * (num_steps - 1)``, rounded half to even
    (``torch.round``). So ``x = 1`` spikes at step 0 and ``x = 0`` at the last step
    ``num_steps - 1`` (with the default ``threshold = 0`` every input in [0, 1] spikes);
    inputs below ``threshold`` never spike. This is the linear code of snnTorch's
    ``spikegen.latency(..., linear=True, normalize=True)`` up to rounding; snnTorch's
    and SpikingJelly's latency encoders have no gradient path, so attacks through them
    silently do nothing.

    Backward pass (a surrogate: the forward pass is piecewise constant in ``x``, its
    true gradient is zero almost everywhere). The one-hot spike train is relaxed to the
    triangular kernel of half-width one step around the continuous spike time,
    ``s~_t = max(0, 1 - |t - tau_i|)`` (linear interpolation of the spike between the two
    neighbouring steps; the rounding is passed straight through), and differentiated:
    ``d s_t / d x_i = -(num_steps - 1) * k(t - tau_i)``, where ``k(d) = sign(d)`` for
    ``0 < |d| < 1``, ``sign(d) / 2`` for ``|d| = 1``, and ``0`` otherwise. At the kinks
    (``tau_i`` an integer, which includes ``x_i = 0`` and ``x_i = 1``) this is the
    symmetric derivative: ``+(num_steps - 1) / 2`` on the step before the spike and
    ``-(num_steps - 1) / 2`` on the step after it (the one that exists, at the ends), so
    saturated inputs get a nonzero gradient. Positive before ``tau_i``, negative after
    it: brightening an input moves its spike earlier. The clamp of ``x`` to [0, 1] is
    passed straight through; inputs below ``threshold`` get zero gradient (no spike to
    move), and with ``num_steps = 1`` the gradient is zero (the code carries no timing).

    Args:
        x: intensities in [0, 1] (values outside are clamped for the spike time).
        num_steps: number of time steps ``T`` (a positive int).
        threshold: inputs below it emit no spike; a finite number.

    Returns:
        Spikes in {0, 1} of ``x``'s dtype, at most one per input.

    Shape:
        x: ``[N, ...]``; returns ``[num_steps, N, ...]``.

    Raises:
        ValueError: bad ``num_steps`` or ``threshold``.

    Example:
        >>> latency(torch.tensor([[1.0, 0.5, 0.0]]), 5)[:, 0].T
        tensor([[1., 0., 0., 0., 0.],
                [0., 0., 1., 0., 0.],
                [0., 0., 0., 0., 1.]])
    """
    num_steps = check_num_steps(num_steps)
    threshold = _check_threshold(threshold)
    with torch.no_grad():
        tau = (1 - x.clamp(0.0, 1.0)) * (num_steps - 1)
        steps = torch.arange(num_steps, device=x.device, dtype=x.dtype)
        steps = steps.view(num_steps, *([1] * x.dim()))
        fires = (x >= threshold).to(x.dtype)
        hard = (steps == tau.round()).to(x.dtype) * fires
        d = steps - tau
        near = d.abs()
        k = torch.sign(d) * ((near < 1).to(x.dtype) + 0.5 * (near == 1).to(x.dtype))
        slope = k * (fires * -(num_steps - 1))
    return _straight_through(hard, slope * x)


class Latency(Encoder):
    """Linear time-to-first-spike coding with a triangular surrogate gradient.

    Each input spikes once, at step ``round((1 - x) * (num_steps - 1))``: ``x = 1`` at
    the first step, ``x = 0`` at the last; inputs below ``threshold`` stay silent. The
    forward pass has no useful derivative; the backward pass is the documented surrogate
    of :func:`latency` (a triangular relaxation of the spike time, one step wide).
    Deterministic, and the sequence is not the input itself.

    Args:
        threshold: inputs below it emit no spike; a finite number (default 0: every
            input in [0, 1] spikes).

    Shape:
        x: ``[N, ...]``; returns ``[num_steps, N, ...]``.

    Raises:
        ValueError: bad ``threshold`` (at construction) or ``num_steps``.

    Example:
        >>> s = Latency()(torch.rand(2, 1, 8, 8), 6)
        >>> s.shape, bool((s.sum(0) == 1).all())
        (torch.Size([6, 2, 1, 8, 8]), True)
    """

    is_stochastic = False
    is_static = False

    def __init__(self, threshold: float = 0.0) -> None:
        super().__init__()
        self.threshold = _check_threshold(threshold)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}"

    def forward(
        self, x: torch.Tensor, num_steps: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return latency(x, num_steps, threshold=self.threshold)
