"""Rate-based gradient modes: BPTR and RGA (METHODS.md section 7).

Both keep the spiking forward pass bit-for-bit and replace the backward pass of every
spiking layer by a rate-based one with no temporal unrolling: the gradient reaching a
layer's spikes at step ``t`` is passed to that layer's input current at step ``t``,
multiplied by a per-neuron factor computed from the whole call (all ``T`` steps):

* BPTR (backward pass through rate): ``1[mean firing rate over the T steps > 0]``;
* RGA (rate gradient approximation): ``r'(xbar)`` of the time-mean input current
  ``xbar``, see :func:`rga_derivative`.

Mechanism: while the mode is active, a forward hook on every neuron (adapters count as
one) returns the host's own spikes, unchanged in value, re-attached to the neuron's input
current (its first positional argument) through :class:`_RateBackward`; tuple outputs
(snnTorch ``output=True``: ``(spk, mem)``) keep every other element untouched, so a
membrane readout still differentiates the output layer's membrane the host's way. The
host's own path from the spikes back into the membrane is cut, so no gradient flows
through the membrane recurrence of a hidden layer. The per-neuron statistics of one call
(spike sum, or input-current sum, and the number of steps) are accumulated during the
forward pass and read when the backward pass runs, when the call is complete. The
:class:`~robust_spikes.SpikingClassifier` tells the mode when a call starts, so every call
gets fresh statistics and EOT-style sums of several forward passes differentiate each pass
with its own. Hooks record nothing while autograd is off (e.g. the classifier's
no-grad probe call). A neuron called more than once per classifier call (weight sharing)
pools all its calls.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from robust_spikes.frameworks._base import adapter_base
from robust_spikes.gradients._modes import MODES, Classifier, GradientMode
from robust_spikes.gradients._surrogates import Surrogate

__all__ = ["BPTR", "RGA", "leak_and_scale", "rga_derivative"]


def rga_derivative(x: torch.Tensor, leak: torch.Tensor | float, gamma: float = 0.2) -> torch.Tensor:
    """The RGA surrogate of the rate derivative, ``r'(x)``, elementwise.

    ``r'(x) = gamma`` on ``[0, 1 - tau]``, ``(1 - gamma + gamma * tau) / (tau + 1)`` on
    ``(1 - tau, 2]`` and ``0`` elsewhere, with ``tau = leak`` the membrane leak factor
    (1: no leak) and ``x`` the time-mean input current in units of the threshold.

    Args:
        x: time-mean input currents (threshold 1).
        leak: leak factor(s) ``tau`` in [0, 1], broadcastable to ``x``.
        gamma: slope below the firing onset.

    Returns:
        A tensor like ``x``.

    Shape:
        ``x``: any shape, floating (time-mean current in units of the threshold);
        ``leak``: a float or a tensor broadcastable to ``x``; returns the shape and dtype
        of ``x``.

    Example:
        >>> rga_derivative(torch.tensor([-1.0, 0.25, 1.0, 3.0]), leak=0.5)
        tensor([0.0000, 0.2000, 0.6000, 0.0000])
    """
    tau = torch.as_tensor(leak, dtype=x.dtype, device=x.device)
    above = (1 - gamma + gamma * tau) / (tau + 1)
    below = torch.full_like(x, gamma)
    out = torch.where((x > 1 - tau) & (x <= 2), above, torch.zeros_like(x))
    return torch.where((x >= 0) & (x <= 1 - tau), below, out)


def leak_and_scale(neuron: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(tau, scale)`` of a neuron for RGA: its leak factor and the input scale.

    ``scale`` maps the neuron's input current to the threshold-1 current that
    :func:`rga_derivative` takes: ``xbar_eff = scale * xbar``, and by the chain rule the
    backward factor is ``r'(xbar_eff) * scale``. Leak factors: snnTorch ``beta`` clamped
    to [0, 1] (``Leaky``, ``Synaptic``, ``Alpha``, ``Lapicque``, ``RLeaky``, ...);
    SpikingJelly ``IFNode`` 1, ``LIFNode`` ``1 - 1/tau``, ``ParametricLIFNode``
    ``1 - sigmoid(w)``. The scale is ``1 / threshold`` (snnTorch ``threshold``,
    SpikingJelly ``v_threshold``), times ``1 - tau`` for SpikingJelly ``decay_input=True``
    (the membrane then receives ``x / tau``, so the neuron fires in the steady state once
    the current reaches the threshold). For adapters, the framework neuron's parameters
    (base threshold) are used.

    Raises:
        TypeError: a neuron with no known leak factor.
    """
    base = adapter_base(neuron)
    kind = type(base).__name__
    anchor = next(base.parameters(), None)
    if hasattr(base, "v_threshold"):  # SpikingJelly
        from spikingjelly.activation_based import neuron as sj

        if isinstance(base, sj.ParametricLIFNode):
            tau = 1 - base.w.detach().sigmoid()
        elif isinstance(base, sj.LIFNode):
            tau = torch.tensor(1 - 1 / float(base.tau))
        elif isinstance(base, sj.IFNode):
            tau = torch.tensor(1.0)
        else:
            raise TypeError(
                f"mode 'rga' has no leak factor for SpikingJelly neuron {kind}; supported: "
                "IFNode, LIFNode, ParametricLIFNode"
            )
        scale = 1 / torch.as_tensor(base.v_threshold, dtype=tau.dtype).detach()
        if getattr(base, "decay_input", False):
            scale = scale * (1 - tau)
    else:  # snnTorch
        beta = getattr(base, "beta", None)
        if beta is None:
            raise TypeError(
                f"mode 'rga' has no leak factor for snnTorch neuron {kind}: it has no 'beta'"
            )
        tau = torch.as_tensor(beta).detach().clamp(0, 1)
        threshold = torch.as_tensor(getattr(base, "threshold", 1.0)).detach()
        scale = 1 / threshold.to(tau.dtype)
    if anchor is not None:
        tau, scale = tau.to(anchor.device), scale.to(anchor.device)
    return tau, scale


