"""SpikingJelly 2.0 (``activation_based``): neuron discovery, reset, step modes.

State lives in ``MemoryModule`` memories. ``functional.reset_net`` caches the list of
modules to reset per network, so neurons swapped in later are missed; we call
``reset()`` on every ``MemoryModule`` found at call time instead.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from spikingjelly.activation_based import base, neuron
from torch import nn

from robust_spikes._adapters import NeuronAdapter
from robust_spikes.frameworks._base import (
    Host,
    StepMode,
    ThresholdDynamics,
    adapter_base,
    threshold_refusal,
)

# Neurons whose surrogate gradient is switched off in eval(): SpikingJelly fires them
# through surrogate.heaviside when not training, so an attack (run in eval mode by
# torchattacks) would get no input gradient at all.
_EVAL_HEAVISIDE = ("OTTTLIFNode", "SLTTLIFNode", "ComplementaryLIFNode")
# Spiking neurons outside BaseNode, checked to run in the step modes they support.
_OTHER_NEURONS = ("SimpleBaseNode", "PSN", "MaskedPSN", "SlidingPSN", "GatedLIFNode")
# Neurons that keep no membrane potential the readout could use.
_NO_MEMBRANE = ("PSN", "MaskedPSN", "SlidingPSN")


def _neuron_types() -> tuple[type, ...]:
    return (neuron.BaseNode, *(getattr(neuron, name) for name in _OTHER_NEURONS))


def _mode_of(m: nn.Module) -> str:
    """A module's step mode; ``'m'`` for multi-step-only modules (PSN has no attribute)."""
    supported = getattr(m, "supported_step_mode", None)
    if callable(supported) and tuple(supported()) == ("m",):
        return "m"
    mode = getattr(m, "step_mode", None)
    return mode if isinstance(mode, str) else "s"


class SpikingJellyHost(Host):
    name = "spikingjelly"
    spiking_readout = "count"  # its tutorials train on the output layer's firing rate

    def is_neuron(self, m: nn.Module) -> bool:
        return isinstance(adapter_base(m), _neuron_types())

    def stateful(self, net: nn.Module) -> list[nn.Module]:
        # NonSpikingBaseNode (an output layer) keeps its last membrane in a plain attribute.
        return [
            m for m in net.modules() if isinstance(m, base.MemoryModule | neuron.NonSpikingBaseNode)
        ]

    def check_supported(self, neurons: list[nn.Module]) -> None:
        for m in neurons:
            kind = type(adapter_base(m)).__name__
            if kind in _EVAL_HEAVISIDE:
                raise TypeError(
                    f"unsupported SpikingJelly neuron {kind}: SpikingJelly fires it through "
                    "surrogate.heaviside, which has no gradient, when not training, so attacks "
                    "(run in eval mode) get no input gradient; use a neuron that keeps its "
                    "surrogate gradient in eval mode, such as LIFNode or ParametricLIFNode"
                )

    def reset(self, stateful: list[nn.Module]) -> None:
        for m in stateful:
            if isinstance(m, neuron.NonSpikingBaseNode):
                v = vars(m).get("v")  # set afresh by every forward; only drop its graph
                if isinstance(v, torch.Tensor):
                    m.v = v.detach()
                continue
            m.reset()  # type: ignore[operator]

    def detach(self, stateful: list[nn.Module]) -> None:
        # Not MemoryModule.detach(): its in-place detach_() fails on a memory that is a
        # view (the last step of a multi-step run).
        for m in stateful:
            memories: dict[str, Any] = getattr(m, "_memories", {})
            for key, value in memories.items():
                if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                    memories[key] = value.detach()

    def step_mode(self, net: nn.Module, neurons: list[nn.Module]) -> StepMode:
        modes = ["m" if self.time_major(m) else "s" for m in neurons]  # PSN: always 'm'
        if len(set(modes)) > 1:
            counts = {mode: modes.count(mode) for mode in set(modes)}
            raise ValueError(
                f"net mixes SpikingJelly step modes among its neurons ({counts}); set one "
                "mode with spikingjelly.activation_based.functional.set_step_mode(net, 'm')"
            )
        return "sequence" if set(modes) == {"m"} else "step"

    def declared_steps(self, net: nn.Module) -> list[tuple[str, int]]:
        # SpikingJelly's zoo models, PSN, MaskedPSN and GatedLIFNode are built for T steps.
        return [
            (f"module {name!r} ({type(m).__name__})" if name else type(m).__name__, m.T)
            for name, m in net.named_modules()
            if isinstance(getattr(m, "T", None), int) and not isinstance(m.T, bool)
        ]

    def no_membrane(self, neuron_: nn.Module, sequence: bool) -> str | None:
        node = adapter_base(neuron_)
        kind = type(node).__name__
        if kind in _NO_MEMBRANE or not hasattr(node, "v"):
            return f"{kind} keeps no membrane potential"
        if sequence and not isinstance(node, neuron.BaseNode) and neuron_ is node:
            return f"{kind} does not record its membrane potential in multi-step mode"
        return None

    def membrane(self, node: nn.Module) -> torch.Tensor:
        if isinstance(node, NeuronAdapter):
            node = node.membrane_module()
        v = node.v
        assert isinstance(v, torch.Tensor)
        return v

    def record_membrane(self, node: nn.Module, enable: bool) -> None:
        if isinstance(node, NeuronAdapter):
            node = node.membrane_module()
        setattr(node, "store_v_seq", enable)  # noqa: B010 (property of BaseNode)

    def membrane_sequence(self, node: nn.Module) -> torch.Tensor | None:
        if isinstance(node, NeuronAdapter):
            node = node.membrane_module()
        v_seq = getattr(node, "v_seq", None)
        return v_seq if isinstance(v_seq, torch.Tensor) else None

    def spike_slot(self, node: nn.Module) -> tuple[nn.Module, str, Literal[">", ">="]]:
        # surrogate_function(h - v_threshold), forward heaviside(x) = (x >= 0)
        return adapter_base(node), "surrogate_function", ">="

    # ------------------------------------------------------------- for neuron adapters
    # reset_net / detach_net call any ``reset`` / ``detach``, set_step_mode sets any
    # ``step_mode``: an adapter answering them for its node would be reset twice, logged
    # as "not a MemoryModule", or get a step mode its node does not have.
    unforwarded = frozenset({"reset", "detach", "step_mode"})

    def time_major(self, node: nn.Module) -> bool:
        return _mode_of(node if isinstance(node, base.StepModule) else adapter_base(node)) == "m"

    def threshold_dynamics(self, node: nn.Module) -> type[ThresholdDynamics]:
        kind = type(node).__name__
        dynamics = _DYNAMICS.get(kind)
        if dynamics is None or type(node) is not getattr(neuron, kind, None):
            raise threshold_refusal("SpikingJelly", _DYNAMICS, kind)
        return dynamics

    def adapter_shell(self) -> type[nn.Module]:
        return SpikingJellyShell


