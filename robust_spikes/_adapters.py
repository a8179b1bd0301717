"""What every robust-neuron adapter shares: it wraps a host neuron kept as ``host``."""

from __future__ import annotations

from torch import nn


class NeuronAdapter:
    """Marker mixin of adapter modules that wrap a host framework's neuron.

    The classifier and the host frameworks treat an adapter as one neuron: they do not
    look for neurons inside it. ``host`` is the wrapped neuron (possibly itself an
    adapter, when adapters are combined).

    Shape:
        an adapter takes and returns what its host neuron does (e.g. snnTorch
        ``init_hidden=True``: input current ``[N, *F]`` -> spikes ``[N, *F]``, one step
        per call); the mixin itself adds no tensors.

    Example:
        >>> import snntorch as snn
        >>> import robust_spikes as rs
        >>> net = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True),
        ...                     nn.Linear(3, 2), snn.Leaky(beta=0.9, init_hidden=True))
        >>> gate = rs.adapt(net, ["ta-lif", "stochastic-gate"])[1]
        >>> isinstance(gate, NeuronAdapter), isinstance(gate.host, NeuronAdapter)
        (True, True)
        >>> type(gate.base_host()).__name__
        'Leaky'
    """

    host: nn.Module

    def membrane_module(self) -> nn.Module:
        """The module whose state holds this neuron's membrane potential."""
        return self  # type: ignore[return-value]

    def base_host(self) -> nn.Module:
        """The framework neuron at the bottom of a chain of adapters."""
        host = self.host
        while isinstance(host, NeuronAdapter):
            host = host.host
        return host
