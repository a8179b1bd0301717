"""TA-LIF: homeostatic threshold adaptation around a host neuron (HoSNN).

Geng & Li, "HoSNN: Adversarially-Robust Homeostatic Spiking Neural Networks with
Adaptive Firing Thresholds", TMLR 2025. Each neuron's threshold follows its membrane
potential's deviation from the neural dynamic signature (NDS) ``u*`` recorded on clean
data: ``Vth[t] = Vth[t-1] + theta_v * (u[t] - u*[t])``, ``Vth[-1] = theta_0``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import nn

from robust_spikes import _data
from robust_spikes._adapters import NeuronAdapter
from robust_spikes._modes import kept_modes
from robust_spikes.frameworks import Host, ThresholdDynamics, host_named, host_of
from robust_spikes.neurons.functional import adapt_threshold, fire

__all__ = ["ThresholdAdaptation", "record_signature"]

SignatureKind = Literal["membrane", "trace"]
_KINDS = ("membrane", "trace")
_SIGNATURE_BATCH = 256  # tensors and datasets are run in batches of this size


class ThresholdAdaptation(NeuronAdapter, nn.Module):
    """Wrap a host neuron so that its firing threshold adapts (TA-LIF, HoSNN).

    The host keeps its membrane dynamics, reset rule, surrogate gradient and parameters
    (read from the host at every step, so learnable ``beta``/``tau`` stay learnable);
    only the fixed threshold ``theta_0`` is replaced by the adaptive ``Vth[t]``:

    ``Vth[t] = Vth[t-1] + max(theta_v, 0) * (u[t] - u*[t])``, ``Vth[-1] = theta_0``,

    where ``u[t]`` is the host's membrane potential after integration (before firing)
    and ``u*`` the neural dynamic signature, a ``[T, *F]`` buffer recorded by
    :func:`~robust_spikes.neurons.record_signature` on clean data. With
    ``kind="trace"`` the compared signal is the input current instead, as in the
    official code. ``theta_v`` is learnable per neuron, initialised to ``1 / tau_v``.

    Gradients flow through ``Vth[t]`` and the error term (the adaptive attack);
    ``detach_threshold=True`` reproduces the published code's gradient, the surrogate
    at ``u - theta_0`` with nothing flowing through ``Vth`` (neither into the firing
    decision nor into the reset), so ``theta_v`` gets no gradient either.

    Supported hosts, the neurons with a leaky (or integrating) membrane and one firing
    threshold, where HoSNN's equations apply: snnTorch ``Leaky``, ``Synaptic``,
    ``Alpha``, ``RLeaky``, ``RSynaptic`` and ``Lapicque``; SpikingJelly ``IFNode``, ``LIFNode``,
    ``ParametricLIFNode``, ``KLIFNode`` (whose potential is ``relu(k H)``) and
    ``CUBALIFNode``, in both step modes. Each host's step comes from its framework
    (:class:`robust_spikes.frameworks.ThresholdDynamics`), so with ``theta_v = 0`` the
    adapter equals the host exactly. Calling ``ThresholdAdaptation(host)`` returns the
    subclass for the host's framework; it is called exactly like the host (same
    arguments and outputs) and answers the host's other attributes and methods (an
    snnTorch user's ``forward`` may call ``init_leaky()``: it starts a fresh run of the
    adapter, threshold included, and returns the initial state it will use).

    Args:
        host: the neuron to wrap (not copied: its parameters are shared).
        tau_v: threshold time constant; ``theta_v`` starts at ``1 / tau_v`` (HoSNN: 5,
            or 1.5 for MNIST-like data).
        shape: feature shape ``[*F]`` of the layer (without batch); default: taken from
            the first input. Create optimisers after the first forward (for instance after
            :func:`~robust_spikes.neurons.record_signature`) or pass ``shape``.
        detach_threshold: use the published, non-adaptive gradient.

    Shape:
        As the host: one step ``[N, *F]`` (or ``[T, N, *F]`` for SpikingJelly 'm' mode).

    Raises:
        TypeError: the host is not a supported neuron (the message names it and lists
            the supported ones).
        ValueError: ``tau_v`` not a positive finite number; ``shape`` not a sequence of
            positive ints.
        RuntimeError: at call time, no signature recorded yet, or more steps than the
            signature covers.

    Example:
        >>> import snntorch as snn
        >>> ta = ThresholdAdaptation(snn.Leaky(beta=0.9, init_hidden=True), shape=(3,))
        >>> ta.theta_v
        Parameter containing:
        tensor([0.2000, 0.2000, 0.2000], requires_grad=True)
    """

    host: Any
    theta_v: nn.Parameter
    signature: torch.Tensor
    _shell_setup: Any  # from the framework's adapter shell, see _adapter_class
    _dynamics: type[ThresholdDynamics]

    def __new__(cls, *args: Any, **kwargs: Any) -> ThresholdAdaptation:
        if cls is ThresholdAdaptation:  # the class for the host's framework
            host = args[0] if args else kwargs.get("host")
            return super().__new__(_adapter_class(_framework(host)))
        return super().__new__(cls)

    def __reduce_ex__(self, protocol: Any) -> Any:
        # The class is made per framework at run time (_adapter_class): pickles and
        # copies name the framework instead of the class.
        return (_rebuild, (self._framework_name,), self.__getstate__())

    def __init__(
        self,
        host: nn.Module,
        *,
        tau_v: float = 5.0,
        shape: tuple[int, ...] | None = None,
        detach_threshold: bool = False,
    ) -> None:
        framework = _framework(host)
        dynamics = framework.threshold_dynamics(host)
        super().__init__()
        if isinstance(tau_v, bool) or not (isinstance(tau_v, int | float) and tau_v > 0):
            raise ValueError(f"tau_v must be a positive number, got {tau_v!r}")
        if not math.isfinite(tau_v):
            raise ValueError(f"tau_v must be finite, got {tau_v!r}")
        # the shell registers its state before host is set: from then on, names the
        # adapter lacks are looked up on the host (NeuronAdapter.__getattr__)
        self._shell_setup(host, dynamics)  # the framework's adapter shell (_adapter_class)
        self.host = host
        self._framework_name = framework.name
        self._unforwarded = framework.unforwarded
        self.tau_v = float(tau_v)
        self.detach_threshold = bool(detach_threshold)
        self.kind: SignatureKind = "membrane"
        self.theta_v = nn.Parameter(torch.empty(0))
        self.register_buffer("signature", torch.empty(0))
        if shape is not None:
            self._materialize(_check_shape(shape))
        self._recording: list[torch.Tensor] | None = None
        self._recorded_samples = 0

    # ----------------------------------------------------------------- parameters
    def _materialize(self, shape: tuple[int, ...]) -> None:
        """Give ``theta_v`` its per-neuron shape in place (optimisers keep the object)."""
        if self.theta_v.numel() == 0:
            device, dtype = self.theta_v.device, self.theta_v.dtype
            with torch.no_grad():
                self.theta_v.data = torch.full(shape, 1.0 / self.tau_v, device=device, dtype=dtype)
        elif tuple(self.theta_v.shape) != shape:
            raise ValueError(
                f"{type(self).__name__} was built for features of shape "
                f"{tuple(self.theta_v.shape)}, got inputs with features {shape}"
            )

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        for name in ("theta_v", "signature"):
            incoming = state_dict.get(prefix + name)
            mine = getattr(self, name)
            if isinstance(incoming, torch.Tensor) and mine.numel() == 0:
                mine.data = torch.empty_like(incoming, device=mine.device, dtype=mine.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args)

    @property
    def base_threshold(self) -> torch.Tensor:
        """``theta_0``: the host's threshold (a tensor)."""
        return self._dynamics(self.host).base_threshold()

    # ----------------------------------------------------------------- dynamics
    def _adapter_step(
        self,
        dynamics: ThresholdDynamics,
        x: torch.Tensor,
        state: tuple[torch.Tensor, ...],
        threshold: torch.Tensor,
        step: int,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor]:
        """One TA-LIF step of the host: ``(spikes, state, Vth[t])`` from ``Vth[t-1]``."""
        u, state = dynamics.charge(state, x, threshold)
        threshold = self._next_threshold(threshold, u, x, step)
        raw = fire(
            dynamics.spike_function(),
            u,
            threshold,
            dynamics.base_threshold(),
            detach_threshold=self.detach_threshold,
        )
        spikes, state = dynamics.discharge(state, u, raw, threshold)
        return spikes, state, threshold

    def _next_threshold(
        self, previous: torch.Tensor, membrane: torch.Tensor, current: torch.Tensor, step: int
    ) -> torch.Tensor:
        """``Vth[t]`` from ``Vth[t-1]``; records the signature instead when recording."""
        signal = membrane if self.kind == "membrane" else current
        self._materialize(tuple(signal.shape[1:]))
        if self._recording is not None:
            while len(self._recording) <= step:
                self._recording.append(torch.zeros(signal.shape[1:], dtype=torch.float64))
            self._recording[step] += signal.detach().sum(0).to("cpu", torch.float64)
            if step == 0:
                self._recorded_samples += signal.shape[0]
            return previous
        if self.signature.numel() == 0:
            raise RuntimeError(
                f"{type(self).__name__} has no neural dynamic signature yet: call "
                "rs.neurons.record_signature(model, loader) on clean data first"
            )
        if step >= self.signature.shape[0]:
            raise RuntimeError(
                f"the neural dynamic signature covers {self.signature.shape[0]} steps; the "
                f"network ran step {step + 1}: record it again with the same num_steps"
            )
        threshold = adapt_threshold(previous, signal, self.signature[step], self.theta_v)
        return threshold.detach() if self.detach_threshold else threshold

    # ----------------------------------------------------------------- signature
    def start_recording(self, kind: SignatureKind = "membrane") -> None:
        """Record the signature over the next calls (threshold fixed at ``theta_0``)."""
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.kind = kind
        self._recording, self._recorded_samples = [], 0

    def stop_recording(self) -> None:
        """Store the per-step mean of the recorded signal as the signature ``[T, *F]``."""
        if not self._recording or self._recorded_samples == 0:
            self._recording = None
            raise RuntimeError(f"{type(self).__name__} recorded no step: did the data run?")
        mean = torch.stack(self._recording) / self._recorded_samples
        self.signature.data = mean.to(self.theta_v.device, self.theta_v.dtype)
        self._recording = None

    def extra_repr(self) -> str:
        shape = tuple(self.theta_v.shape) if self.theta_v.numel() else "lazy"
        steps = self.signature.shape[0] if self.signature.numel() else 0
        return (
            f"tau_v={self.tau_v}, shape={shape}, signature_steps={steps}, kind={self.kind!r}, "
            f"detach_threshold={self.detach_threshold}"
        )


