"""Readouts: the logits ``[N, K]`` from the output layer's spikes or membrane over time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from robust_spikes._plan import Plan

__all__ = ["READOUTS", "Readout", "read_logits", "readout_wants"]

Readout = (
    Literal["membrane", "count"]
    | Callable[[torch.Tensor | None, torch.Tensor | None], torch.Tensor]
)
READOUTS = ("membrane", "count")


def readout_wants(readout: Readout) -> tuple[bool, bool]:
    """Whether ``readout`` needs (spikes, membrane)."""
    if readout == "membrane":
        return False, True
    if readout == "count":
        return True, False
    return True, True


def read_logits(
    readout: Readout,
    plan: Plan | None,
    spikes: torch.Tensor | None,
    membrane: torch.Tensor | None,
    batch: int,
) -> torch.Tensor:
    """Logits ``[batch, K]`` from the output layer's ``spikes`` and ``membrane`` over time
    (``[T, N, K]`` each, or ``None`` where the run did not record it).

    Raises:
        ValueError: the readout needs what the network does not give, or its result is
            not ``[batch, K]``.
    """
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
