"""The time loops that run a network over ``num_steps`` steps, given its :class:`Plan`.

:func:`run_steps` calls the network once per step (the default path), :func:`run_sequence`
once on the whole sequence, and :func:`run_time_batched` runs the stateless layers of an
``nn.Sequential`` once on ``[T*N, ...]`` and only the neurons step by step (equal up to
floating-point summation order). Each returns ``(spikes, membrane)`` of the output layer,
``[T, N, K]`` each or ``None`` when the readout does not need it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from robust_spikes._plan import Plan, as_recording, split
from robust_spikes.frameworks import Host

__all__ = [
    "TRAIN_DEPENDENT",
    "CompiledRun",
    "InferenceGraph",
    "call_run",
    "run_sequence",
    "run_steps",
    "run_time_batched",
    "sequential_leaves",
    "time_batchable",
]


def call_run(run: Callable[..., Any], plan: Plan, x: torch.Tensor, seq: Any, steps: int) -> Any:
    """``run(plan, x, seq, steps)``: the one function the compiled path compiles."""
    return run(plan, x, seq, steps)


# dynamo probes ``.grad`` of non-leaf inputs (an encoded sequence, a normalised image)
# when it guards on them: torch's own noise.
_NON_LEAF_GRAD = "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed"


class CompiledRun:
    """:func:`call_run` through ``torch.compile``, compiled on the first call.

    Args:
        dynamic: ``torch.compile``'s ``dynamic``: ``True`` compiles one graph for every
            batch size (with the state emptied by ``Host.forget`` before each call, see
            :meth:`~robust_spikes.SpikingClassifier.compiled_inference`); ``None`` lets
            torch decide after the first recompile.
    """

    def __init__(self, dynamic: bool | None = None) -> None:
        self.dynamic = dynamic
        self._fn: Callable[..., Any] | None = None

    def __call__(
        self, run: Callable[..., Any], plan: Plan, x: torch.Tensor, seq: Any, steps: int
    ) -> Any:
        if self._fn is None:
            self._fn = torch.compile(call_run, dynamic=self.dynamic)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", _NON_LEAF_GRAD, UserWarning)
            return self._fn(run, plan, x, seq, steps)


class InferenceGraph(CompiledRun):
    """A dynamic-batch :class:`CompiledRun` for no-grad calls, checked once against eager.

    :meth:`check` runs the first call compiled and eager from the same generator state;
    where compiling fails or the logits differ (rtol 1e-4, atol 1e-4 of their scale), it
    warns and marks the graph unusable, so the caller's next calls run eager.
    """

    def __init__(self) -> None:
        super().__init__(dynamic=True)
        self.checked = False
        self.usable = True

    def __call__(
        self, run: Callable[..., Any], plan: Plan, x: torch.Tensor, seq: Any, steps: int
    ) -> Any:
        # inductor specialises its convolutions on batch-size ranges (1, 2-3, 4-15, 16+):
        # smaller batches are padded to MIN_BATCH rows (samples are independent, as the
        # classifier's probe checked), so one graph serves every batch size.
        n = x.shape[0]
        if n >= MIN_BATCH or plan.random:  # padding would shift a random net's draws
            return super().__call__(run, plan, x, seq, steps)
        x = _pad_rows(x, 0, MIN_BATCH)
        seq = _pad_rows(seq, 1, MIN_BATCH) if isinstance(seq, torch.Tensor) else seq
        out = super().__call__(run, plan, x, seq, steps)
        return tuple(_take_rows(t, n) for t in out)

    def check(
        self,
        call: Callable[[CompiledRun | None], torch.Tensor],
        generator: torch.Generator,
    ) -> torch.Tensor:
        """``call(self)`` compared with ``call(None)`` (eager); the eager logits where they
        differ, else the compiled ones."""
        state = generator.get_state()
        try:
            compiled: torch.Tensor | None = call(self)
        except Exception as err:  # no C++ compiler, an op inductor cannot lower, ...
            compiled, failure = None, f"{type(err).__name__}: {err}".splitlines()[0]
        generator.set_state(state)
        eager = call(None)
        self.checked = True
        if compiled is None:
            self.usable = False
            warnings.warn(
                f"compiled_inference: compiling failed ({failure}); running eager instead",
                RuntimeWarning,
                stacklevel=3,
            )
            return eager
        scale = float(eager.abs().max()) if eager.numel() else 0.0
        if torch.allclose(compiled, eager, rtol=1e-4, atol=1e-4 * max(scale, 1.0)):
            return compiled
        self.usable = False
        warnings.warn(
            "compiled_inference: the compiled graph's logits differ from the eager ones by "
            f"up to {float((compiled - eager).abs().max()):.3g}; running eager instead",
            RuntimeWarning,
            stacklevel=3,
        )
        return eager


# Layers whose batch statistics or masks over [T*N] would differ from per-step ones.
TRAIN_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def run_time_batched(
    host: Host,
    layers: list[nn.Module],
    plan: Plan,
    x: torch.Tensor,
    seq: torch.Tensor | None,
    num_steps: int,
    wants: tuple[bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Stateless layers once on ``[T*N, ...]``, only neurons looped over time.

    Layers before the first neuron run once on ``[N, ...]`` for a static encoder.
    Equal to :func:`run_steps` up to floating-point summation order.
    """
    neurons = plan.neurons
    want_spikes, want_membrane = wants
    h = x if seq is None else seq
    timed = seq is not None  # h is [T, N, ...]; else the static [N, ...]
    spk_seq = mem_seq = None
    for layer in layers:
        if layer not in neurons:
            h = layer(h.flatten(0, 1)).unflatten(0, (num_steps, -1)) if timed else layer(h)
            continue
        record = layer is plan.final and want_membrane and plan.no_membrane is None
        spikes, membrane = [], []
        for x_t in h.unbind(0) if timed else (h,) * num_steps:
            spk, mem = split(layer(x_t))
            spikes.append(spk)
            if record:
                membrane.append(mem if mem is not None else host.membrane(layer))
        h, timed = torch.stack(spikes), True
        if layer is plan.final:
            spk_seq, mem_seq = h, torch.stack(membrane) if record else None
    if plan.output == "value":  # layers after the output neuron: h is the output
        return None, h
    return (spk_seq if want_spikes else None), mem_seq