def record_signature(
    model: nn.Module, loader: Any, *, kind: SignatureKind = "membrane"
) -> nn.Module:
    """Record the neural dynamic signature ``u*`` of every TA-LIF neuron of ``model``.

    Runs ``model`` (a :class:`~robust_spikes.SpikingClassifier`, which runs all steps
    and resets state per call) on the clean batches of ``loader`` with the thresholds
    held at ``theta_0``, and stores in each :class:`ThresholdAdaptation` the per-neuron,
    per-step mean of its membrane potential after integration (``kind="membrane"``, the
    paper's definition) or of its input current (``kind="trace"``, as the official code
    records post-synaptic traces). Every module runs in eval mode meanwhile (restored
    after), so batch-norm statistics are not touched.

    Args:
        model: the trained model containing ThresholdAdaptation neurons.
        loader: clean images in [0, 1]: a tensor ``[N, ...]``, an ``(images, labels)``
            pair or a Dataset of ``(image, label)`` pairs (run in batches of 256), or a
            DataLoader or other iterable of batches, each a tensor of images or an
            ``(images, labels)`` pair; labels are ignored.
        kind: ``"membrane"`` or ``"trace"``.

    Returns:
        ``model``, with the signatures set (buffers ``[T, *F]``, saved in ``state_dict``).

    Raises:
        ValueError: no ThresholdAdaptation in ``model``; bad ``kind``; ``loader`` of
            another kind.
        RuntimeError: ``loader`` produced no batch.

    Shape:
        ``loader`` batches: ``x`` of ``[N, C, H, W]`` or ``[N, F]`` in [0, 1]. Each
        signature: ``[num_steps, *F]`` for a layer with features ``[*F]``, in membrane
        units (``"membrane"``) or input-current units (``"trace"``).

    Example:
        >>> import snntorch as snn
        >>> import robust_spikes as rs
        >>> net = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True),
        ...                     nn.Linear(3, 2),
        ...                     snn.Leaky(beta=0.9, init_hidden=True, output=True))
        >>> model = rs.SpikingClassifier(rs.adapt(net, "ta-lif"), num_steps=5)
        >>> model = record_signature(model, [torch.rand(8, 4)])
        >>> model.net[1].signature.shape  # [T, F] for the 3 hidden neurons
        torch.Size([5, 3])
    """
    adapters = [m for m in model.modules() if isinstance(m, ThresholdAdaptation)]
    if not adapters:
        raise ValueError(
            f"model contains no ThresholdAdaptation neurons, got {type(model).__name__}; "
            "adapt it first: rs.adapt(net, 'ta-lif')"
        )
    batches = list(_data.image_batches(loader, "loader", batch_size=_SIGNATURE_BATCH))
    try:
        with kept_modes(model, eval=True), torch.no_grad():
            for a in adapters:
                a.start_recording(kind)
            if batches:  # a first call probes how to drive the network: not recorded
                model(batches[0])
                for a in adapters:
                    a.start_recording(kind)
            for x in batches:
                model(x)
        for a in adapters:
            a.stop_recording()
    finally:
        for a in adapters:
            a._recording = None
    return model