class _Record:
    """One neuron's statistics over one classifier call, read once at backward time."""

    def __init__(self, neuron: nn.Module, rga: bool, gamma: float) -> None:
        self.neuron, self.rga, self.gamma = neuron, rga, gamma
        self.total: torch.Tensor | None = None  # spike sum (BPTR) or current sum (RGA)
        self.count = 0
        self._factor: torch.Tensor | None = None

    def add(self, current: torch.Tensor, spikes: torch.Tensor, sequence: bool) -> None:
        value = (current if self.rga else spikes).detach()
        step = value.sum(0) if sequence else value
        self.total = step.clone() if self.total is None else self.total + step
        self.count += value.shape[0] if sequence else 1
        self._factor = None

    def factor(self) -> torch.Tensor:
        """The per-neuron backward factor over the call, ``[N, ...]`` (cached)."""
        if self._factor is None:
            assert self.total is not None
            if self.rga:
                tau, scale = leak_and_scale(self.neuron)
                xbar = self.total / self.count
                tau, scale = _per_channel(tau, xbar), _per_channel(scale, xbar)
                self._factor = rga_derivative(xbar * scale, tau, self.gamma) * scale
            else:
                self._factor = (self.total > 0).to(self.total.dtype)
        return self._factor


def _per_channel(p: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar or per-channel ([C]) neuron parameter broadcast against ``[N, C, ...]``."""
    p = p.to(like.dtype)
    if p.dim() == 1 and like.dim() > 2 and p.numel() == like.shape[1]:
        return p.view(1, -1, *([1] * (like.dim() - 2)))
    return p


class _RateBackward(torch.autograd.Function):
    """Forward: the spikes as they are. Backward: to the current, ``grad * factor``."""

    @staticmethod
    def forward(ctx: Any, current: torch.Tensor, spikes: torch.Tensor, record: _Record) -> Any:
        ctx.record = record
        return spikes.detach().clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        factor = ctx.record.factor()  # [N, ...], broadcasts over a leading T as well
        return (grad * factor.to(grad.dtype)).to(grad.dtype), None, None


class _RateGradient(GradientMode):
    """Shared machinery of BPTR and RGA: per-neuron hooks and per-call records."""

    name = ""
    rga = False
    gamma = 0.2

    def __init__(self, model: Classifier, surrogate: Surrogate | None = None) -> None:
        if surrogate is not None:
            raise ValueError(
                f"mode {self.name!r} takes no surrogate, got surrogate={surrogate!r}; for a "
                "surrogate use mode='bptt'"
            )
        super().__init__(model, None)
        self._handles: list[RemovableHandle] = []
        self._records: dict[int, _Record] = {}

    def install(self) -> None:
        model = self.model
        if model._use_compile:
            raise ValueError(
                f"mode {self.name!r} does not run under compile=True (its hooks record "
                "Python state per call); use a SpikingClassifier with compile=False"
            )
        if model._call_hook is not None:
            raise RuntimeError(f"{type(model).__name__} already has an active gradient mode")
        host = model._host
        neurons = host.neurons(model.net)
        sequence = host.step_mode(model.net, neurons) == "sequence"
        if self.rga:
            for m in neurons:
                leak_and_scale(m)  # unsupported neurons fail here, before any change
        for m in neurons:
            self._handles.append(m.register_forward_hook(self._hook(m, sequence)))
        model._call_hook = self._begin_call

    def restore(self) -> None:
        self.model._call_hook = None
        while self._handles:
            self._handles.pop().remove()
        self._records = {}

    def _begin_call(self, x: torch.Tensor) -> None:
        self._records = {}  # records of earlier calls live on in their graphs
        return None

    def _hook(self, neuron: nn.Module, sequence: bool) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], out: Any) -> Any:
            if not torch.is_grad_enabled():
                return None
            if not args or not isinstance(args[0], torch.Tensor):
                raise TypeError(
                    f"mode {self.name!r} needs the input current of {type(module).__name__} "
                    "as its first positional argument"
                )
            current = args[0]
            spikes = out[0] if isinstance(out, tuple) else out
            if not isinstance(spikes, torch.Tensor) or spikes.shape != current.shape:
                raise TypeError(
                    f"mode {self.name!r} needs spikes shaped like the input current of "
                    f"{type(module).__name__}, got {tuple(current.shape)} in and "
                    f"{getattr(spikes, 'shape', type(spikes).__name__)} out"
                )
            record = self._records.get(id(neuron))
            if record is None:
                record = self._records[id(neuron)] = _Record(neuron, self.rga, self.gamma)
            record.add(current, spikes, sequence)
            new = _RateBackward.apply(current, spikes, record)
            return (new, *out[1:]) if isinstance(out, tuple) else new

        return hook


class BPTR(_RateGradient):
    """Backward pass through rate: ``grad_in(t) = grad_out(t) * 1[rate > 0]`` per neuron.

    The rate is the neuron's mean firing rate over the ``T`` steps of the current call, so
    the factor is ``[N, ...]`` (one value per neuron and sample), shared by all ``T``
    steps; no gradient flows through the membrane recurrence. The forward pass is the
    model's own, bit-for-bit. See the module docstring for the mechanism.

    Raises:
        ValueError: a ``surrogate`` is given; on enter, a classifier with
            ``compile=True``.

    Example:
        >>> import snntorch as snn
        >>> from robust_spikes import SpikingClassifier
        >>> net = nn.Sequential(nn.Linear(4, 8), snn.Leaky(beta=0.9, init_hidden=True),
        ...                     nn.Linear(8, 2),
        ...                     snn.Leaky(beta=0.9, init_hidden=True, output=True))
        >>> model = SpikingClassifier(net, num_steps=4)
        >>> x = torch.rand(3, 4, requires_grad=True)
        >>> with model.gradient("bptr"):
        ...     model(x).sum().backward()
        >>> x.grad.shape
        torch.Size([3, 4])
        >>> MODES["bptr"].__name__
        'BPTR'
    """

    name = "bptr"


class RGA(_RateGradient):
    """Rate gradient approximation: ``grad_in(t) = grad_out(t) * r'(xbar) * scale``.

    ``xbar`` is the neuron's time-mean input current over the call (``[N, ...]``, one
    value per neuron and sample, so the factor is shared by all ``T`` steps), ``r'`` is
    :func:`rga_derivative` with ``gamma = 0.2`` and the neuron's leak factor, and
    ``scale`` (:func:`leak_and_scale`) expresses the current in units of the threshold
    (``1 / threshold``; for SpikingJelly ``decay_input=True`` also ``1 - tau``). The
    forward pass is the model's own, bit-for-bit.

    Raises:
        ValueError: a ``surrogate`` is given; on enter, a classifier with
            ``compile=True``.
        TypeError: on enter, a neuron with no known leak factor.

    Example:
        >>> import snntorch as snn
        >>> from robust_spikes import SpikingClassifier
        >>> net = nn.Sequential(nn.Linear(4, 8), snn.Leaky(beta=0.9, init_hidden=True),
        ...                     nn.Linear(8, 2),
        ...                     snn.Leaky(beta=0.9, init_hidden=True, output=True))
        >>> model = SpikingClassifier(net, num_steps=4)
        >>> x = torch.rand(3, 4, requires_grad=True)
        >>> with model.gradient("rga"):
        ...     model(x).sum().backward()
        >>> x.grad.shape
        torch.Size([3, 4])
        >>> MODES["rga"].__name__
        'RGA'
    """

    name = "rga"
    rga = True


MODES.update({"bptr": BPTR, "rga": RGA})
