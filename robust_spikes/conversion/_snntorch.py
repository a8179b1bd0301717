"""snnTorch 1.0 target of the conversion: ``Leaky`` with ``learn_threshold=True``.

snnTorch's ``Leaky`` keeps its threshold as an ``nn.Parameter`` when
``learn_threshold=True``; ``beta = 1`` makes it an integrate-and-fire neuron. The neurons
use ``init_hidden=True`` so that one call of the converted network is one time step, and
``reset_delay=False``, so that the membrane is reset in the step of the spike and the
reset amount decays with the membrane: the same dynamics as SpikingJelly's nodes.
"""

from __future__ import annotations

import snntorch
from torch import nn

__all__ = ["SPIKE_FUNCTION", "THRESHOLD", "make_neuron"]

SPIKE_FUNCTION = "spike_grad"  # attribute holding the spike function
THRESHOLD = "threshold"  # attribute holding the threshold Parameter


def make_neuron(kind: str, beta: float, reset: str, spike_function: nn.Module) -> nn.Module:
    """A ``Leaky`` neuron: ``"if"`` (``beta = 1``) or ``"lif"`` (leak ``beta`` per step)."""
    return snntorch.Leaky(
        beta=1.0 if kind == "if" else beta,
        threshold=1.0,
        learn_threshold=True,
        init_hidden=True,
        reset_mechanism=reset,
        spike_grad=spike_function,
        reset_delay=False,  # reset in the step of the spike, as SpikingJelly
    )
