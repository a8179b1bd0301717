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
from robust_spikes.frameworks._base import (
    Host,
    StepMode,
    ThresholdDynamics,
    adapter_base,
    threshold_refusal,
)

# Neurons that consume a whole [T, N, ...] sequence per call and keep no state.
_SEQUENCE_NEURONS = ("StateLeaky", "LinearLeaky", "LeakyParallel")
# Neurons whose forward replaces a state of another shape by zeros of the input's shape
# (snnTorch 1.0), so an empty state is the state of a newly built neuron.
_SHAPE_FREE = frozenset(
    ("Leaky", "Synaptic", "Alpha", "Lapicque", "RLeaky", "RSynaptic", "SLSTM", "SConv2dLSTM")
)


class SnnTorchHost(Host):
    name = "snntorch"

    def __init__(self) -> None:
        import snntorch

        self._neuron_type = snntorch.SpikingNeuron

    def is_neuron(self, m: nn.Module) -> bool:
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

    def forget(self, stateful: list[nn.Module]) -> None:
        # snnTorch's reset_mem keeps the last batch shape (zeros_like); its constructors
        # register the state as empty non-persistent buffers, which forward replaces by
        # zeros of the input's shape. Only the classes known to do so are emptied (a
        # subclass such as DeltaLeaky keeps None instead); the rest are reset. Their
        # reset_mem touches those buffers only, so emptying them is the whole reset
        # (without zeros of the last batch's shape: a cost per call of a compiled graph).
        for m in stateful:
            kind = type(m)
            if kind.__name__ not in _SHAPE_FREE or not kind.__module__.startswith("snntorch."):
                self.reset([m])
                continue
            for name in m._non_persistent_buffers_set:
                buf = m._buffers.get(name)
                if isinstance(buf, torch.Tensor):
                    m._buffers[name] = buf.new_zeros(0)

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

    # ------------------------------------------------------------- for neuron adapters
    def time_major(self, neuron: nn.Module) -> bool:
        return type(adapter_base(neuron)).__name__ in _SEQUENCE_NEURONS

    def threshold_dynamics(self, neuron: nn.Module) -> type[ThresholdDynamics]:
        kind = type(neuron).__name__
        dynamics = _DYNAMICS.get(kind)
        if dynamics is None or type(neuron) not in _exact_classes():
            raise threshold_refusal("snnTorch", _DYNAMICS, kind)
        if kind == "RSynaptic" and not getattr(neuron, "reset_delay", True):
            raise TypeError(
                "ThresholdAdaptation does not support snnTorch RSynaptic with "
                "reset_delay=False: snnTorch 1.0's own step reads its spk/mem arguments "
                "there instead of its state (None unless passed); use the default "
                "reset_delay=True"
            )
        for flag in ("state_quant", "inhibition"):
            if getattr(neuron, flag, False):
                raise TypeError(
                    f"ThresholdAdaptation does not support snnTorch {kind} with {flag} set"
                )
        return dynamics

    def adapter_shell(self) -> type[nn.Module]:
        return SnnTorchShell


