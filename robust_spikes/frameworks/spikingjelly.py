"""SpikingJelly 2.0 (``activation_based``): neuron discovery, reset, step modes.

State lives in ``MemoryModule`` memories. ``functional.reset_net`` caches the list of
modules to reset per network, so neurons swapped in later are missed; we call
``reset()`` on every ``MemoryModule`` found at call time instead.
"""

from __future__ import annotations

import torch
from torch import nn

from robust_spikes.frameworks._base import Host, StepMode

# Neurons whose surrogate gradient is switched off in eval(): an attack (run in eval
# mode by torchattacks) would get no gradient at all.
_EVAL_HEAVISIDE = ("OTTTLIFNode", "SLTTLIFNode")


class SpikingJellyHost(Host):
    name = "spikingjelly"

    def __init__(self) -> None:
        from spikingjelly.activation_based import base, neuron

        self._memory_type = base.MemoryModule
        self._neuron_type = neuron.BaseNode
        self._step_type = base.StepModule

    def neurons(self, net: nn.Module) -> list[nn.Module]:
        return [m for m in net.modules() if isinstance(m, self._neuron_type)]

    def stateful(self, net: nn.Module) -> list[nn.Module]:
        return [m for m in net.modules() if isinstance(m, self._memory_type)]

    def check_supported(self, neurons: list[nn.Module]) -> None:
        for m in neurons:
            if type(m).__name__ in _EVAL_HEAVISIDE:
                raise TypeError(
                    f"unsupported SpikingJelly neuron {type(m).__name__}: it uses a Heaviside "
                    "without surrogate gradient in eval mode, so attacks get no input gradient"
                )

    def reset(self, stateful: list[nn.Module]) -> None:
        for m in stateful:
            m.reset()  # type: ignore[operator]

    def step_mode(self, net: nn.Module, neurons: list[nn.Module]) -> StepMode:
        modes = {getattr(m, "step_mode", "s") for m in neurons}
        if len(modes) > 1:
            counts = {
                mode: sum(getattr(m, "step_mode", "s") == mode for m in neurons) for mode in modes
            }
            raise ValueError(
                f"net mixes SpikingJelly step modes among its neurons ({counts}); set one "
                "mode with spikingjelly.activation_based.functional.set_step_mode(net, 'm')"
            )
        return "sequence" if modes == {"m"} else "step"

    def membrane(self, neuron: nn.Module) -> torch.Tensor:
        v = neuron.v
        assert isinstance(v, torch.Tensor)
        return v

    def record_membrane(self, neuron: nn.Module, enable: bool) -> None:
        setattr(neuron, "store_v_seq", enable)  # noqa: B010 (property of BaseNode)

    def membrane_sequence(self, neuron: nn.Module) -> torch.Tensor | None:
        v_seq = getattr(neuron, "v_seq", None)
        return v_seq if isinstance(v_seq, torch.Tensor) else None
