"""The surrogate catalogue: exact spikes forward, a chosen derivative backward.

An attack on a spiking network differentiates through the Heaviside step ``H(x)``,
``x = u - Vth``, which has no useful derivative. Each surrogate here replaces ``H'(x)``
in the backward pass only; the forward pass is the host's own step, with the host's tie
at ``x = 0`` (snnTorch fires on ``x > 0``, SpikingJelly on ``x >= 0``), so the network
computes exactly what it computes without us.

A robust-looking number measured with one fixed surrogate (usually the one the model was
trained with) is weak evidence: Ding et al. (SNN-RAT, NeurIPS 2022) and Özdenizci &
Legenstein ("Adversarially robust spiking neural networks through conversion", TMLR
2024) show that attacks over an ensemble of surrogates find adversarials a single one
misses. :func:`ensemble` returns Özdenizci & Legenstein's members.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

__all__ = [
    "PDSG",
    "SURROGATES",
    "Exponential",
    "ExponentialD",
    "Rectangular",
    "SpikeFunction",
    "StraightThrough",
    "Surrogate",
    "Tie",
    "Triangle",
    "ensemble",
    "spike",
]

Tie = Literal[">", ">="]
_TIES = (">", ">=")


class Surrogate:
    """A surrogate derivative ``dS/dx`` of the spike ``S = H(x)``, ``x = u - Vth``.

    Subclasses implement :meth:`derivative`; :meth:`spike_function` turns it into the
    callable a neuron fires through. :data:`SURROGATES` lists the built-in subclasses.

    Shape:
        :meth:`derivative`: ``x``: any shape, floating (``u - Vth``, in membrane-potential
        units); returns the same shape and dtype (per unit of membrane potential).

    Example:
        >>> class Flat(Surrogate):
        ...     name = "flat"
        ...     def derivative(self, x):
        ...         return torch.full_like(x, 0.5)
        >>> x = torch.tensor([-1.0, 1.0], requires_grad=True)
        >>> Flat().spike_function(">")(x).sum().backward()
        >>> x.grad
        tensor([0.5000, 0.5000])
    """

    name: ClassVar[str] = ""

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate ``dS/dx`` at ``x`` (a detached tensor), same shape and dtype."""
        raise NotImplementedError

    def spike_function(self, tie: Tie = ">") -> SpikeFunction:
        """A spike function firing as the host does, with this surrogate's backward.

        Args:
            tie: ``">"`` fires on ``x > 0`` (snnTorch), ``">="`` on ``x >= 0``
                (SpikingJelly).

        Returns:
            A :class:`SpikeFunction` (an ``nn.Module`` without parameters).

        Raises:
            ValueError: ``tie`` is neither ``">"`` nor ``">="``.
        """
        return SpikeFunction(self, tie)


def _check_gamma(gamma: Any) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, int | float):
        raise ValueError(f"gamma must be a positive finite number, got {gamma!r}")
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a positive finite number, got {gamma!r}")
    return float(gamma)


@dataclass(frozen=True)
class _Shaped(Surrogate):
    """A surrogate with one shape parameter ``gamma``, validated on construction."""

    gamma: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "gamma", _check_gamma(self.gamma))


@dataclass(frozen=True)
class Triangle(_Shaped):
    """Triangle (piecewise-linear, PCW): ``max(0, gamma - |x|) / gamma**2``.

    Unit area; ``gamma`` is the half-width. A member of the SNN-RAT / Özdenizci &
    Legenstein surrogate ensemble (Ding et al., NeurIPS 2022; Özdenizci & Legenstein,
    TMLR 2024).

    Args:
        gamma: half-width (> 0), in the units of the membrane potential.

    Raises:
        ValueError: ``gamma`` not a positive finite number.

    Shape:
        :meth:`derivative`: ``x``: any shape, floating (``u - Vth``, in membrane-potential
        units); returns the same shape and dtype (per unit of membrane potential).

    Example:
        >>> Triangle(gamma=2.0).derivative(torch.tensor([-3.0, 0.0, 1.0]))
        tensor([0.0000, 0.5000, 0.2500])
    """

    name: ClassVar[str] = "triangle"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (self.gamma - x.abs()).clamp(min=0) / self.gamma**2


@dataclass(frozen=True)
class Rectangular(_Shaped):
    """Rectangular: ``1[|x| < gamma / 2] / gamma`` (unit area, width ``gamma``).

    A member of the SNN-RAT / Özdenizci & Legenstein surrogate ensemble (Ding et al.,
    NeurIPS 2022; Özdenizci & Legenstein, TMLR 2024).

    Args:
        gamma: width (> 0), in the units of the membrane potential.

    Raises:
        ValueError: ``gamma`` not a positive finite number.

    Shape:
        :meth:`derivative`: ``x``: any shape, floating (``u - Vth``, in membrane-potential
        units); returns the same shape and dtype (per unit of membrane potential).

    Example:
        >>> Rectangular(gamma=0.5).derivative(torch.tensor([-0.3, 0.0, 0.25]))
        tensor([0., 2., 0.])
    """

    name: ClassVar[str] = "rectangular"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs() < self.gamma / 2).to(x.dtype) / self.gamma


