"""Gradient modes: how an attack differentiates through a model's spikes.

A mode changes the backward pass of a :class:`~robust_spikes.Classifier` for the
duration of a ``with`` block and nothing else: the forward pass, the state_dict and the
train/eval modes stay the model's own. ``model.gradient(mode, ...)`` returns a
:class:`GradientContext`; :data:`MODES` maps mode names to :class:`GradientMode`
classes; the rate modes ``"bptr"`` and ``"rga"`` (``_rate.py``) and the ANN twin ``"ann"``
(``_twin.py``, the one mode that replaces the forward pass) join it when the package is
imported. Modes that need to hear of every classifier call set the classifier's hook
``_call_hook`` on install and clear it on restore; modes know the classifier only through
the :class:`Classifier` protocol, so this package does not import the classifier.
"""

from __future__ import annotations

import itertools
import math
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

import torch
from torch import nn

from robust_spikes.frameworks import Host
from robust_spikes.gradients._surrogates import PDSG, SpikeFunction, Surrogate, Tie


class Classifier(Protocol):
    """What a gradient mode uses of a :class:`~robust_spikes.Classifier`."""

    net: nn.Module
    encoder: Any
    num_steps: int
    _host: Host
    _use_compile: bool
    # ``hook(x)`` hears of every call with the normalised input, after plan discovery and
    # before the spiking run; it returns ``None``, or logits that replace the run.
    _call_hook: Callable[[torch.Tensor], torch.Tensor | None] | None

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


__all__ = ["MODES", "GradientContext", "GradientMode", "SurrogateGradient"]


class GradientMode:
    """One way to differentiate through the spikes, installed and removed by a context.

    Subclasses validate their arguments in ``__init__`` (so that a bad call fails where
    it is made), change the backward pass in :meth:`install` and undo every change in
    :meth:`restore`. :class:`GradientContext` calls them and guarantees that
    :meth:`restore` runs, also on exceptions, and that two modes never overlap on one
    network. A mode that keeps the spiking forward pass (every mode but a transfer model
    such as the ANN twin) must keep it bit-for-bit.

    Args:
        model: the classifier whose network is changed.
        surrogate: the mode's surrogate, for modes that take one.

    Example:
        >>> import snntorch as snn
        >>> from robust_spikes import SpikingClassifier
        >>> class Announce(GradientMode):
        ...     def install(self):
        ...         print("install")
        ...     def restore(self):
        ...         print("restore")
        >>> net = nn.Sequential(nn.Linear(4, 2), snn.Leaky(beta=0.9, init_hidden=True))
        >>> mode = Announce(SpikingClassifier(net, num_steps=2))
        >>> mode.install(); mode.restore()
        install
        restore
        >>> all(issubclass(cls, GradientMode) for cls in MODES.values())
        True
    """

    def __init__(self, model: Classifier, surrogate: Surrogate | None = None) -> None:
        self.model = model
        self.surrogate = surrogate

    def install(self) -> None:
        """Change the backward pass; if it raises, it must have changed nothing."""

    def restore(self) -> None:
        """Undo every change made by :meth:`install`."""