_CLASSES: dict[str, type[ThresholdAdaptation]] = {}


def _framework(host: Any) -> Host:
    framework = host_of(host) if isinstance(host, nn.Module) else None
    if framework is None:
        raise TypeError(
            "ThresholdAdaptation wraps a neuron of snnTorch or SpikingJelly (import the "
            f"framework first), got {type(host).__name__}"
        )
    return framework


def _adapter_class(framework: Host) -> type[ThresholdAdaptation]:
    """``ThresholdAdaptation`` combined with ``framework``'s adapter shell (made once)."""
    cls = _CLASSES.get(framework.name)
    if cls is None:
        shell = framework.adapter_shell()
        name = shell.__name__.removesuffix("Shell") + "ThresholdAdaptation"
        doc = f"TA-LIF around a {framework.name} neuron: see :class:`ThresholdAdaptation`."
        cls = type(name, (ThresholdAdaptation, shell), {"__module__": __name__, "__doc__": doc})
        _CLASSES[framework.name] = cls
    return cls


def _rebuild(framework_name: str) -> ThresholdAdaptation:
    cls = _adapter_class(host_named(framework_name))
    return cls.__new__(cls)


def _check_shape(shape: Any) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"shape must be a sequence of positive ints, got {shape!r}") from None
    if not out or any(s < 1 for s in out):
        raise ValueError(f"shape must be a sequence of positive ints, got {shape!r}")
    return out
