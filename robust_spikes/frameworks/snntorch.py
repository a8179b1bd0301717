"""snnTorch 1.0: neuron discovery, per-instance recursive reset, state styles.

snnTorch keeps state in non-persistent buffers of each neuron (``mem``, ``syn``, ...)
and re-initialises it silently only when the input shape changes, so two calls on
the same batch share state unless it is reset. ``snntorch.utils.reset`` inspects the
direct children only and resets class-wide instance lists; we reset every neuron of
the given network, by instance, recursively.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import torch
from torch import nn

from robust_spikes._adapters import NeuronAdapter
from robust_spikes.frameworks._base import Host, StepMode, adapter_base, neurons_of
from robust_spikes.neurons.threshold import ThresholdAdaptation

# Neurons that consume a whole [T, N, ...] sequence per call and keep no state.
_SEQUENCE_NEURONS = ("StateLeaky", "LinearLeaky", "LeakyParallel")


class SnnTorchHost(Host):
    name = "snntorch"

    def __init__(self) -> None:
        import snntorch

        self._neuron_type = snntorch.SpikingNeuron

    def neurons(self, net: nn.Module) -> list[nn.Module]:
        return neurons_of(net, self._is_neuron)

    def _is_neuron(self, m: nn.Module) -> bool:
        if isinstance(m, NeuronAdapter):
            return isinstance(adapter_base(m), self._neuron_type)
        return isinstance(m, self._neuron_type) or type(m).__name__ in _SEQUENCE_NEURONS

    def stateful(self, net: nn.Module) -> list[nn.Module]:
        return [
            m
            for m in net.modules()
            if callable(getattr(m, "reset_mem", None)) or type(m).__name__ in _SEQUENCE_NEURONS
        ]

    def check_supported(self, neurons: list[nn.Module]) -> None:
        for m in neurons:
            m = adapter_base(m)
            kind = type(m).__name__
            if kind not in _SEQUENCE_NEURONS and not callable(getattr(m, "reset_mem", None)):
                raise TypeError(
                    f"unsupported snnTorch neuron {kind}: it has no reset_mem(), so its state "
                    "cannot be reset between calls"
                )

    def reset(self, stateful: list[nn.Module]) -> None:
        for m in stateful:
            if type(m).__name__ in _SEQUENCE_NEURONS:
                # Stateless across calls; StateLeaky keeps its last spikes as ``spk``.
                spk = vars(m).get("spk")
                if isinstance(spk, torch.Tensor):
                    m.spk = spk.detach()
                continue
            m.reset_mem()  # type: ignore[operator]

    def step_mode(self, net: nn.Module, neurons: list[nn.Module]) -> StepMode:
        # StateLeaky, LinearLeaky, LeakyParallel: one call of net is the whole sequence.
        # init_hidden=True: one call of net is one step. Otherwise the user's forward
        # either loops over time itself (tutorial style) or is one step with state in
        # and out; only its signature and its output can tell.
        sequence = [type(adapter_base(m)).__name__ in _SEQUENCE_NEURONS for m in neurons]
        if any(sequence):
            if not all(sequence):
                steps = sorted(
                    {
                        type(adapter_base(m)).__name__
                        for m, s in zip(neurons, sequence, strict=True)
                        if not s
                    }
                )
                raise ValueError(
                    "net mixes snnTorch sequence neurons (StateLeaky, LinearLeaky, "
                    f"LeakyParallel), which take [T, N, ...] per call, with step neurons "
                    f"({', '.join(steps)}), which take one step per call; SpikingClassifier "
                    "drives a network one way: use one kind of neuron"
                )
            return "sequence"
        if all(getattr(adapter_base(m), "init_hidden", False) for m in neurons):
            return "step"
        return "unknown"

    def explicit_state(self, neurons: list[nn.Module]) -> bool:
        return not all(getattr(adapter_base(m), "init_hidden", False) for m in neurons)

    def state_count(self, neurons: list[nn.Module]) -> int:
        # snnTorch's neurons take their state after the input: Leaky (mem), Synaptic
        # (syn, mem), Alpha (syn_exc, syn_inh, mem), RLeaky (spk, mem), RSynaptic (spk,
        # syn, mem); their init_* methods return it, an empty tensor before the first step.
        count = 0
        for m in neurons:
            host = adapter_base(m)
            if getattr(host, "init_hidden", False):
                continue
            params = list(inspect.signature(type(host).forward).parameters.values())[2:]
            count += sum(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
        return count

    def output_is_membrane(self, neuron: nn.Module) -> bool:
        host = adapter_base(neuron)  # StateLeaky(output=False) returns the membrane only
        return type(host).__name__ in _SEQUENCE_NEURONS and getattr(host, "output", True) is False

    def no_membrane(self, neuron: nn.Module, sequence: bool) -> str | None:
        kind = type(adapter_base(neuron)).__name__
        if kind == "LeakyParallel":
            return "LeakyParallel returns spikes only (its membrane is not accessible)"
        return None

    def membrane(self, neuron: nn.Module) -> torch.Tensor:
        if isinstance(neuron, NeuronAdapter):
            neuron = neuron.membrane_module()
        mem = neuron.mem
        assert isinstance(mem, torch.Tensor)
        return mem

    def spike_slot(self, neuron: nn.Module) -> tuple[nn.Module, str, Literal[">", ">="]]:
        return adapter_base(neuron), "spike_grad", ">"  # fire(): spike_grad(mem - threshold)


# ----------------------------------------------------------------------- adapters
class SnnTorchThresholdAdaptation(ThresholdAdaptation):
    """TA-LIF around an snnTorch ``Leaky`` or ``Synaptic`` neuron (see the base class).

    Follows snnTorch 1.0's step exactly, with the host's ``threshold`` replaced by
    ``Vth``: the delayed reset (``reset_delay=True``) subtracts the threshold the neuron
    fired at, ``Vth[t-1]``; spikes use the host's ``spike_grad`` and
    ``graded_spikes_factor``; ``beta``/``alpha`` are clamped to [0, 1] as in the host.
    Calls and returns like the host (``init_hidden``, ``output``, explicit state).
    """

    def __init__(self, host: nn.Module, **kwargs: Any) -> None:
        for flag in ("state_quant", "inhibition"):
            if getattr(host, flag, False):
                raise TypeError(f"ThresholdAdaptation does not support snnTorch {flag}=True")
        super().__init__(host, **kwargs)
        self._synaptic = type(host).__name__ == "Synaptic"
        self.register_buffer("mem", torch.zeros(0), persistent=False)
        self.register_buffer("syn", torch.zeros(0), persistent=False)
        self.register_buffer("vth", torch.zeros(0), persistent=False)
        self._step = 0

    @property
    def base_threshold(self) -> torch.Tensor:
        threshold = self.host.threshold
        assert isinstance(threshold, torch.Tensor)
        return threshold

    def reset_mem(self) -> torch.Tensor:
        """Forget the state (membrane, synaptic current, threshold, step count)."""
        self.mem, self.syn, self.vth = torch.zeros(0), torch.zeros(0), torch.zeros(0)
        self._step = 0
        return self.mem

    def forward(self, input_: torch.Tensor, *state: torch.Tensor | None) -> Any:
        host: Any = self.host
        if state:  # explicit state passing, as the host: (syn, mem) or (mem,)
            if host.init_hidden:
                raise TypeError("state should not be passed while the host has init_hidden=True")
            if self._synaptic and state[0] is not None:
                self.syn = state[0]
            if state[-1] is not None:
                self.mem = state[-1]
        if self.mem.shape != input_.shape:  # new run or new batch shape: start afresh
            self.mem = torch.zeros_like(input_)
            self.syn = torch.zeros_like(input_)
            self.vth = self.base_threshold.to(input_.dtype).expand_as(input_)
            self._step = 0
        threshold = self.vth
        reset = host.spike_grad(self.mem - threshold).detach()
        beta = host.beta.clamp(0, 1)
        mechanism = int(host.reset_mechanism_val)  # 0 subtract, 1 zero, 2 none
        if self._synaptic:
            self.syn = host.alpha.clamp(0, 1) * self.syn + input_
            mem = beta * self.mem + self.syn
            if mechanism == 0:
                mem = mem - reset * threshold
            elif mechanism == 1:
                mem = mem - mem * reset
        elif mechanism == 1:
            mem = beta * ((1 - reset) * self.mem) + input_
        else:
            mem = beta * self.mem + input_
            if mechanism == 0:
                mem = mem - reset * threshold
        threshold = self._next_threshold(threshold, mem, input_, self._step)
        spk = self._fire(host.spike_grad, mem, threshold) * host.graded_spikes_factor
        if not host.reset_delay:
            do_reset = spk / host.graded_spikes_factor - reset
            if mechanism == 0:
                mem = mem - do_reset * threshold
            elif mechanism == 1:
                mem = mem - do_reset * mem
        self.mem, self.vth, self._step = mem, threshold, self._step + 1
        if host.init_hidden and not host.output:
            return spk
        return (spk, self.syn, mem) if self._synaptic else (spk, mem)