class SurrogateGradient(GradientMode):
    """BPTT with every neuron's spike function replaced by ``surrogate``.

    The spike function of each neuron (snnTorch's ``spike_grad``, SpikingJelly's
    ``surrogate_function``; for adapters, that of the framework neuron under them, which
    the adapters fire through) becomes ``surrogate.spike_function(tie)`` in the host's
    tie convention. ``surrogate=None`` leaves the host's own (a no-op).

    Raises:
        TypeError: ``surrogate`` is neither a :class:`Surrogate` nor ``None``; on
            install, a neuron whose spike function is not the Heaviside step of its host
            (e.g. SpikingJelly's multi-level ``MultiLevelSpikeCount`` or a surrogate with
            ``spiking=False``), which another surrogate would change in the forward pass.

    Example:
        >>> import snntorch as snn
        >>> from robust_spikes import SpikingClassifier
        >>> from robust_spikes.gradients import Triangle
        >>> lif = snn.Leaky(beta=0.9, init_hidden=True, output=True)
        >>> model = SpikingClassifier(nn.Sequential(nn.Linear(4, 2), lif), num_steps=2)
        >>> mode = SurrogateGradient(model, Triangle(gamma=1.0))
        >>> mode.install()
        >>> isinstance(lif.spike_grad, SpikeFunction)
        True
        >>> mode.restore()
        >>> isinstance(lif.spike_grad, SpikeFunction)
        False
    """

    def __init__(self, model: Classifier, surrogate: Surrogate | None = None) -> None:
        if surrogate is not None and not isinstance(surrogate, Surrogate):
            raise TypeError(
                "surrogate must be a robust_spikes.gradients.Surrogate (e.g. "
                f"Triangle(gamma=1.0)) or None, got {type(surrogate).__name__}"
            )
        super().__init__(model, surrogate)
        self._swapped: list[tuple[nn.Module, str, bool, Any]] = []

    def install(self) -> None:
        surrogate = self.surrogate
        if surrogate is None:
            return
        planned: list[tuple[nn.Module, str, Any, SpikeFunction]] = []
        shared: dict[tuple[int, Tie], SpikeFunction] = {}  # one replacement per original
        for owner, attr, tie in _slots(self.model):
            original = _current(owner, attr)
            replacement = shared.get((id(original), tie))
            if replacement is None:
                replacement = surrogate.spike_function(tie)
                _check_same_forward(owner, attr, original, replacement, tie)
                if isinstance(original, nn.Module):
                    replacement.train(original.training)
                shared[id(original), tie] = replacement
            planned.append((owner, attr, original, replacement))
        for owner, attr, original, replacement in planned:  # nothing below raises
            registered = attr in owner._modules
            if registered:
                owner._modules[attr] = replacement  # in place: the order of modules() stays
            else:
                owner.__dict__[attr] = replacement  # invisible to modules() and state_dict
            self._swapped.append((owner, attr, registered, original))

    def restore(self) -> None:
        while self._swapped:
            owner, attr, registered, original = self._swapped.pop()
            if registered:
                owner._modules[attr] = original
            else:
                owner.__dict__[attr] = original


class _PDSGGradient(SurrogateGradient):
    """BPTT with the potential-dependent surrogate :class:`PDSG` on every neuron."""

    def __init__(self, model: Classifier, surrogate: Surrogate | None = None) -> None:
        if surrogate is not None:
            raise ValueError(
                f"mode 'pdsg' uses PDSG() as its surrogate, got surrogate={surrogate!r}; "
                "for another surrogate use mode='bptt'"
            )
        super().__init__(model, PDSG())


MODES: dict[str, type[GradientMode]] = {
    "bptt": SurrogateGradient,
    "pdsg": _PDSGGradient,
}


