"""The attack boundary: a snnTorch or SpikingJelly network as an ``[N, C, H, W] -> [N, K]`` model.

torchattacks, AutoAttack-style code and training loops call ``model(x)`` on images in
[0, 1] and expect float logits. A spiking network instead keeps membrane state between
calls and runs over time. :class:`SpikingClassifier` closes that gap: on every call it
resets every neuron of the wrapped network (recursively, before and after, so no
autograd graph survives the call), encodes the input to ``[T, N, ...]``, runs the
``num_steps`` steps the way the host framework expects, and reads out logits.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from robust_spikes._checks import check_images, check_num_steps, check_positive_int, check_range
from robust_spikes.encoders import Direct, Encoder
from robust_spikes.frameworks import Host, detect

if TYPE_CHECKING:
    from robust_spikes.gradients import GradientContext, Surrogate

__all__ = ["SpikingClassifier"]

Readout = (
    Literal["membrane", "count"]
    | Callable[[torch.Tensor | None, torch.Tensor | None], torch.Tensor]
)
_READOUTS = ("membrane", "count")


@dataclass(frozen=True)
class _Plan:
    """How to drive one network, found once per neuron layout (see ``_discover``).

    kind: ``"step"`` calls ``net`` once per time step; ``"sequence"`` calls it once.
    num_state: explicit state arguments per step (``net(x_t, *state) -> (*out, *state)``).
    output: ``"neuron"`` the net returns the final neuron's output (spikes, or a tuple
        whose first item is spikes and last the membrane); ``"value"`` a non-spiking
        value (e.g. a final Linear), read as the membrane; ``"recording"`` a tutorial-style
        ``[T, N, K]`` recording or a ``(spk_rec, mem_rec)`` tuple; ``"logits"`` ``[N, K]``
        from a network that runs its time loop and averages over time itself
        (SpikingJelly 2.0's model zoo).
    static_input: a sequence-kind net takes the static ``[N, ...]`` image (snnTorch
        tutorial style) rather than ``[T, N, ...]`` (SpikingJelly multi-step).
    neurons: the spiking neurons (adapters count as one), the last being the output layer.
    random: modules that draw from the classifier's generator (stochastic gates).
    no_membrane: why the output neuron's membrane cannot be read, or ``None``.
    """

    key: tuple[Any, ...]
    kind: Literal["step", "sequence"]
    num_state: int
    output: Literal["neuron", "value", "recording", "logits"]
    static_input: bool
    neurons: tuple[nn.Module, ...] = field(repr=False)
    random: tuple[Any, ...] = field(repr=False)  # modules drawing from the generator
    no_membrane: str | None = None

    @property
    def final(self) -> nn.Module:
        """The last spiking neuron in ``net.modules()`` order (the output layer)."""
        return self.neurons[-1]


class SpikingClassifier(nn.Module):
    """Wrap a spiking network as a classifier on images in [0, 1], returning logits.

    Every torchattacks attack runs against the result unmodified. The wrapped network is
    not changed: the classifier has no train/eval mode of its own (``model.training`` is
    the network's, so an attack that saves and restores the mode restores the network's,
    and ``train()`` after ``eval()`` gives every module back the mode ``eval()`` found),
    and its neuron state is reset on every call before and after the forward pass.

    Accepted networks (snnTorch 1.0, SpikingJelly 2.0):

    * snnTorch modules whose neurons use ``init_hidden=True`` (``nn.Sequential`` or
      nested), the last neuron with or without ``output=True``;
    * snnTorch tutorial-style modules whose ``forward(x)`` loops over time itself and
      returns a ``[T, N, K]`` recording or a ``(spk_rec, mem_rec)`` tuple;
    * snnTorch single-step modules with explicit state passing,
      ``forward(x_t, *state) -> (*outputs, *state)`` (e.g. a bare ``snn.Leaky``), state
      arguments with or without defaults (they start as snnTorch's empty tensor);
    * snnTorch networks of sequence neurons (``StateLeaky``, ``LinearLeaky``,
      ``LeakyParallel``), called once on ``[T, N, ...]``;
    * SpikingJelly networks in single-step (``'s'``) or multi-step (``'m'``) mode,
      including ``layer.SeqToANNContainer`` blocks, every neuron family (``BaseNode``,
      ``SimpleBaseNode``, the PSN family, ``GatedLIFNode``) and ``NonSpiking*Node``
      output layers, and SpikingJelly 2.0's model zoo, which runs its own time loop and
      returns ``[N, K]`` logits (used as they are).

    The first call probes the network on the given batch, in eval mode with its state,
    buffers and random streams left as found, to find which of these it is; it refuses
    a network whose output for a sample depends on the rest of the batch (e.g. a loop
    over ``x.size(0)`` as time, fed a static batch). With
    ``encoder=rs.encoders.Frames()``, inputs are batch-first event frames ``[N, T, ...]``
    run over their ``T == num_steps`` frames.

    Readouts: ``None`` (default) reads a network the way its framework trains it: the
    output membrane in snnTorch (its tutorials put the loss on ``mem``), the spike count
    in SpikingJelly (its tutorials put the loss on the output firing rate), and the
    output's time mean when the network ends in a non-spiking layer or returns its own
    recording (:attr:`readout_used` tells which). ``"membrane"`` is the time mean of the
    output layer's membrane: the final neuron's ``mem`` in snnTorch, its recorded ``v``
    in SpikingJelly (the post-reset potential), or the output itself when the network
    ends in a non-spiking layer. ``"count"`` sums the output spikes over time (ties are
    broken towards the first class). A callable receives ``(spikes, membrane)``, each
    ``[T, N, K]`` or ``None``. A readout that does not match how the network was trained
    gives near-chance accuracy; :func:`robust_spikes.evaluate` flags that.

    Args:
        net: the user's snnTorch or SpikingJelly network.
        num_steps: number of simulation time steps ``T`` (a positive int).
        encoder: maps ``[N, ...]`` to ``[T, N, ...]`` (an :class:`~robust_spikes.encoders.
            Encoder`); default :class:`~robust_spikes.encoders.Direct`.
        readout: ``None`` (the framework's convention), ``"membrane"``, ``"count"`` or a
            callable, see above.
        normalize: ``(mean, std)`` per channel, applied inside the model so that attacks
            work in the [0, 1] image scale; ``None`` for no normalisation.
        generator: source of all randomness of the encoder and stochastic neurons;
            default a new CPU generator seeded with 0.
        framework: ``"auto"``, ``"snntorch"`` or ``"spikingjelly"``.
        input_range: accepted ``(low, high)`` of input values (rounding of 1e-6 allowed),
            or ``None`` to accept any finite value (e.g. event counts, or attacks that
            query the model off the image domain, such as PGDRS, VMIFGSM or DeepFool).
        compile: run the time loop through ``torch.compile`` (inductor fuses the neuron
            updates of all steps, forward and backward). The first call compiles for about
            a minute on 2 CPU cores, and a new batch shape or input dtype recompiles once.
        time_batched: run stateless layers once on ``[T*N, ...]`` and only the neurons
            step by step; layers before the first neuron run once for a static encoder.
            ``None`` (default) uses it where it measured faster: on GPUs, and on CPUs when
            the encoder is static and a layer precedes the first neuron. It needs an
            ``nn.Sequential`` (nested allowed) of stateless layers and neurons with no batch
            norm or dropout in training mode (their statistics over ``[T*N]`` would differ).
            Results equal the plain loop up to floating-point summation order.

    Shape:
        x: ``[N, C, H, W]`` or ``[N, F]`` (with :class:`~robust_spikes.encoders.Frames`:
        ``[N, T, C, H, W]`` or ``[N, T, F]``); returns ``[N, K]`` float logits.

    Raises:
        ValueError: bad ``num_steps``, ``readout``, ``normalize``, ``input_range`` or
            ``framework``; a network without spiking neurons; at call time, inputs of the
            wrong rank, outside ``input_range``, NaN or inf, and readouts that are not
            ``[N, K]``.
        TypeError: an unsupported neuron type; non-float inputs.

    Example:
        >>> import snntorch as snn
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10),
        ...                     snn.Leaky(beta=0.9, init_hidden=True, output=True))
        >>> model = SpikingClassifier(net, num_steps=4)
        >>> model(torch.rand(3, 1, 8, 8)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        net: nn.Module,
        num_steps: int,
        *,
        encoder: Encoder | None = None,
        readout: Readout | None = None,
        normalize: tuple[Sequence[float], Sequence[float]] | None = None,
        generator: torch.Generator | None = None,
        framework: str = "auto",
        input_range: tuple[float, float] | None = (0.0, 1.0),
        compile: bool = False,
        time_batched: bool | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        if not (readout is None or callable(readout) or readout in _READOUTS):
            raise ValueError(
                f"readout must be None (the framework's convention), one of {_READOUTS} or a "
                f"callable, got {readout!r}"
            )
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.num_steps = check_num_steps(num_steps)
        self.input_range = check_range("input_range", input_range)
        self.readout = readout
        self.net = net
        self._found_modes: tuple[tuple[nn.Module, bool], ...] | None = None
        self.encoder = encoder if encoder is not None else Direct()
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self._host: Host = detect(net, framework)
        self._host.check_supported(self._host.neurons(net))
        self._check_declared_steps()
        self._plan: _Plan | None = None
        self._layers = _time_batchable(net, self._host)
        if time_batched and self._layers is None:
            raise ValueError(
                "time_batched=True needs a network that is an nn.Sequential (nested ones "
                "allowed) of stateless layers and neurons, got "
                f"{type(net).__name__} with modules {[type(m).__name__ for m in net.children()]}"
            )
        self.time_batched = time_batched
        self._use_compile = bool(compile)
        self._compiled: Callable[..., Any] | None = None
        self._carried: list[Any] | None = None  # explicit state between _stream's spans
        self.register_buffer("_mean", None, persistent=False)
        self.register_buffer("_std", None, persistent=False)
        if normalize is not None:
            self._mean, self._std = _check_normalize(normalize)

    @property
    def framework(self) -> str:
        """Name of the host framework of the wrapped network."""
        return self._host.name

    @property
    def is_stochastic(self) -> bool:
        """Whether two calls on the same input can differ (random encoder or neurons)."""
        if getattr(self.encoder, "is_stochastic", False):
            return True
        return any(getattr(m, "is_stochastic", False) for m in self.net.modules())

    # ------------------------------------------------------------------ modes
    # The wrapper has no mode of its own: ``training`` is the wrapped network's, so an
    # attack that saves ``model.training`` and restores it afterwards (torchattacks does)
    # restores the network's. ``nn.Module.__init__`` sets it before ``net`` exists.
    @property
    def training(self) -> bool:
        net = self.__dict__.get("_modules", {}).get("net")
        return bool(net.training) if net is not None else self.__dict__.get("_own_training", True)

    @training.setter
    def training(self, mode: bool) -> None:
        self.__dict__["_own_training"] = mode

    def train(self, mode: bool = True) -> SpikingClassifier:
        """Set train or eval mode; ``train()`` after ``eval()`` restores the modes ``eval()`` found.

        torchattacks switches a model to eval for an attack and back with ``train()``
        when it was training. A plain ``train()`` would switch every submodule to train,
        including those the user froze in eval (batch norm layers, for instance); here
        every module gets back exactly the mode it had when ``eval()`` was called, as long
        as no module's mode was changed in between. Otherwise it is ``nn.Module.train``.

        Args:
            mode: ``True`` for training mode, ``False`` for eval mode.

        Returns:
            This classifier.

        Shape:
            no tensors.

        Example:
            >>> import snntorch as snn
            >>> net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3),
            ...                     snn.Leaky(beta=0.9, init_hidden=True, output=True))
            >>> _ = net[1].eval()  # frozen batch norm in a training network
            >>> model = SpikingClassifier(net, num_steps=2)
            >>> model.training, model.eval().training, model.train().training
            (True, False, True)
            >>> net[1].training  # still frozen
            False
        """
        if not isinstance(mode, bool):
            raise ValueError(f"mode must be a bool, got {mode!r}")
        found, self._found_modes = self._found_modes, None
        if mode and found is not None and not any(m.training for m, _ in found):
            for m, training in found:
                m.training = training
            return self
        if not mode and self.training:
            found = tuple((m, m.training) for m in self.modules())
            super().train(False)
            self._found_modes = found
            return self
        return super().train(mode)

    @torch.no_grad()
    def predict(
        self,
        x: torch.Tensor,
        *,
        num_samples: int | None = None,
        method: Literal["vote", "mean"] = "vote",
    ) -> torch.Tensor:
        """Class predictions; for a stochastic model, aggregated over several forward passes.

        A stochastic classifier (Poisson or smoothing encoder, stochastic gates) answers
        differently on every call; report its accuracy with the number of samples used.

        Args:
            x: images ``[N, C, H, W]`` (or ``[N, F]``) as for :meth:`forward`.
            num_samples: forward passes to aggregate; default 1 for a deterministic model
                and 10 for a stochastic one.
            method: ``"vote"`` (majority vote of the per-sample argmax; ties go to the
                class with the larger mean softmax) or ``"mean"`` (argmax of mean logits).

        Returns:
            ``[N]`` int64 class indices.

        Raises:
            ValueError: bad ``num_samples`` or ``method``.

        Shape:
            x: ``[N, ...]``; returns ``[N]``.

        Example:
            >>> import snntorch as snn
            >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10),
            ...                     snn.Leaky(beta=0.9, init_hidden=True, output=True))
            >>> SpikingClassifier(net, 4).predict(torch.rand(3, 1, 8, 8)).shape
            torch.Size([3])
        """
        if method not in ("vote", "mean"):
            raise ValueError(f"method must be 'vote' or 'mean', got {method!r}")
        if num_samples is None:
            num_samples = 10 if self.is_stochastic else 1
        num_samples = check_positive_int("num_samples", num_samples)
        logits = self(x)
        logits_sum, votes, probs = logits.clone(), torch.zeros_like(logits), logits.softmax(1)
        votes += F.one_hot(logits.argmax(1), logits.shape[1])
        for _ in range(num_samples - 1):
            logits = self(x)
            logits_sum += logits
            votes += F.one_hot(logits.argmax(1), logits.shape[1])
            probs += logits.softmax(1)
        if method == "mean":
            return logits_sum.argmax(1)
        return (votes + 0.5 * probs / num_samples).argmax(1)  # probs < 1 only break ties

    def extra_repr(self) -> str:
        readout = self.readout_used if not callable(self.readout) else "callable"
        return f"num_steps={self.num_steps}, readout={readout!r}, framework={self.framework!r}"

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        if self._std is not None:
            x = self._normalize(x)
        host, net = self._host, self.net
        neurons = host.neurons(net)
        plan = self._plan_for(neurons, x)
        call = self.__dict__.get(GRADIENT_CALL)  # an active gradient mode's per-call hook
        if call is not None and (logits := call(x)) is not None:
            return logits  # a transfer model (the ANN twin) answered instead
        for m in plan.random:  # stochastic neurons draw from this classifier's generator
            m.generator = self.generator
        stateful = host.stateful(net)
        host.reset(stateful)
        try:
            spikes, membrane = self._run(plan, x, self.num_steps)
        finally:
            host.reset(stateful)  # drop every reference to this call's graph
        return self._read(spikes, membrane, x.shape[0])

    @contextlib.contextmanager
    def _stream(self) -> Iterator[Callable[[torch.Tensor, int], torch.Tensor]]:
        """Consecutive runs of a few steps each, the state carried from one to the next.

        Yields ``span(x, steps) -> logits``: it runs ``steps`` steps on the image ``x``
        starting from the state the previous span left, and reads the logits out of those
        steps alone. Between spans the state is detached (truncated back-propagation
        through time), so a span's backward pass covers its own steps and the weights may
        change in between. State is reset on entry and on exit. This is how
        :func:`robust_spikes.training.hire` runs HIRE-SNN's periods (Kundu et al., ICCV
        2021); always eager (``compile=True`` is not used here).

        Raises:
            TypeError: from ``span``, for a network that loops over time inside its own
                forward (snnTorch tutorial style): its steps cannot be split.
        """
        host, net = self._host, self.net
        stateful = host.stateful(net)
        host.reset(stateful)
        self._carried = []

        def span(x: torch.Tensor, steps: int) -> torch.Tensor:
            steps = check_num_steps(steps)
            x = self._check_input(x)
            if self._std is not None:
                x = self._normalize(x)
            plan = self._plan_for(host.neurons(net), x)
            if plan.output == "recording":
                raise TypeError(
                    f"{type(net).__name__} runs its own time loop inside forward, so its "
                    "steps cannot be split into periods; write it to take one step per "
                    "call (init_hidden=True or explicit state), or use SpikingJelly's "
                    "multi-step mode"
                )
            for m in plan.random:
                m.generator = self.generator
            host.detach(stateful)
            self._carried = [s.detach() for s in self._carried or ()]
            spikes, membrane = self._run(plan, x, steps, eager=True)
            return self._read(spikes, membrane, x.shape[0])

        try:
            yield span
        finally:
            self._carried = None
            host.reset(stateful)

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Per-channel normalisation; channels are dim 2 of batch-first frames."""
        assert self._mean is not None and self._std is not None
        if getattr(self.encoder, "sequence_input", False):
            if getattr(self.encoder, "channels", None) is not None:
                raise ValueError(
                    "normalize is not supported with folded frames [N, T * C, H, W] "
                    f"(encoder={self.encoder!r}); pass frames [N, T, C, H, W] with "
                    "Frames(), or normalise the frames before the classifier"
                )
            mean, std = _channel_view(self._mean, x[:, 0]), _channel_view(self._std, x[:, 0])
            return (x - mean.unsqueeze(1)) / std.unsqueeze(1)
        return (x - _channel_view(self._mean, x)) / _channel_view(self._std, x)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(self.encoder, "sequence_input", False):
            if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4, 5):
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(
                    f"x must be batch-first frames [N, T, F] or [N, T, C, H, W] (encoder="
                    f"{self.encoder!r}), got shape {got}"
                )
            return check_images(x, ndims=(x.dim(),), value_range=self.input_range)
        return check_images(x, value_range=self.input_range)

    def _frames(
        self, x: torch.Tensor, steps: int, generator: torch.Generator | None = None
    ) -> torch.Tensor | None:
        """The encoded sequence, or ``None`` when every step is ``x`` itself."""
        if getattr(self.encoder, "is_static", False):
            return None
        seq = self.encoder(x, steps, generator=generator or self.generator)
        if getattr(self.encoder, "sequence_input", False):  # [N, T, ...] reordered
            ok = isinstance(seq, torch.Tensor) and tuple(seq.shape[:2]) == (steps, x.shape[0])
            expected = f"[num_steps, N, ...] = [{steps}, {x.shape[0]}, ...]"
        else:
            ok = isinstance(seq, torch.Tensor) and seq.shape == (steps, *x.shape)
            expected = f"[num_steps, N, ...] = {[steps, *x.shape]}"
        if not ok:
            got = tuple(seq.shape) if isinstance(seq, torch.Tensor) else type(seq).__name__
            raise ValueError(f"encoder must return {expected}, got {got}")
        return seq

    def _run(
        self, plan: _Plan, x: torch.Tensor, steps: int, *, eager: bool = False
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        seq = self._frames(x, steps)  # encoding (and its random draws) stays outside compile
        if plan.kind == "sequence":
            run = self._run_sequence
        elif self._use_time_batched(plan, x):
            run = self._run_time_batched
        else:
            run = self._run_steps
        if self._use_compile and not eager:
            # One graph for all num_steps steps (forward and backward fused by inductor).
            if self._compiled is None:
                self._compiled = torch.compile(_call)
            with warnings.catch_warnings():
                # dynamo probes ``.grad`` of non-leaf inputs (an encoded sequence, a
                # normalised image) when it guards on them: torch's own noise.
                warnings.filterwarnings("ignore", _NON_LEAF_GRAD, UserWarning)
                return self._compiled(run, plan, x, seq, steps)
        return run(plan, x, seq, steps)

    def _use_time_batched(self, plan: _Plan, x: torch.Tensor) -> bool:
        layers = self._layers
        if layers is None or plan.num_state or self.time_batched is False:
            return False
        # Measured on 2 CPU cores (benchmarks/attack_step.py): the win there comes from
        # running the layers before the first neuron once for a static input; with a
        # sequence input, [T*N] neuron updates fall out of cache and the plain loop wins.
        hoists = getattr(self.encoder, "is_static", False) and layers[0] is not plan.neurons[0]
        if self.time_batched is None and x.device.type == "cpu" and not hoists:
            return False
        # Batch statistics and dropout masks over [T*N] differ from per-step ones.
        return not any(m.training and isinstance(m, _TRAIN_DEPENDENT) for m in layers)

    def _run_time_batched(
        self, plan: _Plan, x: torch.Tensor, seq: torch.Tensor | None, num_steps: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Stateless layers once on ``[T*N, ...]``, only neurons looped over time.

        Layers before the first neuron run once on ``[N, ...]`` for a static encoder.
        Equal to :meth:`_run_steps` up to floating-point summation order.
        """
        host, neurons = self._host, plan.neurons
        want_spikes, want_membrane = self._wants()
        h = x if seq is None else seq
        timed = seq is not None  # h is [T, N, ...]; else the static [N, ...]
        spk_seq = mem_seq = None
        for layer in self._layers or ():
            if layer not in neurons:
                h = layer(h.flatten(0, 1)).unflatten(0, (num_steps, -1)) if timed else layer(h)
                continue
            record = layer is plan.final and want_membrane and plan.no_membrane is None
            spikes, membrane = [], []
            for x_t in h.unbind(0) if timed else (h,) * num_steps:
                spk, mem = _split(layer(x_t))
                spikes.append(spk)
                if record:
                    membrane.append(mem if mem is not None else host.membrane(layer))
            h, timed = torch.stack(spikes), True
            if layer is plan.final:
                spk_seq, mem_seq = h, torch.stack(membrane) if record else None
        if plan.output == "value":  # layers after the output neuron: h is the output
            return None, h
        return (spk_seq if want_spikes else None), mem_seq

    def _run_steps(
        self, plan: _Plan, x: torch.Tensor, seq: torch.Tensor | None, num_steps: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The plain time loop: one call of ``net`` per step (the default path)."""
        net, host, final = self.net, self._host, plan.final
        frames = (x,) * num_steps if seq is None else seq.unbind(0)
        want_spikes, want_membrane = self._wants()
        from_neuron = plan.output == "neuron"
        spikes: list[torch.Tensor] = []
        membrane: list[torch.Tensor] = []
        carried = self._carried  # explicit state kept between the spans of _stream
        state: tuple[Any, ...] = () if carried is None else tuple(carried)
        if plan.num_state and not state:  # the first step: snnTorch's empty initial state
            state = tuple(host.initial_state(x) for _ in range(plan.num_state))
        for x_t in frames:
            out = net(x_t, *state)
            if plan.num_state:
                out, state = out[: -plan.num_state], tuple(out[-plan.num_state :])
                if len(out) == 1:
                    out = out[0]
            spk, mem = _split(out)
            if from_neuron:
                if want_spikes:
                    spikes.append(spk)
                if want_membrane and (mem is not None or plan.no_membrane is None):
                    membrane.append(mem if mem is not None else host.membrane(final))
            elif want_membrane:
                membrane.append(spk)
        if carried is not None:
            carried[:] = state
        return (
            torch.stack(spikes) if spikes else None,
            torch.stack(membrane) if membrane else None,
        )

    def _run_sequence(
        self, plan: _Plan, x: torch.Tensor, seq: torch.Tensor | None, num_steps: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """One call of ``net`` on the whole sequence (SpikingJelly 'm', snnTorch tutorials)."""
        if seq is None and not plan.static_input:
            seq = x.unsqueeze(0).expand(num_steps, *x.shape)
        inp = x if seq is None else seq
        _, want_membrane = self._wants()
        record = plan.output == "neuron" and want_membrane and plan.no_membrane is None
        host, final = self._host, plan.final
        if record:
            previous = getattr(final, "store_v_seq", False)
            host.record_membrane(final, True)
        try:
            out = self.net(inp)
            mem_seq = host.membrane_sequence(final) if record else None
        finally:
            if record:
                host.record_membrane(final, previous)
        out = _as_recording(out)
        spk, mem = (out[0], out[-1]) if isinstance(out, tuple) else (out, None)
        if plan.output == "logits":
            if not isinstance(spk, torch.Tensor) or spk.dim() != 2:
                got = tuple(spk.shape) if isinstance(spk, torch.Tensor) else type(spk).__name__
                raise ValueError(f"net returned {got}, expected logits [N, K] as on the probe")
            return None, spk.unsqueeze(0)
        if not isinstance(spk, torch.Tensor) or spk.dim() < 3 or spk.shape[0] != num_steps:
            got = tuple(spk.shape) if isinstance(spk, torch.Tensor) else type(spk).__name__
            raise ValueError(
                f"net returned a recording of shape {got}, expected [num_steps={num_steps}, "
                "N, K]: num_steps must match the number of steps the network runs"
            )
        if plan.output == "value":
            return None, spk
        if plan.output == "recording":
            return spk, mem if mem is not None else spk
        return spk, mem_seq if mem_seq is not None else mem

    @property
    def readout_used(self) -> Readout:
        """The readout in use: ``readout`` as given, or the framework's convention for it.

        With ``readout=None`` a network whose last layer spikes is read the way its
        framework's tutorials train it: the output membrane in snnTorch, the spike count
        (the firing rate times ``num_steps``) in SpikingJelly; a network that ends in a
        non-spiking layer, or returns its own recording, is read by that output's mean.
        Known after the first call (``"membrane"`` before).
        """
        if self.readout is not None:
            return self.readout
        plan = self._plan
        if plan is not None and plan.output == "neuron":
            return self._host.spiking_readout
        return "membrane"

    def _wants(self) -> tuple[bool, bool]:
        """Whether the readout needs (spikes, membrane)."""
        readout = self.readout_used
        if readout == "membrane":
            return False, True
        if readout == "count":
            return True, False
        return True, True

    def _read(
        self, spikes: torch.Tensor | None, membrane: torch.Tensor | None, batch: int
    ) -> torch.Tensor:
        plan = self._plan
        readout = self.readout_used
        if readout == "membrane":
            if membrane is None:
                why = plan.no_membrane if plan is not None else None
                raise ValueError(
                    f"readout='membrane' needs the output layer's membrane, but {why}; use "
                    "readout='count', or end the network in a non-spiking layer (e.g. a "
                    "Linear) whose output is read as the membrane"
                )
            logits = membrane.mean(0)
        elif readout == "count":
            if spikes is None:
                what = (
                    "returns logits [N, K] that it averaged over time itself"
                    if plan is not None and plan.output == "logits"
                    else "ends in a non-spiking layer"
                )
                raise ValueError(
                    f"readout='count' needs output spikes, but the network {what}; use "
                    "readout='membrane'"
                )
            logits = spikes.sum(0)
        else:
            assert callable(readout)
            logits = readout(spikes, membrane)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != batch:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise ValueError(
                f"readout {readout!r} must produce logits [N={batch}, K], got {got}; "
                "the network's output layer must give one value per class"
            )
        return logits

    # ------------------------------------------------------------------ discovery
    def _plan_for(self, neurons: list[nn.Module], x: torch.Tensor) -> _Plan:
        mode = self._host.step_mode(self.net, neurons)
        key = (mode, *map(id, neurons))
        if self._plan is None or self._plan.key != key:
            if not neurons:
                raise ValueError(
                    f"net contains no {self._host.name} spiking neurons (any more); "
                    "SpikingClassifier needs at least one"
                )
            self._host.check_supported(neurons)
            self._check_declared_steps()
            self._plan = self._discover(key, mode, neurons, x)
        plan = self._plan
        if plan.static_input and not getattr(self.encoder, "is_static", False):
            raise ValueError(
                f"encoder={self.encoder!r} produces a [num_steps, N, ...] sequence, but "
                f"{type(self.net).__name__} loops over time inside its own forward and takes "
                "the static image; use the default Direct encoder, or move the time loop "
                "out of the network (one step per call, e.g. init_hidden=True neurons)"
            )
        return plan

    def _check_declared_steps(self) -> None:
        """Refuse ``num_steps`` unequal to the ``T`` a module of the network was built for."""
        for name, steps in self._host.declared_steps(self.net):
            if steps != self.num_steps:
                raise ValueError(
                    f"num_steps={self.num_steps}, but the network's {name} was built for "
                    f"T={steps} time steps; pass num_steps={steps} (or build the network "
                    f"with T={self.num_steps})"
                )

    @torch.no_grad()
    def _discover(
        self, key: tuple[Any, ...], mode: str, neurons: list[nn.Module], x: torch.Tensor
    ) -> _Plan:
        """Find how to drive the network by probing it on the caller's batch.

        The probe runs the network the way ``mode`` suggests on the whole batch (a
        network may hard-code its batch size), counts the calls of the output neuron (more
        than one per call: the network loops over time itself), and reads the output's
        shape: per-step ``[N, K]``, a ``[T, N, K]`` recording, or ``[N, K]`` logits that
        the network averaged over time itself. With two or more samples it runs again on
        the batch in reverse order: a sample's outputs must not depend on the others.
        It runs with every module in eval mode (restored after), stochastic neurons on a
        throwaway generator, and state reset before and after, so batch-norm statistics,
        random streams and neuron state are left as they were.
        """
        net, host, final = self.net, self._host, neurons[-1]
        num_state = 0
        if mode == "unknown" and host.explicit_state(neurons):
            num_state = _state_args(net, host.state_count(neurons))
        seq = self._frames(x.detach(), self.num_steps, torch.Generator().manual_seed(0))
        if mode == "sequence":
            probe = (
                seq if seq is not None else x.detach().unsqueeze(0).expand(self.num_steps, *x.shape)
            )
            batch_dim = 1
        else:
            probe = seq[0] if seq is not None else x.detach()
            batch_dim = 0
        initial = tuple(host.initial_state(x) for _ in range(num_state))
        calls: list[Any] = []
        handle = final.register_forward_hook(lambda _m, _i, out: calls.append(out))
        modes = {m: m.training for m in net.modules()}
        random: list[Any] = [m for m in net.modules() if getattr(m, "uses_generator", False)]
        generators = [m.generator for m in random]
        stateful = host.stateful(net)

        def run(inp: torch.Tensor) -> Any:
            for m in random:  # the probe must not consume anybody's random stream
                m.generator = torch.Generator().manual_seed(0)
            calls.clear()
            host.reset(stateful)
            out = net(inp, *initial)
            if num_state:
                if not isinstance(out, tuple) or len(out) <= num_state:
                    got = f"{len(out)} values" if isinstance(out, tuple) else type(out).__name__
                    raise ValueError(
                        f"{type(net).__name__}.forward takes {num_state} state argument(s) "
                        f"after the input, so it must return (*outputs, *{num_state} new "
                        f"states), got {got}"
                    )
                out = out[:-num_state]
                out = out[0] if len(out) == 1 else out
            return out

        net.eval()
        devices = [probe.device] if probe.device.type == "cuda" else []
        restore = contextlib.ExitStack()  # the global RNG, for nets that draw from it
        restore.enter_context(torch.random.fork_rng(devices=devices))
        try:
            try:
                out = run(probe)
            except Exception as err:
                err.add_note(
                    f"(SpikingClassifier probed {type(net).__name__} with an input of shape "
                    f"{tuple(probe.shape)} to find how to drive it: one step [N, ...] per call "
                    "for step-wise networks, the static image once for networks that loop "
                    "over time in their own forward, [num_steps, N, ...] for multi-step ones)"
                )
                raise
            num_calls, last = len(calls), calls[-1] if calls else None
            if probe.shape[batch_dim] > 1 and not random:
                self._check_batch_independence(run, probe, out, batch_dim)
        finally:
            restore.close()
            handle.remove()
            host.reset(stateful)
            for m, training in modes.items():
                m.training = training
            for m, generator in zip(random, generators, strict=True):
                m.generator = generator
        out = _as_recording(out)
        first = out[0] if isinstance(out, tuple) else out
        if not isinstance(first, torch.Tensor):
            raise ValueError(
                "net must return a tensor, a tuple of tensors or a list of per-step tensors, "
                f"got {type(out).__name__}"
            )
        n, steps = x.shape[0], self.num_steps
        last_first = last[0] if isinstance(last, tuple) else last
        output: Literal["neuron", "value", "recording", "logits"]
        output = "neuron" if out is last or first is last_first else "value"
        if output == "neuron" and host.output_is_membrane(final):
            output = "value"
        kind: Literal["step", "sequence"] = "sequence" if mode == "sequence" else "step"
        static = False
        if mode == "sequence":
            if first.dim() == 2 and first.shape[0] == n:
                output = "logits"
            elif not (first.dim() >= 3 and tuple(first.shape[:2]) == (steps, n)):
                raise ValueError(
                    f"{type(net).__name__} returned shape {tuple(first.shape)} for an input "
                    f"of shape {tuple(probe.shape)}; expected a recording [num_steps={steps}, "
                    f"N={n}, K] or logits [N={n}, K]"
                )
        elif num_calls > 1 and not num_state:  # the network loops over time itself
            kind, static = "sequence", True
            if first.dim() == 2 and first.shape[0] == n:
                output = "logits"
                if num_calls != steps:
                    raise ValueError(
                        f"{type(net).__name__} runs {num_calls} time steps per call (its output "
                        f"neuron ran {num_calls} times), but num_steps={steps}; "
                        f"num_steps must match: pass num_steps={num_calls}"
                    )
            else:
                output = "recording"
        no_membrane = host.no_membrane(final, mode == "sequence")
        return _Plan(
            key, kind, num_state, output, static, tuple(neurons), tuple(random), no_membrane
        )

    def _check_batch_independence(
        self,
        run: Callable[[torch.Tensor], Any],
        probe: torch.Tensor,
        out: Any,
        batch_dim: int,
    ) -> None:
        """Raise if a sample's output changes when the rest of the batch is reordered."""
        flipped = run(probe.flip(batch_dim))
        n = probe.shape[batch_dim]
        pairs = zip(_tensors(_as_recording(out)), _tensors(_as_recording(flipped)), strict=False)
        for ta, tb in pairs:
            # The batch dimension of an output: 1 for recordings [T, N, ...], else 0.
            dim = 1 if ta.dim() >= 3 and ta.shape[1] == n else 0 if ta.shape[:1] == (n,) else None
            if dim is None or ta.shape != tb.shape:
                continue
            tb = tb.flip(dim)
            scale = float(ta.abs().max()) if ta.numel() else 0.0
            if not torch.allclose(ta.float(), tb.float(), rtol=1e-4, atol=1e-4 * (1 + scale)):
                diff = float((ta.float() - tb.float()).abs().max())
                # A network drawing random numbers itself (from the global RNG) differs
                # between two runs on the same batch: that is no evidence either way.
                again = _tensors(_as_recording(run(probe)))
                first = _tensors(_as_recording(out))
                if any(not torch.equal(u, v) for u, v in zip(first, again, strict=False)):
                    return
                raise ValueError(
                    f"{type(self.net).__name__}'s output for a sample depends on the other "
                    f"samples of the batch (max difference {diff:.3g} between the batch "
                    "and the same batch in reverse order, in eval mode with its state reset); "
                    "the likely cause is a network that loops over x.size(0) as time, "
                    "written for time-major [T, N, ...] input, fed a static batch [N, ...]: "
                    "pass one step per call (SpikingClassifier loops over time), or "
                    "batch-first event frames [N, T, ...] with encoder=rs.encoders.Frames()"
                )

    # ------------------------------------------------------------------ gradients
    def gradient(
        self, mode: str = "bptt", *, surrogate: Surrogate | None = None
    ) -> GradientContext:
        """A context in which attacks differentiate through the spikes in another way.

        Inside ``with model.gradient(...):`` the backward pass follows ``mode``; the
        forward pass stays bit-for-bit the model's own, and ``state_dict`` and train/eval
        modes are untouched. On exit, also by an exception, everything is restored.

        Modes (:data:`robust_spikes.gradients.MODES`): ``"bptt"`` replaces the spike
        function of every neuron (snnTorch ``spike_grad``, SpikingJelly
        ``surrogate_function``; under adapters, the framework neuron's) by ``surrogate``
        in the host's tie convention (snnTorch fires on ``u > Vth``, SpikingJelly on
        ``u >= Vth``), ``surrogate=None`` keeping the host's own; ``"pdsg"`` is
        ``"bptt"`` with the potential-dependent :class:`~robust_spikes.gradients.PDSG`;
        ``"bptr"`` (backward through the firing rate) and ``"rga"`` (rate gradient
        approximation) pass each spiking layer's gradient to its input current with a
        per-neuron rate factor of the call, without temporal unrolling; ``"ann"`` is the
        exception that changes the forward pass: ``model(x)`` returns the logits of the
        network's ReLU twin (same weights, neurons replaced by ReLU, the output neuron by
        the identity).

        Args:
            mode: a name from :data:`robust_spikes.gradients.MODES`.
            surrogate: a :class:`robust_spikes.gradients.Surrogate` (see
                :func:`robust_spikes.gradients.ensemble`) or ``None``.

        Returns:
            A :class:`robust_spikes.gradients.GradientContext`; entering it returns this
            model.

        Raises:
            ValueError: unknown ``mode`` (the message lists the modes); a ``surrogate``
                given to a mode that fixes its own.
            TypeError: ``surrogate`` not a Surrogate; on enter, a neuron whose spike
                function is not its framework's Heaviside step.
            RuntimeError: on enter, another gradient context is active on the network.

        Example:
            >>> import snntorch as snn
            >>> from robust_spikes.gradients import Triangle
            >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10),
            ...                     snn.Leaky(beta=0.9, init_hidden=True, output=True))
            >>> model = SpikingClassifier(net, num_steps=4)
            >>> x = torch.rand(2, 1, 8, 8, requires_grad=True)
            >>> with model.gradient("bptt", surrogate=Triangle(gamma=1.0)):
            ...     model(x).sum().backward()
            >>> x.grad.shape
            torch.Size([2, 1, 8, 8])
        """
        from robust_spikes.gradients import GradientContext

        return GradientContext(self, mode, surrogate)


# Attribute through which an active gradient mode hears of each call (robust_spikes.gradients):
# ``call(x)`` with the normalised input, after plan discovery and before the spiking run;
# it starts the mode's per-call state and returns ``None``, or logits that replace the run.
GRADIENT_CALL = "_gradient_call"
_NON_LEAF_GRAD = "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed"
_TRAIN_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def _split(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(spikes, membrane or None)`` from a neuron's output: a tensor, or a tuple whose
    first item is the spikes and last the membrane (snnTorch ``output=True``)."""
    if isinstance(out, tuple):
        return out[0], out[-1] if len(out) > 1 else None
    return out, None


def _call(run: Callable[..., Any], plan: _Plan, x: torch.Tensor, seq: Any, steps: int) -> Any:
    return run(plan, x, seq, steps)


def _time_batchable(net: nn.Module, host: Host) -> list[nn.Module] | None:
    """The layers of ``net`` in call order if the time-batched path can run it.

    That is a (nested) ``nn.Sequential`` whose every leaf is a neuron or holds no state.
    """
    leaves = _sequential_leaves(net)
    if leaves is None:
        return None
    neurons = set(map(id, host.neurons(net)))
    for m in leaves:
        if id(m) not in neurons and (host.neurons(m) or host.stateful(m)):
            return None
    return leaves


def _sequential_leaves(net: nn.Module) -> list[nn.Module] | None:
    """The modules of a (nested) ``nn.Sequential`` in call order, or ``None``."""
    if not isinstance(net, nn.Sequential):
        return None
    leaves: list[nn.Module] = []
    for m in net:
        if isinstance(m, nn.Sequential):
            inner = _sequential_leaves(m)
            if inner is None:
                return None
            leaves += inner
        else:
            leaves.append(m)
    return leaves


def _state_args(net: nn.Module, neuron_states: int) -> int:
    """Number of state arguments of ``net.forward(x, *state)`` (0 if only ``x``).

    A bare neuron or a ``forward(x, *state)`` takes the state of all its neurons;
    otherwise the positional parameters after ``x`` are the state, with or without
    defaults.
    """
    params = inspect.signature(net.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return neuron_states
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return max(len(positional) - 1, 0)


def _as_recording(out: Any) -> Any:
    """A list of per-step tensors (SpikingJelly's ``NonSpikingBaseNode`` without a
    ``decode``) stacked to ``[T, ...]``; anything else unchanged."""
    if isinstance(out, list) and out and all(isinstance(t, torch.Tensor) for t in out):
        return torch.stack(out)
    return out


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, tuple | list):
        return [t for t in out if isinstance(t, torch.Tensor)]
    return []


def _check_normalize(normalize: Any) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        mean, std = normalize
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
    except (TypeError, ValueError):
        raise ValueError(f"normalize must be None or (mean, std), got {normalize!r}") from None
    if mean_t.numel() != std_t.numel() or not bool((std_t > 0).all()):
        raise ValueError(
            f"normalize must be (mean, std) of equal length with std > 0, got {normalize!r}"
        )
    return mean_t, std_t


def _channel_view(stat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-channel statistic over ``x`` of shape ``[N, C, ...]``."""
    return stat.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
