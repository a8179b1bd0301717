"""The interface each host framework implements."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import nn

from robust_spikes._adapters import NeuronAdapter

StepMode = Literal["step", "sequence", "unknown"]


class ThresholdDynamics:
    """One step of a host neuron, split where its firing threshold enters.

    The interface through which framework-agnostic neuron adapters (TA-LIF,
    :class:`robust_spikes.neurons.ThresholdAdaptation`) run a framework's neuron with a
    threshold of their own. Each framework file implements it per supported neuron type
    with that framework's arithmetic, so that with the threshold held at the neuron's
    own the step equals the neuron's exactly. A step is::

        u, state = charge(state, x, threshold)        # integrate, before firing
        raw = spike_function()(u - new_threshold)     # the host's spike function
        spikes, state = discharge(state, u, raw, new_threshold)   # output and reset

    ``threshold`` is the previous step's threshold (a delayed reset subtracts it);
    ``state`` is a tuple of tensors named :attr:`state_names`, the membrane last.
    An instance wraps one host neuron and reads its parameters at every call.
    """

    state_names: tuple[str, ...] = ("mem",)

    def __init__(self, host: Any) -> None:
        self.host = host

    def base_threshold(self) -> torch.Tensor:
        """The neuron's own threshold ``theta_0`` (a tensor)."""
        raise NotImplementedError

    def spike_function(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The function the neuron fires through, ``f(u - threshold)``, as set now."""
        raise NotImplementedError

    def initial(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The state of a fresh run for one step's input ``x`` ``[N, *F]``."""
        raise NotImplementedError

    def charge(
        self, state: tuple[torch.Tensor, ...], x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``(u, state)``: the potential compared with the threshold, and the state."""
        raise NotImplementedError

    def discharge(
        self,
        state: tuple[torch.Tensor, ...],
        u: torch.Tensor,
        spikes: torch.Tensor,
        threshold: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """``(output spikes, state after the reset)`` from the raw spikes ``f(u - Vth)``."""
        raise NotImplementedError


class Host:
    """What the classifier needs from a host framework.

    Subclasses live one per framework file. All methods take the module tree as it is at
    call time, so neurons swapped in after construction are found.
    """

    name: str = ""
    # How the framework's own tutorials read a network whose last layer spikes: snnTorch
    # trains on the output membrane (tutorials 5-7), SpikingJelly on the firing rate.
    spiking_readout: Literal["membrane", "count"] = "membrane"

    def neurons(self, net: nn.Module) -> list[nn.Module]:
        """Spiking neurons of ``net`` in ``net.modules()`` order."""
        return neurons_of(net, self.is_neuron)

    def is_neuron(self, m: nn.Module) -> bool:
        """Whether ``m`` is one of this framework's neurons (or an adapter around one)."""
        raise NotImplementedError

    # ------------------------------------------------------------- for neuron adapters
    #: Attribute names this framework's own tree walkers probe on every module (e.g.
    #: SpikingJelly's ``reset_net`` calls any ``reset``): an adapter must not answer
    #: them on behalf of the neuron it wraps.
    unforwarded: frozenset[str] = frozenset()

    def time_major(self, neuron: nn.Module) -> bool:
        """Whether one call of ``neuron`` takes and returns a whole ``[T, N, ...]``."""
        return False

    def threshold_dynamics(self, neuron: nn.Module) -> type[ThresholdDynamics]:
        """The :class:`ThresholdDynamics` of ``neuron``'s type.

        Raises:
            TypeError: the neuron's equations have no threshold to adapt as HoSNN does
                (the message names it and lists the supported neurons).
        """
        raise TypeError(f"{self.name} neurons support no threshold adaptation")

    def adapter_shell(self) -> type[nn.Module]:
        """Base class that makes a stateful adapter look like this framework's neurons.

        It stores the adapter's state where the framework keeps neuron state, resets it
        the framework's way, and takes the framework's calling convention (arguments,
        outputs, step modes). The adapter class combines it with its own step,
        ``self._adapter_step(dynamics, x, state, threshold, step) -> (spikes, state,
        threshold)`` where ``dynamics`` is ``self._dynamics(self.host)``; the adapter calls
        ``self._shell_setup(host, dynamics_class)`` once, before it sets ``host``.
        """
        raise NotImplementedError

    def stateful(self, net: nn.Module) -> list[nn.Module]:
        """Every module of ``net`` that keeps state between calls (neurons and others)."""
        raise NotImplementedError

    def check_supported(self, neurons: list[nn.Module]) -> None:
        """Raise ``TypeError`` naming the first neuron type that cannot be wrapped."""

    def reset(self, stateful: list[nn.Module]) -> None:
        """Reset the state of ``stateful`` (from :meth:`stateful`) so no graph survives."""
        raise NotImplementedError

    def forget(self, stateful: list[nn.Module]) -> None:
        """Reset ``stateful`` to the state a newly built neuron has: no batch shape.

        A compiled graph guards on the shapes of the state it reads, so a state that keeps
        the previous call's batch shape recompiles the graph for every new batch size.
        The default is :meth:`reset`, for frameworks whose reset keeps no shape.
        """
        self.reset(stateful)

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


def threshold_refusal(framework: str, supported: Iterable[str], kind: str) -> TypeError:
    """The error for a neuron that TA-LIF cannot adapt: names it and the supported ones."""
    return TypeError(
        f"ThresholdAdaptation (TA-LIF, HoSNN) supports the {framework} neurons "
        f"{', '.join(supported)}, got {kind}: its step has no leaky membrane with one "
        "firing threshold to adapt as HoSNN does, or robust-spikes does not reproduce it; "
        "use 'stochastic-gate', which wraps any neuron"
    )


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
