"""Host frameworks: detection, neuron discovery, state reset and step modes.

Each supported framework has one file here exposing a :class:`Host`. Everything
outside this package is framework-agnostic. A host framework is only imported when
the user's network was built with it (it is then already in ``sys.modules``), so
importing robust_spikes never imports snnTorch or SpikingJelly.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable

from torch import nn

from robust_spikes.frameworks._base import Host, ThresholdDynamics

__all__ = ["Host", "ThresholdDynamics", "detect", "host_named", "host_names", "host_of"]


def _host_factory(name: str) -> Callable[[], Host]:
    def factory() -> Host:
        module = importlib.import_module(f"{__name__}.{name}")
        (cls,) = (
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, Host) and v.__module__ == module.__name__
        )
        return cls()

    return factory


# name -> (top-level module of the framework, factory). One file per framework,
# ``frameworks/<its top-level module>.py`` defining one Host subclass: adding a host
# framework is adding that file. Found without importing it (it imports its framework).
_HOSTS: dict[str, tuple[str, Callable[[], Host]]] = {
    info.name: (info.name, _host_factory(info.name))
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name)
    if not info.name.startswith("_")
}


def host_names() -> list[str]:
    """Names accepted by ``framework=``, besides ``"auto"``."""
    return list(_HOSTS)


def host_named(name: str) -> Host:
    """The :class:`Host` of the framework called ``name`` (imports that framework).

    Raises:
        ValueError: ``name`` is not one of :func:`host_names`.

    Example:
        >>> host_named("snntorch").name
        'snntorch'
    """
    if name not in _HOSTS:
        raise ValueError(f"framework must be one of {host_names()}, got {name!r}")
    return _HOSTS[name][1]()


def host_of(module: nn.Module) -> Host | None:
    """The :class:`Host` whose neuron ``module`` is (or wraps, for an adapter), else None.

    Only frameworks already imported are asked: a module cannot belong to another.

    Example:
        >>> import snntorch as snn
        >>> host_of(snn.Leaky(beta=0.9)).name, host_of(nn.Linear(2, 2))
        ('snntorch', None)
    """
    for module_name, factory in _HOSTS.values():
        if module_name in sys.modules:
            host = factory()
            if host.is_neuron(module):
                return host
    return None


def detect(net: nn.Module, framework: str = "auto") -> Host:
    """Return the host framework of ``net``.

    Args:
        net: the user's spiking network.
        framework: ``"auto"`` (find the framework whose neurons ``net`` contains) or a
            name from :func:`host_names`.

    Raises:
        ValueError: unknown ``framework``; no spiking neuron of a supported framework in
            ``net``; neurons of two frameworks in one network.
    """
    if framework != "auto" and framework not in _HOSTS:
        raise ValueError(f"framework must be 'auto' or one of {host_names()}, got {framework!r}")
    names = [framework] if framework != "auto" else list(_HOSTS)
    found = []
    for name in names:
        module, factory = _HOSTS[name]
        if module not in sys.modules:  # the net cannot contain its neurons
            continue
        host = factory()
        if host.neurons(net):
            found.append(host)
    if len(found) > 1:
        raise ValueError(
            "net contains spiking neurons of several frameworks "
            f"({', '.join(h.name for h in found)}); wrap one framework's network at a time"
        )
    if not found:
        where = f"{framework} " if framework != "auto" else ""
        raise ValueError(
            f"net contains no {where}spiking neurons: SpikingClassifier wraps snnTorch or "
            f"SpikingJelly networks, got {type(net).__name__} with modules "
            f"{sorted({type(m).__name__ for m in net.modules()})}"
        )
    return found[0]
