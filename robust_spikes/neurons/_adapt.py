"""Swap the neurons of an existing snnTorch or SpikingJelly model for robust adapters."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from torch import nn

from robust_spikes._adapters import NeuronAdapter
from robust_spikes.frameworks import detect
from robust_spikes.neurons._gating import StochasticGate
from robust_spikes.neurons._threshold import ThresholdAdaptation

__all__ = ["adapt", "unwrap"]

Factory = Callable[[nn.Module], nn.Module]
Spec = str | Factory | Sequence[str | Factory]

_NAMED: dict[str, Factory] = {
    "ta-lif": ThresholdAdaptation,
    "stochastic-gate": StochasticGate,
}
Selector = Iterable[str] | Callable[[str, nn.Module], bool] | None


def adapt(
    net: nn.Module,
    spec: Spec,
    *,
    inplace: bool = False,
    include: Selector = None,
    exclude: Selector = None,
) -> nn.Module:
    """Wrap the neurons of ``net`` in robust adapters, keeping every weight.

    Walks any snnTorch or SpikingJelly model (nested modules too) and replaces each
    selected neuron by ``spec(neuron)``. The output layer (the last neuron) is left
    plain unless ``include`` names it, as in HoSNN.

    Args:
        net: the model; copied first unless ``inplace``.
        spec: ``"ta-lif"`` (:class:`ThresholdAdaptation`), ``"stochastic-gate"``
            (:class:`StochasticGate`), a factory ``module -> adapter`` (for instance
            ``functools.partial(ThresholdAdaptation, tau_v=1.5)``), or a sequence of these
            applied innermost first (``["ta-lif", "stochastic-gate"]`` gates TA-LIF spikes).
        inplace: modify ``net`` itself instead of a deep copy.
        include: qualified module names (as in ``net.named_modules()``) or a predicate
            ``(name, module) -> bool`` selecting the neurons to adapt; default all but the
            output layer.
        exclude: names or a predicate of neurons to leave plain.

    Returns:
        The adapted model (``net`` itself when ``inplace``); each adapter takes and returns
        the shapes of the neuron it wraps (e.g. input current ``[N, *F]`` -> spikes
        ``[N, *F]`` per step).

    Raises:
        ValueError: unknown spec name, or ``include`` naming a module that is no neuron.
        ValueError: ``"ta-lif"`` not first in ``spec``, or applied to a neuron that is
            already adapted.
        TypeError: a selected neuron that TA-LIF does not support (the message names it
            and lists the supported types); the stochastic gate wraps every neuron.

    Example:
        >>> import snntorch as snn
        >>> net = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True),
        ...                     nn.Linear(3, 2), snn.Leaky(beta=0.9, init_hidden=True))
        >>> [type(m).__name__ for m in adapt(net, "stochastic-gate")]
        ['Linear', 'StochasticGate', 'Linear', 'Leaky']
    """
    factories = _factories(spec)
    host = detect(net)
    neurons = host.neurons(net)
    names = {id(m): name for name, m in net.named_modules()}
    selected = _select(neurons, names, include, default=neurons[:-1])
    if exclude is not None:
        dropped = {id(m) for m in _select(neurons, names, exclude, default=[])}
        selected = [m for m in selected if id(m) not in dropped]
    talif = [i for i, f in enumerate(factories) if _builds_threshold_adaptation(f)]
    if talif and (talif[0] > 0 or any(isinstance(m, NeuronAdapter) for m in selected)):
        raise ValueError(
            "spec must apply 'ta-lif' first, to the framework neuron itself (TA-LIF "
            "replaces the neuron's step, so it cannot wrap another adapter), got "
            f"{spec!r}; e.g. ['ta-lif', 'stochastic-gate'] gates TA-LIF's spikes"
        )
    if talif:
        for m in selected:  # check every neuron before changing anything
            host.threshold_dynamics(m)
    target = net if inplace else copy.deepcopy(net)
    by_name = dict(target.named_modules())
    for m in selected:
        name = names[id(m)]
        adapted = by_name[name]
        for factory in factories:
            adapted = factory(adapted)
        _set_submodule(target, name, adapted)
    return target


def unwrap(net: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Replace every adapter in ``net`` by the framework neuron it wraps.

    The host neurons keep their parameters; adapter parameters (``theta_v``, ``rho``) and
    signatures are dropped.

    Example:
        >>> import snntorch as snn
        >>> net = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True),
        ...                     nn.Linear(3, 2), snn.Leaky(beta=0.9, init_hidden=True))
        >>> [type(m).__name__ for m in unwrap(adapt(net, "ta-lif"))]
        ['Linear', 'Leaky', 'Linear', 'Leaky']
    """
    target = net if inplace else copy.deepcopy(net)
    adapters = [
        (name, m)
        for name, m in target.named_modules()
        if isinstance(m, NeuronAdapter) and not _inside_adapter(target, name)
    ]
    for name, m in adapters:
        _set_submodule(target, name, m.base_host())
    return target


def _factories(spec: Spec) -> list[Factory]:
    items: Sequence[Any] = [spec] if isinstance(spec, str) or callable(spec) else spec
    if not items:
        raise ValueError("spec must name at least one adapter, got an empty sequence")
    out: list[Factory] = []
    for item in items:
        if isinstance(item, str):
            if item not in _NAMED:
                raise ValueError(f"spec must be one of {sorted(_NAMED)} or a factory, got {item!r}")
            out.append(_NAMED[item])
        elif callable(item):
            out.append(item)
        else:
            raise ValueError(f"spec must be a name or a factory, got {item!r}")
    return out


def _builds_threshold_adaptation(factory: Factory) -> bool:
    func = getattr(factory, "func", factory)  # functools.partial or the class itself
    return isinstance(func, type) and issubclass(func, ThresholdAdaptation)


def _select(
    neurons: list[nn.Module], names: dict[int, str], selector: Selector, default: list[nn.Module]
) -> list[nn.Module]:
    if selector is None:
        return list(default)
    if callable(selector):
        return [m for m in neurons if selector(names[id(m)], m)]
    wanted = set([selector] if isinstance(selector, str) else selector)
    neuron_names = {names[id(m)] for m in neurons}
    unknown = wanted - neuron_names
    if unknown:
        raise ValueError(
            f"include/exclude name modules that are no neurons: {sorted(unknown)}; "
            f"the neurons are {sorted(neuron_names)}"
        )
    return [m for m in neurons if names[id(m)] in wanted]


def _inside_adapter(net: nn.Module, name: str) -> bool:
    parts = name.split(".")
    return any(
        isinstance(net.get_submodule(".".join(parts[:i])), NeuronAdapter)
        for i in range(1, len(parts))
    )


def _set_submodule(net: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    setattr(parent, child, module)
