"""How to drive a network: the plan that one probe call on the caller's batch finds.

A network may take one step per call (snnTorch ``init_hidden``, SpikingJelly ``'s'``), the
whole sequence (SpikingJelly ``'m'``), the static image and loop over time itself
(snnTorch tutorials, SpikingJelly 2.0's zoo), or explicit state arguments; it may return
spikes, a membrane, a recording or logits. :func:`discover` tells these apart by running
the network once, leaving its modes, buffers, random streams and state as it found them.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from robust_spikes._modes import kept_modes
from robust_spikes.frameworks import Host

__all__ = ["Plan", "as_recording", "check_batch_independence", "discover", "split", "state_args"]


@dataclass(frozen=True)
class Plan:
    """How to drive one network, found once per neuron layout (see :func:`discover`).

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


@torch.no_grad()
def discover(
    net: nn.Module,
    host: Host,
    key: tuple[Any, ...],
    mode: str,
    neurons: list[nn.Module],
    x: torch.Tensor,
    seq: torch.Tensor | None,
    num_steps: int,
) -> Plan:
    """Find how to drive ``net`` by probing it on the caller's batch ``x``.

    ``seq`` is the encoded sequence ``[num_steps, N, ...]`` of ``x`` (``None`` for a static
    encoder), drawn with a throwaway generator.


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
    final = neurons[-1]
    num_state = 0
    if mode == "unknown" and host.explicit_state(neurons):
        num_state = state_args(net, host.state_count(neurons))
    if mode == "sequence":
        probe = seq if seq is not None else x.detach().unsqueeze(0).expand(num_steps, *x.shape)
        batch_dim = 1
    else:
        probe = seq[0] if seq is not None else x.detach()
        batch_dim = 0
    initial = tuple(host.initial_state(x) for _ in range(num_state))
    calls: list[Any] = []
    handle = final.register_forward_hook(lambda _m, _i, out: calls.append(out))
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

    devices = [probe.device] if probe.device.type == "cuda" else []
    restore = contextlib.ExitStack()
    restore.enter_context(kept_modes(net, eval=True))
    restore.enter_context(torch.random.fork_rng(devices=devices))  # for nets drawing from it
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
            check_batch_independence(net, run, probe, out, batch_dim)
    finally:
        restore.close()
        handle.remove()
        host.reset(stateful)
        for m, generator in zip(random, generators, strict=True):
            m.generator = generator
    out = as_recording(out)
    first = out[0] if isinstance(out, tuple) else out
    if not isinstance(first, torch.Tensor):
        raise ValueError(
            "net must return a tensor, a tuple of tensors or a list of per-step tensors, "
            f"got {type(out).__name__}"
        )
    n, steps = x.shape[0], num_steps
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
    return Plan(key, kind, num_state, output, static, tuple(neurons), tuple(random), no_membrane)


def check_batch_independence(
    net: nn.Module,
    run: Callable[[torch.Tensor], Any],
    probe: torch.Tensor,
    out: Any,
    batch_dim: int,
) -> None:
    """Raise if a sample's output changes when the rest of the batch is reordered."""
    flipped = run(probe.flip(batch_dim))
    n = probe.shape[batch_dim]
    pairs = zip(_tensors(as_recording(out)), _tensors(as_recording(flipped)), strict=False)
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
            again = _tensors(as_recording(run(probe)))
            first = _tensors(as_recording(out))
            if any(not torch.equal(u, v) for u, v in zip(first, again, strict=False)):
                return
            raise ValueError(
                f"{type(net).__name__}'s output for a sample depends on the other "
                f"samples of the batch (max difference {diff:.3g} between the batch "
                "and the same batch in reverse order, in eval mode with its state reset); "
                "the likely cause is a network that loops over x.size(0) as time, "
                "written for time-major [T, N, ...] input, fed a static batch [N, ...]: "
                "pass one step per call (SpikingClassifier loops over time), or "
                "batch-first event frames [N, T, ...] with encoder=rs.encoders.Frames()"
            )


def split(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(spikes, membrane or None)`` from a neuron's output: a tensor, or a tuple whose
    first item is the spikes and last the membrane (snnTorch ``output=True``)."""
    if isinstance(out, tuple):
        return out[0], out[-1] if len(out) > 1 else None
    return out, None


def state_args(net: nn.Module, neuron_states: int) -> int:
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


def as_recording(out: Any) -> Any:
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