class GradientContext:
    """``with model.gradient(mode, ...):`` changes the backward pass inside the block.

    On enter, the mode is installed on the model's network and the model is returned; on
    exit (also by an exception) every change is undone. The forward pass, ``state_dict`` and
    train/eval modes are untouched throughout. Entering a second context on a network whose
    neurons are held by an active one raises instead of mixing two modes. Copies of the
    network made inside the block keep the swapped spike functions.

    Args:
        model: the classifier.
        mode: a name from :data:`MODES`.
        surrogate: passed to the mode (``"bptt"``: the surrogate, ``None`` for the
            host's own).

    Raises:
        ValueError: unknown ``mode`` (the message lists the modes); a ``surrogate`` the
            mode does not take.
        TypeError: a ``surrogate`` that is not a :class:`Surrogate`.
        RuntimeError: on enter, another gradient context is active on the same neurons.

    Example:
        >>> import snntorch as snn
        >>> from robust_spikes import SpikingClassifier
        >>> from robust_spikes.gradients import Triangle
        >>> net = nn.Sequential(nn.Linear(4, 2),
        ...                     snn.Leaky(beta=0.9, init_hidden=True, output=True))
        >>> model = SpikingClassifier(net, num_steps=2)
        >>> context = GradientContext(model, "bptt", surrogate=Triangle(gamma=1.0))
        >>> x = torch.rand(3, 4, requires_grad=True)
        >>> with context as m:
        ...     print(context.active, m is model)
        ...     m(x).sum().backward()
        True True
        >>> context.active, x.grad.shape
        (False, torch.Size([3, 4]))
    """

    def __init__(self, model: Classifier, mode: str, surrogate: Surrogate | None = None) -> None:
        if not isinstance(mode, str) or mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        self.model = model
        self.mode = mode
        self._impl = MODES[mode](model, surrogate)
        self._locked: list[nn.Module] = []

    @property
    def surrogate(self) -> Surrogate | None:
        """The surrogate of the mode (``None``: the host's own)."""
        return self._impl.surrogate

    @property
    def active(self) -> bool:
        """Whether the context is entered."""
        return bool(self._locked)

    def __repr__(self) -> str:
        return f"GradientContext(mode={self.mode!r}, surrogate={self.surrogate!r})"

    def __enter__(self) -> Classifier:
        if self._locked:
            raise RuntimeError(f"{self!r} is already active; it cannot be entered twice")
        owners = list({id(o): o for o, _, _ in _slots(self.model)}.values())
        for owner in owners:
            lock = owner.__dict__.get(_LOCK)
            holder = lock.holder() if isinstance(lock, _Lock) else None
            if holder is not None and holder is not self and holder._holds(owner):
                raise RuntimeError(
                    f"{type(owner).__name__} neurons of this network are inside an active "
                    f"{holder!r}; gradient modes cannot be nested or used concurrently on one "
                    f"network: leave it before entering {self!r}"
                )
        for owner in owners:
            owner.__dict__[_LOCK] = _Lock(self)
        self._locked = owners
        try:
            self._impl.install()
        except BaseException:
            self._release()
            raise
        return self.model

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._impl.restore()
        finally:
            self._release()

    def _holds(self, owner: nn.Module) -> bool:
        return any(o is owner for o in self._locked)

    def _release(self) -> None:
        for owner in self._locked:
            lock = owner.__dict__.get(_LOCK)
            if isinstance(lock, _Lock) and lock.holder() is self:
                del owner.__dict__[_LOCK]
        self._locked = []


_LOCK = "_robust_spikes_gradient_lock"


class _Lock:
    """Marks a neuron as held by a context; copies and pickles of the neuron come free."""

    def __init__(self, context: GradientContext | None = None) -> None:
        self.holder: Any = weakref.ref(context) if context is not None else lambda: None

    def __reduce__(self) -> tuple[type[_Lock], tuple[()]]:
        return (_Lock, ())


def _slots(model: Classifier) -> list[tuple[nn.Module, str, Tie]]:
    """``(owner, attribute, tie)`` of the spike function of every neuron of the model."""
    host = model._host
    return [host.spike_slot(m) for m in host.neurons(model.net)]


def _current(owner: nn.Module, attr: str) -> Any:
    """The spike function stored on ``owner`` as ``attr`` (a module or a callable)."""
    if attr in owner._modules:
        return owner._modules[attr]
    if attr in owner.__dict__ and callable(owner.__dict__[attr]):
        return owner.__dict__[attr]
    raise TypeError(
        f"cannot replace the spike function of {type(owner).__name__}: it keeps no callable "
        f"{attr!r} attribute"
    )


# x = u - Vth around the tie and far from it; subnormals show that 'x > 0' is not 'x >= tiny'.
_PROBE = (-math.inf, -1e3, -1.0, -1e-7, -1e-40, -0.0, 0.0, 1e-40, 1e-7, 0.5, 1.0, 2.0, 1e3)


def _check_same_forward(
    owner: nn.Module, attr: str, original: Any, replacement: SpikeFunction, tie: Tie
) -> None:
    """Raise unless ``original`` and ``replacement`` fire alike on probe potentials."""
    anchor = next(itertools.chain(owner.parameters(), owner.buffers()), None)
    device = anchor.device if anchor is not None else torch.device("cpu")
    probe = torch.tensor(_PROBE, dtype=torch.float32, device=device)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        want = original(probe)
    got = replacement(probe)
    if not (
        isinstance(want, torch.Tensor)
        and want.shape == probe.shape
        and torch.equal(want.to(probe.dtype), got.detach())
    ):
        expected = "1[x >= 0]" if tie == ">=" else "1[x > 0]"
        raise TypeError(
            f"cannot replace the spike function of {type(owner).__name__} "
            f"({attr}={original!r}): its forward pass is not the Heaviside step {expected} "
            "of its framework, so another surrogate would change the model's outputs"
        )