# ------------------------------------------------------------- threshold dynamics
# snnTorch 1.0's step, read off its source: the reset signal is H(mem[t-1] - Vth[t-1])
# (detached), applied in the charge (``reset_delay=True``, the default) or right after
# firing as well (``reset_delay=False``, the "do_reset" correction); the spikes are
# ``spike_grad(mem - Vth) * graded_spikes_factor``; ``beta``/``alpha`` are clamped to
# [0, 1]. ``reset_mechanism_val``: 0 subtract, 1 zero, 2 none.
class _SnnTorchDynamics(ThresholdDynamics):
    state_names: tuple[str, ...] = ("mem",)
    _reset: torch.Tensor  # this step's reset signal, set by charge()

    def base_threshold(self) -> torch.Tensor:
        threshold = self.host.threshold
        assert isinstance(threshold, torch.Tensor)
        return threshold

    def spike_function(self) -> Any:
        return self.host.spike_grad

    def initial(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.zeros_like(x) for _ in self.state_names)

    def _reset_signal(self, mem: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        return self.host.spike_grad(mem - threshold).detach()

    def discharge(
        self,
        state: tuple[torch.Tensor, ...],
        u: torch.Tensor,
        spikes: torch.Tensor,
        threshold: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        host: Any = self.host
        spk = spikes * host.graded_spikes_factor
        mem = state[-1]
        if not getattr(host, "reset_delay", True):
            do_reset = spk / host.graded_spikes_factor - self._reset
            mechanism = int(host.reset_mechanism_val)
            if mechanism == 0:
                mem = mem - do_reset * threshold
            elif mechanism == 1:
                mem = mem - do_reset * mem
        return spk, (*state[:-1], mem)


class _Leaky(_SnnTorchDynamics):
    state_names = ("mem",)

    def charge(
        self, state: tuple[torch.Tensor, ...], x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        host: Any = self.host
        (mem,) = state
        reset = self._reset = self._reset_signal(mem, threshold)
        mechanism = int(host.reset_mechanism_val)
        if mechanism == 1:
            mem = (1 - reset) * mem
        mem = host.beta.clamp(0, 1) * mem + x
        if mechanism == 0:
            mem = mem - reset * threshold
        return mem, (mem,)


class _Lapicque(_SnnTorchDynamics):
    state_names = ("mem",)

    def charge(
        self, state: tuple[torch.Tensor, ...], x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        host: Any = self.host
        (mem,) = state
        reset = self._reset = self._reset_signal(mem, threshold)
        r, c, dt = host.R, host.C, host.time_step
        mem = x * r * (1 / (r * c)) * dt + (1 - (dt / (r * c))) * mem
        mechanism = int(host.reset_mechanism_val)
        if mechanism == 0:
            mem = mem - reset * threshold
        elif mechanism == 1:
            mem = mem - reset * mem
        return mem, (mem,)


class _Synaptic(_SnnTorchDynamics):
    state_names = ("syn", "mem")

    def charge(
        self, state: tuple[torch.Tensor, ...], x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        host: Any = self.host
        syn, mem = state
        reset = self._reset = self._reset_signal(mem, threshold)
        syn = host.alpha.clamp(0, 1) * syn + x
        mem = host.beta.clamp(0, 1) * mem + syn
        mechanism = int(host.reset_mechanism_val)
        if mechanism == 0:
            mem = mem - reset * threshold
        elif mechanism == 1:
            mem = mem - mem * reset
        return mem, (syn, mem)


class _Alpha(_SnnTorchDynamics):
    state_names = ("syn_exc", "syn_inh", "mem")

    def charge(
        self, state: tuple[torch.Tensor, ...], x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        host: Any = self.host
        syn_exc, syn_inh, mem = state
        reset = self._reset = self._reset_signal(mem, threshold)
        alpha, beta = host.alpha.clamp(0, 1), host.beta.clamp(0, 1)
        new_exc = alpha * syn_exc + x
        new_inh = beta * syn_inh - x
        tau_alpha = torch.log(alpha) / (torch.log(beta) - torch.log(alpha)) + 1
        new_mem = tau_alpha * (new_exc + new_inh)
        mechanism = int(host.reset_mechanism_val)
        if mechanism == 0:
            new_exc = new_exc - threshold * reset
            new_inh = new_inh - (beta * syn_inh - x) * reset
            new_mem = new_mem - (-syn_inh) * reset
        elif mechanism == 1:
            new_exc, new_inh, new_mem = (
                new_exc - new_exc * reset,
                new_inh - new_inh * reset,
                new_mem - new_mem * reset,
            )
        return new_mem, (new_exc, new_inh, new_mem)


class _RLeaky(_SnnTorchDynamics):
    state_names: tuple[str, ...] = ("spk", "mem")

    def charge(
        self, state: tuple[torch.Tensor, ...], x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        host: Any = self.host
        spk, mem = state
        reset = self._reset = self._reset_signal(mem, threshold)
        base = host.beta.clamp(0, 1) * mem + x + host.recurrent(spk)
        mechanism = int(host.reset_mechanism_val)
        if mechanism == 0:
            base = base - reset * threshold
        elif mechanism == 1:
            base = base - reset * base
        return base, (spk, base)

    def discharge(
        self,
        state: tuple[torch.Tensor, ...],
        u: torch.Tensor,
        spikes: torch.Tensor,
        threshold: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        spk, (_, mem) = super().discharge(state, u, spikes, threshold)
        return spk, (spk, mem)  # the recurrent input of the next step


class _RSynaptic(_RLeaky):
    state_names = ("spk", "syn", "mem")

    def charge(
        self, state: tuple[torch.Tensor, ...], x: torch.Tensor, threshold: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        host: Any = self.host
        spk, syn, mem = state
        reset = self._reset = self._reset_signal(mem, threshold)
        syn = host.alpha.clamp(0, 1) * syn + x + host.recurrent(spk)
        mem = host.beta.clamp(0, 1) * mem + syn
        mechanism = int(host.reset_mechanism_val)
        if mechanism == 0:
            mem = mem - reset * threshold
        elif mechanism == 1:
            mem = mem - mem * reset
        return mem, (spk, syn, mem)

    def discharge(
        self,
        state: tuple[torch.Tensor, ...],
        u: torch.Tensor,
        spikes: torch.Tensor,
        threshold: torch.Tensor,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        spk = spikes * self.host.graded_spikes_factor  # RSynaptic always resets delayed
        return spk, (spk, *state[1:])


_DYNAMICS: dict[str, type[ThresholdDynamics]] = {
    "Leaky": _Leaky,
    "Synaptic": _Synaptic,
    "Alpha": _Alpha,
    "RLeaky": _RLeaky,
    "RSynaptic": _RSynaptic,
    "Lapicque": _Lapicque,
}


def _exact_classes() -> set[type]:
    """The classes themselves: a subclass (e.g. DeltaLeaky) may change the step."""
    import snntorch

    return {getattr(snntorch, name) for name in _DYNAMICS}


# -------------------------------------------------------------------- adapter shell
class SnnTorchShell(nn.Module):
    """An adapter holding state as snnTorch neurons do, called as its host neuron is.

    The state lives in non-persistent buffers named as the host's (``mem``, ``syn``,
    ...), plus the threshold ``vth``; a state of another shape than the input starts a
    fresh run, as in snnTorch. ``forward(input_, *state)`` takes and returns what the
    host does (``init_hidden``, ``output``, explicit state by position or name).
    ``reset_mem()`` and the host's deprecated ``init_leaky()``-style aliases start a
    fresh run (threshold and step count included) and return the state as the host's
    do; ``reset_hidden()`` / ``detach_hidden()`` act on this adapter's state.
    """

    host: Any
    vth: torch.Tensor
    _adapter_step: Any

    def _shell_setup(self, host: nn.Module, dynamics: type[ThresholdDynamics]) -> None:
        self._dynamics = dynamics
        self._state_names = dynamics.state_names
        for name in (*self._state_names, "vth"):
            self.register_buffer(name, torch.zeros(0), persistent=False)
        self._step = 0

    def __getattr__(self, name: str) -> Any:
        if name.startswith("init_") and "_modules" in self.__dict__:
            host = self.__dict__["_modules"].get("host")
            if callable(getattr(host, name, None)):  # snnTorch: aliases of reset_mem()
                return self.reset_mem
        return super().__getattr__(name)

    def reset_mem(self) -> Any:
        """Forget the state (membrane, synaptic currents, threshold, step count)."""
        for name in (*self._state_names, "vth"):
            setattr(self, name, torch.zeros(0, device=getattr(self, name).device))
        self._step = 0
        state = tuple(getattr(self, name) for name in self._state_names)
        return state[0] if len(state) == 1 else state

    def reset_hidden(self) -> None:
        """Forget the state of this adapter (snnTorch's is a class-wide method)."""
        self.reset_mem()

    def detach_hidden(self) -> None:
        """Cut the autograd history of this adapter's state, keeping its values."""
        for name in (*self._state_names, "vth"):
            setattr(self, name, getattr(self, name).detach())

    def forward(self, input_: torch.Tensor, *args: torch.Tensor | None, **kwargs: Any) -> Any:
        host = self.host
        names = self._state_names
        if len(args) > len(names) or set(kwargs) - set(names):
            raise TypeError(
                f"{type(host).__name__} takes (input_, {', '.join(names)}), got "
                f"{1 + len(args)} positional arguments and keywords {sorted(kwargs)}"
            )
        given = dict(zip(names, args, strict=False)) | kwargs
        given = {k: v for k, v in given.items() if v is not None}
        if given and host.init_hidden:
            raise TypeError(
                f"{', '.join(given)} should not be passed as an argument while the host "
                f"{type(host).__name__} has init_hidden=True"
            )
        for name, value in given.items():
            setattr(self, name, value)
        dynamics = self._dynamics(host)
        state = tuple(getattr(self, name) for name in names)
        if any(s.shape != input_.shape for s in state):  # new run or batch shape
            fresh = dynamics.initial(input_)
            state = tuple(
                s if s.shape == input_.shape else f for s, f in zip(state, fresh, strict=True)
            )
        if self.vth.shape != input_.shape:
            self.vth = dynamics.base_threshold().to(input_.dtype).expand_as(input_)
            self._step = 0
        spk, state, self.vth = self._adapter_step(dynamics, input_, state, self.vth, self._step)
        for name, value in zip(names, state, strict=True):
            setattr(self, name, value)
        self._step += 1
        if host.init_hidden and not host.output:
            return spk
        return (spk, *state[1:]) if names[0] == "spk" else (spk, *state)
