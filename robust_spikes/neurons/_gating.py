"""StoG: stochastic gating of a host neuron's output spikes.

Ding et al., "Enhancing the robustness of spiking neural networks with stochastic
gating mechanisms", AAAI 2024. After a spiking layer, each spike passes with a learnable
probability: ``s~[t] = s[t] * m[t]``, ``m ~ Bernoulli(p)`` per sample and step.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from robust_spikes._adapters import NeuronAdapter
from robust_spikes._random import rand
from robust_spikes.frameworks import Host, host_of
from robust_spikes.neurons.functional import concrete_gate

__all__ = ["StochasticGate"]

GateMode = Literal["sample", "mean", "off"]
_MODES = ("sample", "mean", "off")


class StochasticGate(NeuronAdapter, nn.Module):
    """Gate a host neuron's output spikes with learnable Bernoulli masks (StoG).

    ``out = s * m`` with ``m ~ Bernoulli(p)`` drawn per sample and per step,
    ``p = clamp(rho, p_min, 1)`` per neuron, ``rho`` learnable (initialised to 1). The
    spikes get the mask as gradient; ``rho`` gets the gradient of the Concrete relaxation
    with ``temperature`` driven by the same noise
    (:func:`~robust_spikes.neurons.functional.concrete_gate`).

    The gate is random in eval mode as in training (the defence is random at test time,
    so evaluations must use EOT and several prediction samples). ``mode="mean"`` makes
    it deterministic with the expected value ``s * p``; ``mode="off"`` passes spikes
    through. Randomness comes from ``generator``, which
    :class:`~robust_spikes.SpikingClassifier` sets to its own generator on every call.

    Works around any neuron of snnTorch or SpikingJelly (every family the classifier
    drives: snnTorch's ``Leaky`` to ``RSynaptic``; SpikingJelly's ``BaseNode`` family,
    ``SimpleLIFNode``/``SimpleIFNode``, the PSN family and ``GatedLIFNode``), or around
    another adapter: it needs nothing of the neuron but its output spikes (the tensor,
    or the first item of a tuple) and whether they are one step ``[N, *F]`` or a
    sequence ``[T, N, *F]`` (SpikingJelly's multi-step mode), where it draws a mask per
    step. It is called like its host and answers the host's other attributes and
    methods (``init_leaky()``, ``reset_mem()``, ``v_threshold``, ...).

    Args:
        host: the neuron whose spikes are gated.
        p_min: lower clamp of the keep probability (StoG: 0.1).
        temperature: temperature of the Concrete relaxation (StoG: 0.5).
        mode: ``"sample"``, ``"mean"`` or ``"off"``.
        shape: feature shape ``[*F]``; default: taken from the first input.

    Shape:
        As the host.

    Raises:
        ValueError: ``p_min`` outside (0, 1], ``temperature`` <= 0, unknown ``mode``.

    Example:
        >>> import snntorch as snn
        >>> gate = StochasticGate(snn.Leaky(beta=0.5, init_hidden=True), shape=(4,))
        >>> with torch.no_grad():
        ...     _ = gate.rho.fill_(0.5)
        >>> out = gate(torch.full((1000, 4), 2.0))  # every neuron spikes
        >>> 0.45 < out.mean().item() < 0.55
        True
    """

    uses_generator = True

    def __init__(
        self,
        host: nn.Module,
        *,
        p_min: float = 0.1,
        temperature: float = 0.5,
        mode: GateMode = "sample",
        shape: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        if not (isinstance(host, nn.Module)):
            raise TypeError(f"host must be a neuron module, got {type(host).__name__}")
        if not 0.0 < p_min <= 1.0:
            raise ValueError(f"p_min must be in (0, 1], got {p_min!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.host = host
        self._framework: Host | None = host_of(host)
        if self._framework is not None:
            self._unforwarded = self._framework.unforwarded
        self.p_min, self.temperature, self.mode = float(p_min), float(temperature), mode
        self.rho = nn.Parameter(torch.ones(tuple(shape)) if shape is not None else torch.empty(0))
        self.generator = torch.Generator().manual_seed(0)

    @property
    def is_stochastic(self) -> bool:
        return self.mode == "sample"

    @property
    def p(self) -> torch.Tensor:
        """The keep probability ``clamp(rho, p_min, 1)`` per neuron."""
        return self.rho.clamp(self.p_min, 1.0)

    def membrane_module(self) -> nn.Module:
        host = self.host
        return host.membrane_module() if isinstance(host, NeuronAdapter) else host

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        incoming = state_dict.get(prefix + "rho")
        if isinstance(incoming, torch.Tensor) and self.rho.numel() == 0:
            self.rho.data = torch.empty_like(incoming, device=self.rho.device)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.host(*args, **kwargs)
        spikes = out[0] if isinstance(out, tuple) else out
        gated = self.gate(spikes)
        return (gated, *out[1:]) if isinstance(out, tuple) else gated

    def gate(self, spikes: torch.Tensor) -> torch.Tensor:
        """Apply the gate to spikes ``[N, *F]`` (or ``[T, N, *F]`` in multi-step mode)."""
        features = spikes.shape[2:] if self._multi_step() else spikes.shape[1:]
        if self.rho.numel() == 0:
            with torch.no_grad():
                self.rho.data = torch.ones(features, device=spikes.device, dtype=spikes.dtype)
        if self.mode == "off":
            return spikes
        if self.mode == "mean":
            return spikes * self.p
        uniform = rand(spikes.shape, self.generator, device=spikes.device, dtype=spikes.dtype)
        mask = concrete_gate(self.p, uniform, self.temperature)
        return spikes * mask

    def _multi_step(self) -> bool:
        """Whether the host's output is a whole sequence ``[T, N, *F]`` (asked of its
        framework; a module of no known framework is taken as one step per call)."""
        return self._framework is not None and self._framework.time_major(self.host)

    def extra_repr(self) -> str:
        shape = tuple(self.rho.shape) if self.rho.numel() else "lazy"
        return (
            f"p_min={self.p_min}, temperature={self.temperature}, mode={self.mode!r}, shape={shape}"
        )
