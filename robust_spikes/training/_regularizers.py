"""Training regularisers: StoG's gate penalty and SNN-RAT's orthogonal retraction."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from robust_spikes.neurons._gating import StochasticGate

__all__ = ["GatePenalty", "OrthogonalRetraction", "retract"]

_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class GatePenalty:
    """StoG's penalty ``gamma / 2 * sum ||rho||^2`` on the stochastic gates (Ding et al.,
    AAAI 2024), with the gates frozen after ``freeze_after`` epochs.

    Pass it in ``regularizers`` of :func:`~robust_spikes.training.fit` (or ``hire``): the
    term is added to every update's loss, pulling the keep probabilities ``rho`` of every
    :class:`~robust_spikes.neurons.StochasticGate` down (more noise), against the data
    loss. Before each epoch ``e > freeze_after`` the ``rho`` parameters stop requiring
    gradients, so the optimiser leaves them alone (``fit`` restores ``requires_grad`` when
    it returns); the gates keep sampling. The paper: gamma = 5e-6, gates trained for the
    first 100 of 200 epochs.

    Args:
        gamma: penalty weight (>= 0), default 5e-6.
        freeze_after: number of epochs during which the gates train, or ``None`` (never
            frozen).

    Raises:
        ValueError: bad ``gamma`` or ``freeze_after``; from ``__call__``, a model with no
            stochastic gate.

    Shape:
        ``__call__(model)``: returns a 0-dim tensor (the penalty, in loss units) from the
        gates' ``rho`` parameters, each of the gate's ``shape``, values in [0, 1].

    Example:
        >>> import snntorch as snn
        >>> gate = StochasticGate(snn.Leaky(beta=0.9, init_hidden=True), shape=(3,))
        >>> GatePenalty(gamma=2.0)(nn.Sequential(gate))  # 2 / 2 * (1 + 1 + 1)
        tensor(3., grad_fn=<MulBackward0>)
    """

    gamma: float
    freeze_after: int | None

    def __init__(self, gamma: float = 5e-6, *, freeze_after: int | None = None) -> None:
        if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not gamma >= 0:
            raise ValueError(f"gamma must be a float >= 0, got {gamma!r}")
        if freeze_after is not None and (
            isinstance(freeze_after, bool)
            or not isinstance(freeze_after, numbers.Integral)
            or freeze_after < 0
        ):
            raise ValueError(f"freeze_after must be None or an int >= 0, got {freeze_after!r}")
        self.gamma = float(gamma)
        self.freeze_after = None if freeze_after is None else int(freeze_after)

    def __repr__(self) -> str:
        return f"GatePenalty(gamma={self.gamma}, freeze_after={self.freeze_after})"

    def __call__(self, model: nn.Module) -> torch.Tensor:
        """The penalty term, a scalar tensor."""
        rhos = [gate.rho for gate in _gates(model)]
        return 0.5 * self.gamma * torch.stack([rho.square().sum() for rho in rhos]).sum()

    def before_epoch(self, model: nn.Module, epoch: int) -> None:
        """Freeze (or unfreeze) ``rho`` for ``epoch`` (counting from 1)."""
        train = self.freeze_after is None or epoch <= self.freeze_after
        for gate in _gates(model):
            gate.rho.requires_grad_(train)


def _gates(model: nn.Module) -> list[StochasticGate]:
    gates = [m for m in model.modules() if isinstance(m, StochasticGate)]
    if not gates:
        raise ValueError(
            f"GatePenalty needs stochastic gates, but {type(model).__name__} has none; add "
            "them with rs.adapt(net, 'stochastic-gate')"
        )
    return gates


def retract(weight: torch.Tensor, beta: float) -> torch.Tensor:
    """One orthogonal retraction step ``W <- (1 + beta) W - beta W W^T W`` (out of place).

    ``weight`` of a convolution is taken as ``[out, in * k * k]``. For ``W = U S V^T`` the
    step maps each singular value ``s`` to ``(1 + beta) s - beta s^3``, whose stable fixed
    point is 1: repeated steps drive ``W W^T`` towards the identity (Cisse et al., Parseval
    networks, ICML 2017; used by SNN-RAT, Ding et al., NeurIPS 2022).

    Shape:
        ``weight``: ``[out, ...]``; the result has the same shape.

    Example:
        >>> retract(torch.eye(2) * 2, beta=0.1)  # s = 2 -> 1.1 * 2 - 0.1 * 8
        tensor([[1.4000, 0.0000],
                [0.0000, 1.4000]])
    """
    w = weight.reshape(weight.shape[0], -1)
    return ((1 + beta) * w - beta * (w @ w.T) @ w).reshape(weight.shape)


class OrthogonalRetraction:
    """SNN-RAT's orthogonal retraction after every optimiser step (Ding et al., NeurIPS 2022).

    For every ``nn.Linear`` and ``nn.Conv1d/2d/3d`` weight (a convolution's ``[out, in,
    k...]`` taken as ``[out, in * prod(k)]``), in place and keeping its shape:
    ``W <- (1 + beta) W - beta W W^T W`` (:func:`retract`). For a linear layer with more
    than ``max_rows`` rows, each step retracts a random ``row_fraction`` of its rows as a
    sub-matrix, drawn from ``generator`` (which ``fit`` saves in checkpoints).
    SNN-RAT combines it with FGSM-AT at 2/255. METHODS.md gives no ``beta``; ours, 1e-3,
    moves ``W W^T`` measurably towards the identity on the digits within a few epochs.

    Pass it in ``regularizers`` of :func:`~robust_spikes.training.fit` (or ``hire``).

    Args:
        beta: retraction strength, in (0, 1).
        row_fraction: share of rows retracted per step in large linear layers, in (0, 1].
        max_rows: linear layers with more rows than this are sampled.
        layers: the modules to retract (default every Linear and Conv of the model).
        generator: the row sampler's generator (default seeded with 0).

    Raises:
        ValueError: bad ``beta``, ``row_fraction`` or ``max_rows``.
        TypeError: a layer in ``layers`` that has no 2-d-able ``weight``.

    Example:
        >>> layer = nn.Linear(4, 3)
        >>> gram = lambda: (layer.weight @ layer.weight.T - torch.eye(3)).norm()
        >>> before = gram()
        >>> for _ in range(50):
        ...     OrthogonalRetraction(beta=0.1).after_step(layer)
        >>> bool(gram() < before)
        True
    """

    beta: float
    row_fraction: float
    max_rows: int
    layers: tuple[nn.Module, ...] | None
    generator: torch.Generator

    def __init__(
        self,
        beta: float = 1e-3,
        *,
        row_fraction: float = 0.3,
        max_rows: int = 200,
        layers: Sequence[nn.Module] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0 < beta < 1:
            raise ValueError(f"beta must be a float in (0, 1), got {beta!r}")
        if (
            isinstance(row_fraction, bool)
            or not isinstance(row_fraction, numbers.Real)
            or not 0 < row_fraction <= 1
        ):
            raise ValueError(f"row_fraction must be a float in (0, 1], got {row_fraction!r}")
        if isinstance(max_rows, bool) or not isinstance(max_rows, numbers.Integral) or max_rows < 1:
            raise ValueError(f"max_rows must be an int >= 1, got {max_rows!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if layers is not None:
            for layer in layers:
                w = getattr(layer, "weight", None)
                if not isinstance(w, torch.Tensor) or w.dim() < 2:
                    raise TypeError(
                        "layers must be modules with a weight of 2 or more dimensions, got "
                        f"{type(layer).__name__}"
                    )
        self.beta = float(beta)
        self.row_fraction = float(row_fraction)
        self.max_rows = int(max_rows)
        self.layers = None if layers is None else tuple(layers)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def __repr__(self) -> str:
        return (
            f"OrthogonalRetraction(beta={self.beta}, row_fraction={self.row_fraction}, "
            f"max_rows={self.max_rows})"
        )

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        """Retract the weights of ``model`` (or of ``layers``) in place."""
        layers: Any = self.layers
        if layers is None:
            layers = [m for m in model.modules() if isinstance(m, _WEIGHTED)]
        for layer in layers:
            weight = layer.weight
            rows = weight.shape[0]
            if isinstance(layer, nn.Linear) and rows > self.max_rows:
                k = math.ceil(self.row_fraction * rows)
                idx = torch.randperm(rows, generator=self.generator)[:k].to(weight.device)
                weight[idx] = retract(weight[idx], self.beta)
            else:
                weight.copy_(retract(weight, self.beta))