@dataclass(frozen=True)
class Exponential(_Shaped):
    """Exponential: ``exp(-gamma * |x|)`` (peak 1 at the threshold).

    A member of the SNN-RAT / Özdenizci & Legenstein surrogate ensemble (Ding et al.,
    NeurIPS 2022; Özdenizci & Legenstein, TMLR 2024).

    Args:
        gamma: decay rate (> 0) per unit of membrane potential.

    Raises:
        ValueError: ``gamma`` not a positive finite number.

    Shape:
        :meth:`derivative`: ``x``: any shape, floating (``u - Vth``, in membrane-potential
        units); returns the same shape and dtype (per unit of membrane potential).

    Example:
        >>> Exponential(gamma=1.0).derivative(torch.tensor([0.0]))
        tensor([1.])
    """

    name: ClassVar[str] = "exponential"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-self.gamma * x.abs())


@dataclass(frozen=True)
class ExponentialD(Exponential):
    """Exponential-D (dampened): ``0.3 * exp(-gamma * |x|)``.

    A member of the SNN-RAT / Özdenizci & Legenstein surrogate ensemble (Ding et al.,
    NeurIPS 2022; Özdenizci & Legenstein, TMLR 2024).

    Args:
        gamma: decay rate (> 0) per unit of membrane potential.

    Raises:
        ValueError: ``gamma`` not a positive finite number.

    Shape:
        :meth:`derivative`: ``x``: any shape, floating (``u - Vth``, in membrane-potential
        units); returns the same shape and dtype (per unit of membrane potential).

    Example:
        >>> ExponentialD(gamma=1.0).derivative(torch.tensor([0.0]))
        tensor([0.3000])
    """

    name: ClassVar[str] = "exponential-d"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return 0.3 * super().derivative(x)


@dataclass(frozen=True)
class StraightThrough(Surrogate):
    """Straight-through estimator: ``dS/dx = 1`` everywhere.

    A member of the Özdenizci & Legenstein surrogate ensemble (TMLR 2024).

    Shape:
        :meth:`derivative`: ``x``: any shape, floating (``u - Vth``, in membrane-potential
        units); returns the same shape and dtype (per unit of membrane potential).

    Example:
        >>> StraightThrough().derivative(torch.tensor([-5.0, 0.0, 5.0]))
        tensor([1., 1., 1.])
    """

    name: ClassVar[str] = "straight-through"

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x)


@dataclass(frozen=True)
class PDSG(Surrogate):
    """Potential-dependent surrogate gradient (PDSG).

    The Normal density with mean ``sigma / 2`` and standard deviation ``sigma``:
    ``exp(-(x - sigma/2)**2 / (2 sigma**2)) / (sigma * sqrt(2 pi))``, where ``sigma``
    is the standard deviation of the membrane potential of the layer at that step,
    computed (detached, population std) over the whole tensor ``x`` of the call, and 1
    where that is 0. The surrogate thus follows the spread of the potentials an attacker
    actually meets instead of a width fixed at training time (Lun et al., "Towards
    effective and sparse adversarial attack on spiking neural networks via breaking
    invisible surrogate gradients", CVPR 2025).

    Shape:
        :meth:`derivative`: ``x``: any shape, floating (``u - Vth`` of one layer at one
        step, membrane units; ``sigma`` is taken over all of its elements); returns the
        same shape and dtype. :meth:`sigma` returns a 0-dim tensor.

    Example:
        >>> PDSG().derivative(torch.tensor([0.5, 0.5]))  # sigma = 0 -> 1: N(0.5, 1) at 0.5
        tensor([0.3989, 0.3989])
    """

    name: ClassVar[str] = "pdsg"

    @staticmethod
    def sigma(x: torch.Tensor) -> torch.Tensor:
        """The std of ``x`` over all its elements (detached, 0-dim), 1 if that is 0."""
        sigma = x.detach().std(correction=0) if x.numel() > 0 else x.new_zeros(())
        sigma = torch.where(sigma > 0, sigma, torch.ones_like(sigma))
        return sigma.clamp(min=torch.finfo(x.dtype).tiny)  # a finite density

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        sigma = self.sigma(x)
        z = (x - sigma / 2) / sigma
        return torch.exp(-0.5 * z * z) / (sigma * math.sqrt(2 * math.pi))