def run_steps(
    net: nn.Module,
    host: Host,
    plan: Plan,
    x: torch.Tensor,
    seq: torch.Tensor | None,
    num_steps: int,
    wants: tuple[bool, bool],
    carried: list[Any] | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The plain time loop: one call of ``net`` per step (the default path)."""
    final = plan.final
    frames = (x,) * num_steps if seq is None else seq.unbind(0)
    want_spikes, want_membrane = wants
    from_neuron = plan.output == "neuron"
    spikes: list[torch.Tensor] = []
    membrane: list[torch.Tensor] = []
    # carried: explicit state kept between the spans of SpikingClassifier._stream
    state: tuple[Any, ...] = () if carried is None else tuple(carried)
    if plan.num_state and not state:  # the first step: snnTorch's empty initial state
        state = tuple(host.initial_state(x) for _ in range(plan.num_state))
    for x_t in frames:
        out = net(x_t, *state)
        if plan.num_state:
            out, state = out[: -plan.num_state], tuple(out[-plan.num_state :])
            if len(out) == 1:
                out = out[0]
        spk, mem = split(out)
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


def run_sequence(
    net: nn.Module,
    host: Host,
    plan: Plan,
    x: torch.Tensor,
    seq: torch.Tensor | None,
    num_steps: int,
    wants: tuple[bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """One call of ``net`` on the whole sequence (SpikingJelly 'm', snnTorch tutorials)."""
    if seq is None and not plan.static_input:
        seq = x.unsqueeze(0).expand(num_steps, *x.shape)
    inp = x if seq is None else seq
    _, want_membrane = wants
    record = plan.output == "neuron" and want_membrane and plan.no_membrane is None
    final = plan.final
    if record:
        previous = getattr(final, "store_v_seq", False)
        host.record_membrane(final, True)
    try:
        out = net(inp)
        mem_seq = host.membrane_sequence(final) if record else None
    finally:
        if record:
            host.record_membrane(final, previous)
    out = as_recording(out)
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


def time_batchable(net: nn.Module, host: Host) -> list[nn.Module] | None:
    """The layers of ``net`` in call order if the time-batched path can run it.

    That is a (nested) ``nn.Sequential`` whose every leaf is a neuron or holds no state.
    """
    leaves = sequential_leaves(net)
    if leaves is None:
        return None
    neurons = set(map(id, host.neurons(net)))
    for m in leaves:
        if id(m) not in neurons and (host.neurons(m) or host.stateful(m)):
            return None
    return leaves


def sequential_leaves(net: nn.Module) -> list[nn.Module] | None:
    """The modules of a (nested) ``nn.Sequential`` in call order, or ``None``."""
    if not isinstance(net, nn.Sequential):
        return None
    leaves: list[nn.Module] = []
    for m in net:
        if isinstance(m, nn.Sequential):
            inner = sequential_leaves(m)
            if inner is None:
                return None
            leaves += inner
        else:
            leaves.append(m)
    return leaves


MIN_BATCH = 16  # rows of the smallest batch an InferenceGraph compiles for


def _pad_rows(t: torch.Tensor, dim: int, rows: int) -> torch.Tensor:
    """``t`` with its last row along ``dim`` repeated up to ``rows`` rows."""
    last = t.narrow(dim, t.shape[dim] - 1, 1)
    shape = list(t.shape)
    shape[dim] = rows - t.shape[dim]
    return torch.cat([t, last.expand(shape)], dim)


def _take_rows(t: Any, n: int) -> Any:
    """The first ``n`` samples of an output: ``[T, N, ...]`` recordings or ``[N, ...]``."""
    if not isinstance(t, torch.Tensor):
        return t
    return t[:, :n] if t.dim() >= 3 and t.shape[1] == MIN_BATCH else t[:n]
