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
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from robust_spikes._checks import check_num_steps, check_positive_int, check_range
from robust_spikes._inputs import check_input, check_normalize, normalize
from robust_spikes._loops import (
    TRAIN_DEPENDENT,
    CompiledRun,
    InferenceGraph,
    run_sequence,
    run_steps,
    run_time_batched,
    time_batchable,
)
from robust_spikes._plan import Plan, discover
from robust_spikes._readout import READOUTS, Readout, read_logits, readout_wants
from robust_spikes.encoders import Direct, Encoder
from robust_spikes.frameworks import Host, detect

if TYPE_CHECKING:
    from robust_spikes.gradients import Surrogate
    from robust_spikes.gradients._modes import GradientContext

__all__ = ["SpikingClassifier"]


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
        if not (readout is None or callable(readout) or readout in READOUTS):
            raise ValueError(
                f"readout must be None (the framework's convention), one of {READOUTS} or a "
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
        self._plan: Plan | None = None
        self._call_hook: Callable[[torch.Tensor], torch.Tensor | None] | None = None
        self._layers = time_batchable(net, self._host)
        if time_batched and self._layers is None:
            raise ValueError(
                "time_batched=True needs a network that is an nn.Sequential (nested ones "
                "allowed) of stateless layers and neurons, got "
                f"{type(net).__name__} with modules {[type(m).__name__ for m in net.children()]}"
            )
        self.time_batched = time_batched
        self._use_compile = bool(compile)
        self._compiled = CompiledRun() if compile else None
        self._inference_graph: InferenceGraph | None = None  # made by compiled_inference
        self._inference: InferenceGraph | None = None  # active inside compiled_inference
        self._carried: list[Any] | None = None  # explicit state between _stream's spans
        self.register_buffer("_mean", None, persistent=False)
        self.register_buffer("_std", None, persistent=False)
        if normalize is not None:
            self._mean, self._std = check_normalize(normalize)

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

        torchattacks switches a model to eval for an attack and back with ``train()``.
        A plain ``train()`` would also unfreeze the modules a user froze in eval (batch
        norm, for instance); here every module gets back the mode it had when ``eval()``
        was called, unless a mode changed in between (then it is ``nn.Module.train``).

        Args:
            mode: ``True`` for training mode, ``False`` for eval mode.

        Returns:
            This classifier.

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
        x, plan = self._prepare(x)
        call = self._call_hook  # an active gradient mode's per-call hook
        if call is not None and (logits := call(x)) is not None:
            return logits  # a transfer model (the ANN twin) answered instead
        graph = self._graph()
        if isinstance(graph, InferenceGraph) and not graph.checked:
            return graph.check(lambda g: self._logits(plan, x, g), self.generator)
        return self._logits(plan, x, graph)

    def _logits(self, plan: Plan, x: torch.Tensor, graph: CompiledRun | None) -> torch.Tensor:
        host, net = self._host, self.net
        for m in plan.random:  # stochastic neurons draw from this classifier's generator
            m.generator = self.generator
        stateful = host.stateful(net)
        if graph is None:
            host.reset(stateful)
        else:  # a compiled graph must not guard on the last call's batch size
            host.forget(stateful)
        try:
            spikes, membrane = self._run(plan, x, self.num_steps, graph)
        finally:  # drop every reference to this call's graph
            if graph is None:
                host.reset(stateful)
            else:
                host.forget(stateful)
        return self._read(spikes, membrane, x.shape[0])

    def _graph(self) -> CompiledRun | None:
        """The compiled graph of this call: the inference graph for a no-grad call inside
        :meth:`compiled_inference`, else the ``compile=True`` one, else none (eager)."""
        inference = self._inference
        if inference is not None and inference.usable and not torch.is_grad_enabled():
            return inference
        return self._compiled

    @contextlib.contextmanager
    def compiled_inference(self) -> Iterator[None]:
        """Run the no-grad calls inside through one ``torch.compile`` graph for every batch size.

        For query attacks (:class:`~robust_spikes.attacks._square.Square`) where the
        forward pass is compute-bound: inductor fuses the neuron updates of all steps
        (3-6x faster on an MNIST conv SNN, 2 CPU cores). Compiling takes 10-30 s on 2
        CPU cores on the first call (seconds with inductor's on-disk cache). The first
        call's logits are compared with the eager ones; where compiling fails or they
        differ (rtol 1e-4), a warning says so and every call runs eager. Calls with
        gradients run as outside.
        """
        previous = self._inference
        if self._inference_graph is None:
            self._inference_graph = InferenceGraph()
        self._inference = self._inference_graph
        try:
            yield
        finally:
            self._inference = previous

    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, Plan]:
        """The checked, normalised input and the plan that drives the network on it."""
        x = check_input(x, self.encoder, self.input_range)
        if self._mean is not None and self._std is not None:
            x = normalize(x, self._mean, self._std, self.encoder)
        return x, self._plan_for(self._host.neurons(self.net), x)

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
            x, plan = self._prepare(x)
            if plan.static_input:  # its time loop (recording or logits) cannot be split
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
            spikes, membrane = self._run(plan, x, steps)
            return self._read(spikes, membrane, x.shape[0])

        try:
            yield span
        finally:
            self._carried = None
            host.reset(stateful)

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
        self, plan: Plan, x: torch.Tensor, steps: int, graph: CompiledRun | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        seq = self._frames(x, steps)  # encoding (and its random draws) stays outside compile
        if plan.kind == "sequence":
            run = self._run_sequence
        elif self._use_time_batched(plan, x):
            run = self._run_time_batched
        else:
            run = self._run_steps
        if graph is not None:  # one graph for all num_steps steps, fused by inductor
            return graph(run, plan, x, seq, steps)
        return run(plan, x, seq, steps)

    def _run_time_batched(
        self, plan: Plan, x: torch.Tensor, seq: torch.Tensor | None, num_steps: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        layers = self._layers or []
        return run_time_batched(self._host, layers, plan, x, seq, num_steps, self._wants())

    def _run_steps(
        self, plan: Plan, x: torch.Tensor, seq: torch.Tensor | None, num_steps: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        wants, carried = self._wants(), self._carried
        return run_steps(self.net, self._host, plan, x, seq, num_steps, wants, carried)

    def _run_sequence(
        self, plan: Plan, x: torch.Tensor, seq: torch.Tensor | None, num_steps: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return run_sequence(self.net, self._host, plan, x, seq, num_steps, self._wants())

    def _use_time_batched(self, plan: Plan, x: torch.Tensor) -> bool:
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
        return not any(m.training and isinstance(m, TRAIN_DEPENDENT) for m in layers)

    @property
    def readout_used(self) -> Readout:
        """The readout in use: ``readout`` as given, or the framework's convention for it.

        With ``readout=None``: the output membrane in snnTorch, the spike count in
        SpikingJelly, the output's mean for a non-spiking last layer or a network's own
        recording (see the class docs). Known after the first call.
        """
        if self.readout is not None:
            return self.readout
        plan = self._plan
        if plan is not None and plan.output == "neuron":
            return self._host.spiking_readout
        return "membrane"

    def _wants(self) -> tuple[bool, bool]:
        return readout_wants(self.readout_used)

    def _read(
        self, spikes: torch.Tensor | None, membrane: torch.Tensor | None, batch: int
    ) -> torch.Tensor:
        return read_logits(self.readout_used, self._plan, spikes, membrane, batch)

    # ------------------------------------------------------------------ discovery
    def _plan_for(self, neurons: list[nn.Module], x: torch.Tensor) -> Plan:
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
            seq = self._frames(x.detach(), self.num_steps, torch.Generator().manual_seed(0))
            self._plan = discover(self.net, self._host, key, mode, neurons, x, seq, self.num_steps)
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
            A context manager (``GradientContext``); entering it returns this model.

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
        from robust_spikes.gradients._modes import GradientContext

        return GradientContext(self, mode, surrogate)