def spike(x: torch.Tensor, surrogate: Surrogate, tie: Tie = ">") -> torch.Tensor:
    """Spikes ``H(x)`` with the host's tie; backward ``grad * surrogate.derivative(x)``.

    Computed as ``hard + (x - x.detach()) * derivative(x).detach()``, the second term
    being exactly 0 forward, so the value is the hard step bit for bit, and the function
    is plain tensor algebra that ``torch.compile`` and ``torch.func`` trace. The
    derivative is only evaluated when ``x`` requires a gradient.

    Args:
        x: ``u - Vth``, any shape, a floating dtype.
        surrogate: the backward pass.
        tie: ``">"`` fires on ``x > 0`` (snnTorch), ``">="`` on ``x >= 0`` (SpikingJelly).

    Returns:
        Spikes in {0, 1} with the shape and dtype of ``x``.

    Shape:
        ``x``: any shape, floating (membrane units); returns the same shape and dtype,
        values in {0, 1}.

    Example:
        >>> x = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
        >>> spike(x, Triangle(gamma=1.0), ">=").detach()
        tensor([0., 1., 1.])
    """
    hard = (x >= 0 if tie == ">=" else x > 0).to(x.dtype)
    if not (x.requires_grad and torch.is_grad_enabled()):
        return hard
    slope = surrogate.derivative(x.detach())
    # (x - x.detach()) is +0 for finite x; nan_to_num keeps the sum exact even when the
    # membrane or the slope is not finite (0 * inf), zeroing the gradient there instead.
    return hard + ((x - x.detach()) * slope).nan_to_num(nan=0.0)


class SpikeFunction(nn.Module):
    """``S = H(x)`` with the host's tie forward and a :class:`Surrogate` backward.

    What a neuron calls as its spike function (snnTorch's ``spike_grad``, SpikingJelly's
    ``surrogate_function``). A module without parameters or buffers, so that it can sit
    where SpikingJelly keeps its surrogate module; the output has the dtype of ``x``.

    Args:
        surrogate: the backward pass.
        tie: ``">"`` (snnTorch: fires on ``x > 0``) or ``">="`` (SpikingJelly).

    Raises:
        ValueError: ``tie`` is neither ``">"`` nor ``">="``.
        TypeError: ``surrogate`` is not a :class:`Surrogate`.

    Shape:
        ``x``: any shape, floating (``u - Vth``, membrane units); returns spikes in {0, 1}
        of the same shape and dtype.

    Example:
        >>> x = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
        >>> spikes = Triangle(gamma=1.0).spike_function(">=")(x)
        >>> spikes.detach()
        tensor([0., 1., 1.])
        >>> spikes.sum().backward()
        >>> x.grad
        tensor([0.5000, 1.0000, 0.5000])
    """

    def __init__(self, surrogate: Surrogate, tie: Tie = ">") -> None:
        super().__init__()
        if not isinstance(surrogate, Surrogate):
            raise TypeError(
                f"surrogate must be a robust_spikes.gradients.Surrogate, got "
                f"{type(surrogate).__name__}"
            )
        if tie not in _TIES:
            raise ValueError(f"tie must be one of {_TIES}, got {tie!r}")
        self.surrogate = surrogate
        self.tie: Tie = tie

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spike(x, self.surrogate, self.tie)

    def extra_repr(self) -> str:
        return f"{self.surrogate!r}, tie={self.tie!r}"


SURROGATES: dict[str, type[Surrogate]] = {
    cls.name: cls
    for cls in (Triangle, Rectangular, Exponential, ExponentialD, StraightThrough, PDSG)
}


def ensemble() -> list[Surrogate]:
    """The surrogate members of Özdenizci & Legenstein's attack ensemble (TMLR 2024).

    Triangle ``gamma`` in {0.25, 0.5, 1, 2, 3}, rectangular in {0.25, 0.5, 1, 2, 4},
    exponential and exponential-D in {0.5, 1, 2}, and straight-through: 17 surrogates.
    Their ensemble also uses BPTR and the ANN twin, which are gradient modes rather
    than surrogates (METHODS.md section 7).

    Returns:
        A new list of 17 :class:`Surrogate` instances.

    Example:
        >>> members = ensemble()
        >>> len(members), members[0]
        (17, Triangle(gamma=0.25))
    """
    return [
        *(Triangle(gamma) for gamma in (0.25, 0.5, 1.0, 2.0, 3.0)),
        *(Rectangular(gamma) for gamma in (0.25, 0.5, 1.0, 2.0, 4.0)),
        *(Exponential(gamma) for gamma in (0.5, 1.0, 2.0)),
        *(ExponentialD(gamma) for gamma in (0.5, 1.0, 2.0)),
        StraightThrough(),
    ]
