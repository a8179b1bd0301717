"""Choose the host framework's implementation of an adapter."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robust_spikes.neurons.threshold import ThresholdAdaptation

SUPPORTED = {
    "snntorch": ("Leaky", "Synaptic"),
    "spikingjelly": ("IFNode", "LIFNode", "ParametricLIFNode"),
}


def supported_names() -> str:
    return "; ".join(f"{fw}: {', '.join(names)}" for fw, names in SUPPORTED.items())


def framework_of(host: Any) -> str | None:
    """``"snntorch"``, ``"spikingjelly"`` or ``None`` for a module that is no known neuron."""
    if "snntorch" in sys.modules:
        import snntorch

        if isinstance(host, snntorch.SpikingNeuron):
            return "snntorch"
    if "spikingjelly" in sys.modules:
        from spikingjelly.activation_based import neuron

        if isinstance(host, neuron.BaseNode):
            return "spikingjelly"
    return None


def check_host(host: Any, what: str) -> str:
    """Raise ``TypeError`` listing the supported neurons unless ``host`` is one of them."""
    framework = framework_of(host)
    if framework is None or type(host).__name__ not in SUPPORTED[framework]:
        raise TypeError(
            f"{what} supports these host neurons ({supported_names()}), got {type(host).__name__}"
        )
    return framework


def threshold_class(host: Any) -> type[ThresholdAdaptation]:
    if check_host(host, "ThresholdAdaptation") == "snntorch":
        from robust_spikes.frameworks.snntorch import SnnTorchThresholdAdaptation

        return SnnTorchThresholdAdaptation
    from robust_spikes.frameworks.spikingjelly import SpikingJellyThresholdAdaptation

    return SpikingJellyThresholdAdaptation
