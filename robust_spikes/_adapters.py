"""What every robust-neuron adapter shares: it wraps a host neuron kept as ``host``."""

from __future__ import annotations

from typing import Any

from torch import nn

# Attributes of the adapter protocol itself, never answered on behalf of the host: a
# gate inside another adapter must not make the outer one look random, for instance.
_ADAPTER_OWN = frozenset({"host", "uses_generator", "generator", "is_stochastic"})


class NeuronAdapter:
    """Marker mixin of adapter modules that wrap a host framework's neuron.

    The classifier and the host frameworks treat an adapter as one neuron: they do not
    look for neurons inside it. ``host`` is the wrapped neuron (possibly itself an
    adapter, when adapters are combined).

    An adapter stands in for its host in the user's own ``forward``: reading a public
    attribute or calling a public method that the adapter does not define reaches the
    host (``lif.beta``, snnTorch's ``lif.init_leaky()``, ``lif.reset_mem()``), except
    the names the host framework's own tree walkers probe on every module (for
    SpikingJelly ``reset``, ``detach`` and ``step_mode``: see
    :attr:`robust_spikes.frameworks.Host.unforwarded`). Adapters that keep state of their
    own define the state methods themselves. Assignments set the adapter's attribute.

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
    _unforwarded: frozenset[str] = frozenset()

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # type: ignore[misc]
        except AttributeError:
            if name.startswith("_") or name in _ADAPTER_OWN or name in self._unforwarded:
                raise
            modules = self.__dict__.get("_modules")
            host = modules.get("host") if modules is not None else None
            if host is None:
                raise
            try:
                return getattr(host, name)
            except AttributeError:
                raise AttributeError(
                    f"'{type(self).__name__}' object (an adapter around "
                    f"{type(host).__name__}) has no attribute '{name}', nor has its host"
                ) from None

    def membrane_module(self) -> nn.Module:
        """The module whose state holds this neuron's membrane potential."""
        return self  # type: ignore[return-value]

    def base_host(self) -> nn.Module:
        """The framework neuron at the bottom of a chain of adapters."""
        host = self.host
        while isinstance(host, NeuronAdapter):
            host = host.host
        return host
