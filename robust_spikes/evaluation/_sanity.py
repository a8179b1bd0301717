"""Sanity checks of :func:`~robust_spikes.evaluate` that need the model, not only records.

* undeclared randomness: a model whose ``is_stochastic`` is false but whose two calls on
  the same input differ (noise from the global RNG, snnTorch's ``spikegen.rate`` inside
  the network) is detected once, up front, and then evaluated as a stochastic model
  (EOT, votes; Athalye et al., ICML 2018);
* the other readout: for a :class:`~robust_spikes.SpikingClassifier` read by
  ``"membrane"`` or ``"count"``, each sample's clean prediction under the other readout,
  recorded so the ``readout-mismatch`` flag can be recomputed from records;
* the escalation's settings and its per-sample outcome in the records (see
  :class:`~robust_spikes.attacks.AdaptiveEnsemble`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from robust_spikes._modes import kept_modes
from robust_spikes.evaluation._sample import AttackOutcome, OtherReadout
from robust_spikes.evaluation._settings import Escalation, RandomnessProbe

_PROBE_SAMPLES = 4  # samples of the randomness probe
_PROBE_TOLERANCE = 1e-5  # relative logit difference that counts as "differ"


def undeclared_randomness(
    model: nn.Module, x_all: torch.Tensor, seed: int
) -> RandomnessProbe | None:
    """``RandomnessProbe(n, k)`` when two eval-mode calls on the same ``n`` samples, under
    two different global RNG states, differ on ``k > 0`` samples; else ``None``.

    The caller's RNG, the model's generator and the modules' train/eval modes are restored.
    """
    x = x_all[:_PROBE_SAMPLES].to(next((p.device for p in model.parameters()), x_all.device))
    generator = getattr(model, "generator", None)
    state = generator.get_state() if isinstance(generator, torch.Generator) else None
    try:
        with kept_modes(model, eval=True), torch.random.fork_rng(devices=[]), torch.no_grad():
            outputs = []
            for k in range(2):
                torch.manual_seed(seed + 7919 * (k + 1))
                outputs.append(model(x).detach().to(torch.float64).flatten(1))
    finally:
        if state is not None:
            generator.set_state(state)  # type: ignore[union-attr]
    a, b = outputs
    scale = max(1.0, float(a.abs().max()) if a.numel() else 1.0)
    differ = ((a - b).abs() > _PROBE_TOLERANCE * scale).any(1)
    k = int(differ.sum())
    return RandomnessProbe(samples=len(x), differed=k) if k else None


def other_readout(
    model: nn.Module, x: torch.Tensor, predict: Callable[[], torch.Tensor]
) -> list[OtherReadout | None]:
    """Each sample's clean prediction under the other built-in readout (``"count"`` for
    ``"membrane"`` and back), or ``None`` per sample where there is none; ``predict``
    predicts the chunk with the model as it is. ``model.readout`` is restored."""
    from robust_spikes.classifier import SpikingClassifier

    readout = getattr(model, "readout", None)
    if not isinstance(model, SpikingClassifier) or readout not in ("membrane", "count"):
        return [None] * len(x)
    other: Literal["membrane", "count"] = "count" if readout == "membrane" else "membrane"
    try:
        model.readout = other
        pred = predict()
    except ValueError:  # e.g. "count" on a network ending in a non-spiking layer
        return [None] * len(x)
    finally:
        model.readout = readout
    return [OtherReadout(readout=other, prediction=int(p)) for p in pred.tolist()]


def escalation_settings(
    model: nn.Module, norm: str, steps: int | None, samples: int | None, adaptive: list[Any]
) -> Escalation | None:
    """The escalation the adaptive ensemble runs (``None``: none can run), on at most
    ``samples`` gap samples per batch (``None``: all)."""
    from robust_spikes.attacks._ensemble import ESCALATE_RESTARTS, escalation_members, member_kind

    if steps is None or not any(member_kind(m) == "white-box" for m in adaptive):
        return None
    if not any(member_kind(m) != "white-box" for m in adaptive):
        return None
    return Escalation(
        steps=steps,
        restarts=ESCALATE_RESTARTS,
        surrogates=len(escalation_members(model, norm, steps)),  # type: ignore[arg-type]
        samples=samples,
    )


def with_escalation(
    adaptive: dict[str, list[AttackOutcome]], escalated: dict[float, list[bool | None]]
) -> dict[str, list[AttackOutcome]]:
    """The adaptive outcomes (``{repr(eps): per sample}``) of a chunk with each sample's
    escalation outcome (``"escalated"`` in the records) at the radii it was judged at."""
    out = dict(adaptive)
    for eps, outcomes in escalated.items():
        key = repr(eps)
        if key in out:
            out[key] = [
                dataclasses.replace(entry, escalated=outcome)
                for entry, outcome in zip(out[key], outcomes, strict=True)
            ]
    return out
