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
from robust_spikes.frameworks._base import Host, StepMode, adapter_base, neurons_of
from robust_spikes.neurons.threshold import ThresholdAdaptation

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

    def __init__(self) -> None:
        self._types = _neuron_types()

    def neurons(self, net: nn.Module) -> list[nn.Module]:
        return neurons_of(net, lambda m: isinstance(adapter_base(m), self._types))

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
        modes = [
            _mode_of(m if isinstance(m, base.StepModule) else adapter_base(m)) for m in neurons
        ]
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


# ----------------------------------------------------------------------- adapters
class SpikingJellyThresholdAdaptation(ThresholdAdaptation, base.MemoryModule):
    """TA-LIF around a SpikingJelly ``IFNode``, ``LIFNode`` or ``ParametricLIFNode``.

    A ``MemoryModule`` of its own (SpikingJelly's IF/LIF nodes accept only float
    thresholds), in the host's step mode, reusing the host's ``tau``/``w``, reset rule
    (``v_reset``, ``detach_reset``) and surrogate. The charge follows SpikingJelly 2.0's
    reference step exactly; ``reset_net`` and ``set_step_mode`` work on it as on any node.
    ``store_v_seq=True`` records the post-reset potential as SpikingJelly does.
    """

    def __init__(self, host: Any, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self.step_mode = host.step_mode
        self.store_v_seq = False
        self.v_seq: torch.Tensor | None = None
        register = base.MemoryModule.register_memory
        register(self, "v", 0.0 if host.v_reset is None else float(host.v_reset))
        register(self, "vth", 0.0)
        register(self, "step", 0)

    @property
    def base_threshold(self) -> torch.Tensor:
        return torch.tensor(float(self.host.v_threshold))

    def reset(self) -> None:
        super().reset()
        self.v_seq = None

    def materialize_states(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], step_mode: str
    ) -> tuple[Any, ...]:
        x = inputs[0] if step_mode == "s" else inputs[0][0]
        v, vth, step = states
        if not isinstance(v, torch.Tensor) or v.shape != x.shape:  # new run or batch shape
            v_reset = self.host.v_reset
            v = torch.full_like(x, 0.0 if v_reset is None else float(v_reset))
            vth = torch.full_like(x, float(self.host.v_threshold))
            step = 0
        return v, vth, step

    def single_step_functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[torch.Tensor, ...], tuple[Any, ...]]:
        x, (v, vth, step) = inputs[0], states
        host: Any = self.host
        v_reset = host.v_reset
        reset_value = 0.0 if v_reset is None else v_reset
        name = type(host).__name__
        if name == "IFNode":  # the arithmetic of SpikingJelly's reference steps, bit for bit
            h = v + x
        elif name == "ParametricLIFNode":
            q = host.w.sigmoid()
            h = (
                v + (x - (v - reset_value)) * q
                if host.decay_input
                else v - (v - reset_value) * q + x
            )
        elif host.decay_input:
            h = v + (x - (v - reset_value)) / host.tau
        else:
            h = v - (v - reset_value) / host.tau + x
        vth = self._next_threshold(vth, h, x, step)
        spike = self._fire(host.surrogate_function, h, vth)
        gate = spike.detach() if host.detach_reset else spike
        v = h - gate * vth if v_reset is None else gate * v_reset + (1.0 - gate) * h
        if self.store_v_seq:
            previous = self.v_seq if step > 0 and self.v_seq is not None else v[:0]
            self.v_seq = torch.cat([previous, v[None]])
        return (spike,), (v, vth, step + 1)

    def multi_step_functional_forward(
        self, inputs: tuple[Any, ...], states: tuple[Any, ...], **kwargs: Any
    ) -> tuple[tuple[torch.Tensor, ...], tuple[Any, ...]]:
        spikes = []
        for x in inputs[0].unbind(0):  # unbind: indexing x[t] makes backward O(T^2)
            (spike,), states = self.single_step_functional_forward((x,), states)
            spikes.append(spike)
        return (torch.stack(spikes),), states
