"""Threshold balancing: per-layer percentiles of the input current, layer by layer.

Rueckauer et al. ("Conversion of continuous-valued deep networks to efficient
event-driven networks", Frontiers in Neuroscience 2017) set each layer's scale from a
high percentile of its activations instead of the maximum; Sengupta et al. ("Going deeper
in spiking neural networks", Frontiers in Neuroscience 2019) set the thresholds layer by
layer on the spiking network itself, so each threshold sees the spikes its predecessors
really emit. Özdenizci & Legenstein (TMLR 2024) combine both with the 99.7th percentile.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from robust_spikes.frameworks import Host

__all__ = ["calibrate", "percentile"]


def percentile(values: torch.Tensor, q: float) -> float:
    """The ``q``-th percentile of ``values`` in float64, with linear interpolation.

    The same definition as ``numpy.percentile(values, q)`` (its default ``"linear"``
    method): rank ``(n - 1) * q / 100`` between the two nearest order statistics.
    Computed by selection (``kthvalue``), which has no size limit (``torch.quantile``
    refuses more than 2**24 values).

    Args:
        values: any non-empty tensor (flattened).
        q: percentile in [0, 100].

    Returns:
        The percentile as a Python float.

    Shape:
        values: any; returns a scalar.

    Raises:
        ValueError: empty ``values`` or ``q`` outside [0, 100].

    Example:
        >>> percentile(torch.tensor([1.0, 2.0, 3.0, 4.0]), 50)
        2.5
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q!r}")
    flat = values.detach().reshape(-1).to(torch.float64)
    n = flat.numel()
    if n == 0:
        raise ValueError("values must be non-empty, got an empty tensor")
    rank = (n - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, n - 1)
    lo = flat.kthvalue(low + 1).values
    if high == low:
        return float(lo)
    hi = flat.kthvalue(high + 1).values
    return float(lo + (hi - lo) * (rank - low))


class _Stop(Exception):
    """Raised by the recording hook: the rest of the network is not needed this step."""


@torch.no_grad()
def calibrate(
    net: nn.Module,
    layers: Sequence[tuple[nn.Module, str, str, float | None]],
    batches: Iterable[torch.Tensor],
    host: Host,
    *,
    q: float,
    steps: int,
) -> list[float]:
    """Set the threshold of each spiking layer, in order, from its input current.

    For layer ``l`` (the earlier ones already set), every batch runs the spiking network
    for ``steps`` steps from a reset state; the input current of layer ``l`` at every step
    is recorded and its ``q``-th percentile taken; the threshold is the maximum over the
    batches (at most the layer's cap). A layer that never receives a positive current
    keeps threshold 1 (with a warning).

    Args:
        net: the converted network (single-step: one call is one time step).
        layers: ``(neuron, threshold attribute, name, cap)`` in the order the network calls
            them; ``cap`` bounds the threshold (6 for ReLU6) or is ``None``.
        batches: calibration input batches.
        host: the host framework (to reset the state of ``net``).
        q: the percentile.
        steps: time steps per batch.

    Returns:
        The thresholds set, in the order of ``layers``.
    """
    batches = list(batches)
    stateful = host.stateful(net)
    found: list[float] = []
    for neuron, attr, name, cap in layers:
        best = -math.inf
        for x in batches:
            recorded: list[torch.Tensor] = []

            def record(_m: nn.Module, args: tuple[Any, ...], out: list[torch.Tensor] = recorded):
                out.append(args[0].detach().reshape(-1))
                raise _Stop

            handle = neuron.register_forward_pre_hook(record)
            host.reset(stateful)
            try:
                for _ in range(steps):
                    with contextlib.suppress(_Stop):
                        net(x)
            finally:
                handle.remove()
                host.reset(stateful)
            best = max(best, percentile(torch.cat(recorded), q))
        if not best > 0:
            warnings.warn(
                f"spiking layer {name!r} receives no positive input current at the "
                f"{q:g}th percentile on the calibration data (got {best:.4g}); its threshold "
                "is left at 1",
                RuntimeWarning,
                stacklevel=3,
            )
            best = 1.0
        if cap is not None:
            best = min(best, cap)
        getattr(neuron, attr).data.fill_(best)
        found.append(best)
    return found
