"""snnTorch 1.0: neuron discovery, per-instance recursive reset, state styles.

snnTorch keeps state in non-persistent buffers of each neuron (``mem``, ``syn``, ...)
and re-initialises it silently only when the input shape changes, so two calls on
the same batch share state unless it is reset. ``snntorch.utils.reset`` inspects the
direct children only and resets class-wide instance lists; we reset every neuron of
the given network, by instance, recursively.
"""

from __future__ import annotations

import torch
from torch import nn

from robust_spikes.frameworks._base import Host, StepMode

# Neurons that consume a whole [T, N, ...] sequence per call and keep no state.
_SEQUENCE_NEURONS = ("StateLeaky", "LinearLeaky", "LeakyParallel")


class SnnTorchHost(Host):
    name = "snntorch"

    def __init__(self) -> None:
        import snntorch

        self._neuron_type = snntorch.SpikingNeuron

    def neurons(self, net: nn.Module) -> list[nn.Module]:
        return [
            m
            for m in net.modules()
            if isinstance(m, self._neuron_type) or type(m).__name__ in _SEQUENCE_NEURONS
        ]

    def stateful(self, net: nn.Module) -> list[nn.Module]:
        return [m for m in net.modules() if isinstance(m, self._neuron_type)]

    def check_supported(self, neurons: list[nn.Module]) -> None:
        for m in neurons:
            kind = type(m).__name__
            if kind in _SEQUENCE_NEURONS:
                raise TypeError(
                    f"unsupported snnTorch neuron {kind}: it processes a whole sequence per "
                    "call and SpikingClassifier drives networks step by step; use Leaky, "
                    "Synaptic, Alpha, Lapicque, RLeaky or RSynaptic"
                )
            if not callable(getattr(m, "reset_mem", None)):
                raise TypeError(
                    f"unsupported snnTorch neuron {kind}: it has no reset_mem(), so its state "
                    "cannot be reset between calls"
                )

    def reset(self, stateful: list[nn.Module]) -> None:
        for m in stateful:
            m.reset_mem()  # type: ignore[operator]

    def step_mode(self, net: nn.Module, neurons: list[nn.Module]) -> StepMode:
        # init_hidden=True: one call of net is one step. Otherwise the user's forward
        # either loops over time itself (tutorial style) or is one step with state in
        # and out; only its signature and its output can tell.
        if all(getattr(m, "init_hidden", False) for m in neurons):
            return "step"
        return "unknown"

    def explicit_state(self, neurons: list[nn.Module]) -> bool:
        return not all(getattr(m, "init_hidden", False) for m in neurons)

    def membrane(self, neuron: nn.Module) -> torch.Tensor:
        mem = neuron.mem
        assert isinstance(mem, torch.Tensor)
        return mem
