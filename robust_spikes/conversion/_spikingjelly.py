"""SpikingJelly 2.0 target of the conversion: IF/LIF nodes whose threshold is a Parameter.

SpikingJelly's ``IFNode`` and ``LIFNode`` take a Python float ``v_threshold`` (their fused
CPU/CUDA steps reject tensors). The nodes here subclass them, keep ``v_threshold`` as an
``nn.Parameter`` and override the explicit-state step (``single_step_functional_forward``)
with plain autograd arithmetic, so that SpikingJelly's own machinery (``reset``,
``reset_net``, memories, ``set_step_mode``, ``store_v_seq``) keeps working and the
threshold is learnable and saved in ``state_dict``.
"""

from __future__ import annotations

from typing import Any

import torch
from spikingjelly.activation_based import neuron
from torch import nn

__all__ = ["SPIKE_FUNCTION", "THRESHOLD", "ThresholdIFNode", "ThresholdLIFNode", "make_neuron"]

SPIKE_FUNCTION = "surrogate_function"  # attribute holding the spike function
THRESHOLD = "v_threshold"  # attribute holding the threshold Parameter


class _LearnableThreshold:
    """Shared step of the nodes below: charge (subclass), fire, reset, with ``v_threshold``
    a Parameter. Forward ties as SpikingJelly: a spike when ``h - v_threshold >= 0``."""

    v_threshold: nn.Parameter
    v_reset: float | None
    detach_reset: bool
    surrogate_function: Any

    def _charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def single_step_functional_forward(
        self, inputs: tuple[torch.Tensor, ...], states: tuple[object, ...], **kwargs: object
    ) -> tuple[tuple[torch.Tensor, ...], tuple[object, ...]]:
        x, v = inputs[0], states[0]
        assert isinstance(v, torch.Tensor)
        h = self._charge(x, v)
        threshold = self.v_threshold.to(h.dtype)
        spike = self.surrogate_function(h - threshold)
        gate = spike.detach() if self.detach_reset else spike
        v_reset = self.v_reset  # None: soft reset (subtract the threshold), else hard
        v = h - gate * threshold if v_reset is None else gate * v_reset + (1.0 - gate) * h
        return (spike,), (v, *states[1:])

    def multi_step_functional_forward(
        self, inputs: tuple[torch.Tensor, ...], states: tuple[object, ...], **kwargs: object
    ) -> tuple[tuple[torch.Tensor, ...], tuple[object, ...]]:
        spikes = []
        for x in inputs[0].unbind(0):  # unbind: indexing x[t] makes backward O(T^2)
            (spike,), states = self.single_step_functional_forward((x,), states)
            spikes.append(spike)
        return (torch.stack(spikes),), states


def _parameter(value: float) -> nn.Parameter:
    return nn.Parameter(torch.tensor(float(value)))


class ThresholdIFNode(_LearnableThreshold, neuron.IFNode):
    """SpikingJelly ``IFNode`` with a learnable threshold (``v_threshold``, a Parameter).

    Same constructor as ``IFNode``; ``v_threshold`` may be a float or a 0-d tensor.
    ``h = v + x``; spikes ``surrogate_function(h - v_threshold)`` (fires on ``>=``); hard
    reset to ``v_reset`` or, with ``v_reset=None``, subtraction of the threshold.
    """

    def __init__(self, v_threshold: float = 1.0, **kwargs: Any) -> None:
        super().__init__(v_threshold=1.0, **kwargs)
        self.v_threshold = _parameter(v_threshold)

    def _charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return v + x


class ThresholdLIFNode(_LearnableThreshold, neuron.LIFNode):
    """SpikingJelly ``LIFNode`` with a learnable threshold (``v_threshold``, a Parameter).

    Same constructor and charge as ``LIFNode`` (``decay_input`` respected); firing and
    reset as :class:`ThresholdIFNode`.
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, **kwargs: Any) -> None:
        super().__init__(tau=tau, v_threshold=1.0, **kwargs)
        self.v_threshold = _parameter(v_threshold)

    def _charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        v_reset = 0.0 if self.v_reset is None else self.v_reset
        if self.decay_input:
            return v + (x - (v - v_reset)) / self.tau
        return v - (v - v_reset) / self.tau + x


def make_neuron(kind: str, beta: float, reset: str, spike_function: nn.Module) -> nn.Module:
    """A single-step node: ``"if"`` or ``"lif"`` (leak ``beta`` per step, input not decayed)."""
    v_reset = 0.0 if reset == "zero" else None
    common: dict[str, Any] = {
        "v_reset": v_reset,
        "surrogate_function": spike_function,
        "step_mode": "s",
    }
    if kind == "if":
        return ThresholdIFNode(1.0, **common)
    return ThresholdLIFNode(tau=1.0 / (1.0 - beta), v_threshold=1.0, decay_input=False, **common)
