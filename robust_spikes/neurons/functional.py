"""Pure step maths of the robust neurons: threshold adaptation and stochastic gating.

The modules in :mod:`robust_spikes.neurons` hold parameters and state and call these.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["adapt_threshold", "concrete_gate", "fire", "relaxed_gate"]


def adapt_threshold(
    threshold: torch.Tensor,
    signal: torch.Tensor,
    signature: torch.Tensor,
    theta_v: torch.Tensor,
) -> torch.Tensor:
    """One step of HoSNN's homeostatic threshold (Geng & Li, TMLR 2025).

    ``Vth[t] = Vth[t-1] + theta_v * (u[t] - u*[t])`` with ``theta_v`` clamped at 0, where
    ``u`` is the membrane potential (or the recorded trace) and ``u*`` the neural dynamic
    signature of the same step.

    Shape:
        threshold, signal: ``[N, *F]``; signature, theta_v: ``[*F]`` (broadcast).

    Example:
        >>> adapt_threshold(torch.ones(1, 2), torch.tensor([[2.0, 0.0]]),
        ...                 torch.tensor([1.0, 1.0]), torch.tensor([0.5, -1.0]))
        tensor([[1.5000, 1.0000]])
    """
    return threshold + theta_v.clamp(min=0) * (signal - signature)


def fire(
    surrogate: Callable[[torch.Tensor], torch.Tensor],
    membrane: torch.Tensor,
    threshold: torch.Tensor,
    base_threshold: torch.Tensor | float,
    *,
    detach_threshold: bool = False,
) -> torch.Tensor:
    """Spikes ``H(u - Vth)`` through the host's surrogate.

    By default the gradient flows through the adaptive threshold (the adaptive attack).
    With ``detach_threshold=True`` the forward value is the same but the backward pass is
    the surrogate at ``u - theta_0`` and nothing flows into ``Vth``: the gradient of
    HoSNN's published code, which ignores the threshold dynamics.

    Shape:
        membrane, threshold: ``[N, *F]``; returns spikes ``[N, *F]``.
    """
    if not detach_threshold:
        return surrogate(membrane - threshold)
    relaxed = surrogate(membrane - base_threshold)
    exact = surrogate((membrane - threshold).detach())
    return relaxed + (exact - relaxed).detach()


def concrete_gate(
    p: torch.Tensor, uniform: torch.Tensor, temperature: float = 0.5, eps: float = 1e-6
) -> torch.Tensor:
    """A Bernoulli(p) mask with the Concrete (Gumbel-sigmoid) relaxation's gradient.

    The forward value is the hard mask ``m = 1[U < p]``; the backward pass is that of
    ``sigmoid((logit p + log((1-U)/U)) / temperature)``, the relaxation driven by the
    same noise ``U``, so the sample and its gradient agree (Maddison et al. 2017; the
    gate of StoG, Ding et al., AAAI 2024).

    Shape:
        p: ``[*F]`` (broadcast); uniform: ``[N, *F]`` in [0, 1); returns ``[N, *F]``.

    Example:
        >>> concrete_gate(torch.tensor([1.0, 0.0]), torch.tensor([[0.3, 0.3]]))
        tensor([[1., 0.]])
    """
    soft = relaxed_gate(p, uniform, temperature, eps)
    hard = (uniform < p).to(soft.dtype)
    return hard + (soft - soft.detach())


def relaxed_gate(
    p: torch.Tensor, uniform: torch.Tensor, temperature: float = 0.5, eps: float = 1e-6
) -> torch.Tensor:
    """The Concrete relaxation ``sigmoid((logit p + log((1-U)/U)) / temperature)``.

    Tends to the hard mask ``1[U < p]`` as ``temperature -> 0``; :func:`concrete_gate`
    uses its gradient. ``p`` is clamped to ``[eps, 1-eps]`` inside the logit.

    Shape:
        p: ``[*F]`` (broadcast); uniform: ``[N, *F]``; returns ``[N, *F]`` in (0, 1).
    """
    logistic = torch.log1p(-uniform) - torch.log(uniform)
    return torch.sigmoid((torch.logit(p, eps=eps) + logistic) / temperature)