# ------------------------------------------------------------- threshold dynamics
# SpikingJelly 2.0's reference steps (functional.neuron.*_step and _ops.reset.voltage),
# arithmetic in the same order, so that with the node's own threshold they are equal bit
# for bit: charge H[t], fire surrogate(H - Vth) (forward heaviside x >= 0), reset hard
# ``S * v_reset + (1 - S) * H`` or soft ``H - S * Vth`` (S detached if detach_reset).
class _SpikingJellyDynamics(ThresholdDynamics):
    state_names: tuple[str, ...] = ("v",)

    def base_threshold(self) -> torch.Tensor:
        return torch.tensor(float(self.host.v_threshold))

    def spike_function(self) -> Any:
        return self.host.surrogate_function

    def _v_reset(self) -> float:
        v_reset = self.host.v_reset
        return 0.0 if v_reset is None else float(v_reset)

    def initial(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (torch.full_like(x, self._v_reset()),)

    def _reset(self, h: torch.Tensor, spikes: torch.Tensor, threshold: torch.Tensor) -> Any:
        host: Any = self.host
        gate = spikes.detach() if host.detach_reset else spikes
        if host.v_reset is None:
            return h - gate * threshold
        return gate * host.v_reset + (1.0 - gate) * h

    def discharge(
        self,
        state: tuple[torch.Tensor, ...],
        u: torch.Tensor,
        spikes: torch.Tensor,
        threshold: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        return spikes, (*state[:-1], self._reset(state[-1], spikes, threshold))

    def _leak(self, v: torch.Tensor, x: torch.Tensor, tau: Any) -> torch.Tensor:
        reset_value = self._v_reset()
        if self.host.decay_input:
            return v + (x - (v - reset_value)) / tau
        return v - (v - reset_value) / tau + x


class _IF(_SpikingJellyDynamics):
    def charge(
        self, state: tuple[torch.Tensor, ...], x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h = state[0] + x
        return h, (h,)


class _LIF(_SpikingJellyDynamics):
    def charge(
        self, state: tuple[torch.Tensor, ...], x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h = self._leak(state[0], x, self.host.tau)
        return h, (h,)


class _PLIF(_SpikingJellyDynamics):
    def charge(
        self, state: tuple[torch.Tensor, ...], x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        v, q, reset_value = state[0], self.host.w.sigmoid(), self._v_reset()
        if self.host.decay_input:
            h = v + (x - (v - reset_value)) * q
        else:
            h = v - (v - reset_value) * q + x
        return h, (h,)


class _KLIF(_SpikingJellyDynamics):
    """KLIF fires on ``F = relu(k H)``; it resets ``F`` (or ``F / k`` with scale_reset)."""

    def charge(
        self, state: tuple[torch.Tensor, ...], x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        f = torch.relu(self.host.k * self._leak(state[0], x, self.host.tau))
        return f, (f,)

    def discharge(
        self,
        state: tuple[torch.Tensor, ...],
        u: torch.Tensor,
        spikes: torch.Tensor,
        threshold: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        if self.host.scale_reset:
            k = self.host.k
            return spikes, (self._reset(u / k, spikes, threshold / k),)
        return spikes, (self._reset(u, spikes, threshold),)


class _CUBALIF(_SpikingJellyDynamics):
    state_names = ("c", "v")  # SpikingJelly's memories are (v, c); the shell maps them

    def initial(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.zeros_like(x), torch.full_like(x, self._v_reset())

    def charge(
        self, state: tuple[torch.Tensor, ...], x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        c, v = state
        c = c * self.host.c_decay + x
        h = v * self.host.v_decay + c
        return h, (c, h)


_DYNAMICS: dict[str, type[ThresholdDynamics]] = {
    "IFNode": _IF,
    "LIFNode": _LIF,
    "ParametricLIFNode": _PLIF,
    "KLIFNode": _KLIF,
    "CUBALIFNode": _CUBALIF,
}


# -------------------------------------------------------------------- adapter shell
class SpikingJellyShell(base.MemoryModule):
    """An adapter that is a SpikingJelly ``MemoryModule`` in its host node's step mode.

    Its state is memories named as the host's (``v``, ...) plus ``vth`` and ``step``, so
    ``functional.reset_net``, ``set_step_mode`` and ``detach_net`` treat it as a node.
    ``store_v_seq=True`` records the post-reset potential ``[T, N, *F]`` in ``v_seq``
    as SpikingJelly nodes do.
    """

    host: Any
    v_seq: torch.Tensor | None
    _adapter_step: Any

    def _shell_setup(self, host: nn.Module, dynamics: type[ThresholdDynamics]) -> None:
        self._dynamics = dynamics
        self._state_names = dynamics.state_names
        self.step_mode = getattr(host, "step_mode", "s")
        self.store_v_seq = False
        self.v_seq = None
        for name in self._state_names:
            self.register_memory(name, None)
        self.register_memory("vth", None)
        self.register_memory("step", 0)

    def reset(self) -> None:
        super().reset()
        self.v_seq = None

    def materialize_states(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], step_mode: str
    ) -> tuple[Any, ...]:
        x = inputs[0] if step_mode == "s" else inputs[0][0]
        *state, vth, step = states
        if any(not isinstance(s, torch.Tensor) or s.shape != x.shape for s in state):
            state = list(self._dynamics(self.host).initial(x))  # new run or batch shape
            vth = torch.full_like(x, float(self.host.v_threshold))
            step = 0
        return (*state, vth, step)

    def single_step_functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[torch.Tensor, ...], tuple[Any, ...]]:
        x, (*state, vth, step) = inputs[0], states
        dynamics = self._dynamics(self.host)
        spike, state, vth = self._adapter_step(dynamics, x, tuple(state), vth, step)
        if self.store_v_seq:
            v = state[-1]
            previous = self.v_seq if step > 0 and self.v_seq is not None else v[None][:0]
            self.v_seq = torch.cat([previous, v[None]])
        return (spike,), (*state, vth, step + 1)

    def multi_step_functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[torch.Tensor, ...], tuple[Any, ...]]:
        spikes = []
        for x in inputs[0].unbind(0):  # unbind: indexing x[t] makes backward O(T^2)
            (spike,), states = self.single_step_functional_forward((x,), states)
            spikes.append(spike)
        return (torch.stack(spikes),), states
