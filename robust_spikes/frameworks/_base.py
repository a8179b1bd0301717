"""The interface each host framework implements."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from robust_spikes._adapters import NeuronAdapter

StepMode = Literal["step", "sequence", "unknown"]


class Host:
    """What the classifier needs from a host framework.

    Subclasses live one per framework file. All methods take the module tree as it is at
    call time, so neurons swapped in after construction are found.
    """

    name: str = ""

    def neurons(self, net: nn.Module) -> list[nn.Module]:
        """Spiking neurons of ``net`` in ``net.modules()`` order."""
        raise NotImplementedError

    def stateful(self, net: nn.Module) -> list[nn.Module]:
        """Every module of ``net`` that keeps state between calls (neurons and others)."""
        raise NotImplementedError

    def check_supported(self, neurons: list[nn.Module]) -> None:
        """Raise ``TypeError`` naming the first neuron type that cannot be wrapped."""

    def reset(self, stateful: list[nn.Module]) -> None:
        """Reset the state of ``stateful`` (from :meth:`stateful`) so no graph survives."""
        raise NotImplementedError

    def detach(self, stateful: list[nn.Module]) -> None:
        """Cut the autograd history of the state of ``stateful``, keeping its values.

        Truncated back-propagation through time: the next steps continue from the same
        state, but their backward pass stops here. The default detaches every tensor
        buffer and tensor attribute; frameworks with other state containers override it.
        """
        for m in stateful:
            for name, buf in m._buffers.items():
                if buf is not None and buf.grad_fn is not None:
                    m._buffers[name] = buf.detach()
            for name, value in list(vars(m).items()):
                if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                    setattr(m, name, value.detach())

    def step_mode(self, net: nn.Module, neurons: list[nn.Module]) -> StepMode:
        """``"step"`` when one call of ``net`` is one time step, ``"sequence"`` when it
        consumes ``[T, N, ...]``, ``"unknown"`` when only running it can tell."""
        raise NotImplementedError

    def explicit_state(self, neurons: list[nn.Module]) -> bool:
        """Whether the neurons expect their state passed explicitly (not kept inside)."""
        return False

    def state_count(self, neurons: list[nn.Module]) -> int:
        """Number of state tensors the neurons pass explicitly, step by step, together."""
        return 0

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        """The value an explicit state starts from before the first step."""
        return x.new_zeros(0)

    def declared_steps(self, net: nn.Module) -> list[tuple[str, int]]:
        """``(module name, T)`` of modules of ``net`` built for a fixed number of steps."""
        return []

    def output_is_membrane(self, neuron: nn.Module) -> bool:
        """Whether ``neuron`` returns its membrane potential instead of spikes."""
        return False

    def no_membrane(self, neuron: nn.Module, sequence: bool) -> str | None:
        """Why the readout cannot read the membrane of ``neuron`` (``None`` if it can).

        ``sequence``: whether the neuron runs a whole ``[T, N, ...]`` sequence per call.
        """
        return None

    def membrane(self, neuron: nn.Module) -> torch.Tensor:
        """The membrane potential of ``neuron`` after its last single step, ``[N, ...]``."""
        raise NotImplementedError

    def record_membrane(self, neuron: nn.Module, enable: bool) -> None:
        """Switch on/off recording of the membrane sequence in sequence mode."""

    def membrane_sequence(self, neuron: nn.Module) -> torch.Tensor | None:
        """The membrane sequence ``[T, N, ...]`` recorded in sequence mode, if any."""
        return None

    def spike_slot(self, neuron: nn.Module) -> tuple[nn.Module, str, Literal[">", ">="]]:
        """Where ``neuron`` keeps the function it fires through, and the tie at threshold.

        Returns ``(module, attribute, tie)``: ``getattr(module, attribute)(u - Vth)`` gives
        the spikes, with tie ``">"`` when they fire on ``u - Vth > 0`` and ``">="`` on
        ``u - Vth >= 0``. For an adapter, the module is the framework neuron under it,
        whose function the adapter fires through.
        """
        raise NotImplementedError


def adapter_base(m: nn.Module) -> nn.Module:
    """The framework neuron under any adapters (``m`` itself if it is none)."""
    return m.base_host() if isinstance(m, NeuronAdapter) else m


def neurons_of(net: nn.Module, is_neuron: Callable[[nn.Module], bool]) -> list[nn.Module]:
    """Neurons of ``net`` in ``modules()`` order, not looking inside adapters."""
    found: list[nn.Module] = []

    def visit(m: nn.Module) -> None:
        if is_neuron(m):
            found.append(m)
            if isinstance(m, NeuronAdapter):
                return
        for child in m.children():
            visit(child)

    visit(net)
    return found
