"""The interface each host framework implements."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

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

    def step_mode(self, net: nn.Module, neurons: list[nn.Module]) -> StepMode:
        """``"step"`` when one call of ``net`` is one time step, ``"sequence"`` when it
        consumes ``[T, N, ...]``, ``"unknown"`` when only running it can tell."""
        raise NotImplementedError

    def explicit_state(self, neurons: list[nn.Module]) -> bool:
        """Whether the neurons expect their state passed explicitly (not kept inside)."""
        return False

    def membrane(self, neuron: nn.Module) -> torch.Tensor:
        """The membrane potential of ``neuron`` after its last single step, ``[N, ...]``."""
        raise NotImplementedError

    def record_membrane(self, neuron: nn.Module, enable: bool) -> None:
        """Switch on/off recording of the membrane sequence in sequence mode."""

    def membrane_sequence(self, neuron: nn.Module) -> torch.Tensor | None:
        """The membrane sequence ``[T, N, ...]`` recorded in sequence mode, if any."""
        return None
