"""The validated settings of :func:`robust_spikes.evaluate`: radii, step counts, data and
certification, each refused with a message that names it."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from robust_spikes import _data
from robust_spikes.evaluation import _certify

__all__ = [
    "CERTIFY_KEYS",
    "CERTIFY_RADII",
    "NORMS",
    "as_data",
    "certify_settings",
    "check_certify",
    "check_eps",
    "steps_or_none",
]

NORMS = ("Linf", "L2")
CERTIFY_KEYS = ("sigma", "n0", "n", "alpha", "norm", "batch_size", "radii")
CERTIFY_RADII = {"l2": [0.0, 0.25, 0.5, 0.75, 1.0], "l1": [0.0, 0.1, 0.2, 0.3, 0.4]}


def check_eps(eps: Any, norm: str) -> list[float]:
    values = [eps] if isinstance(eps, numbers.Real) and not isinstance(eps, bool) else eps
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"eps must be a number or a non-empty sequence of numbers, got {eps!r}")
    out = []
    for e in values:
        ok = isinstance(e, numbers.Real) and not isinstance(e, bool) and math.isfinite(float(e))
        high = 1.0 if norm == "Linf" else math.inf
        if not (ok and 0.0 <= float(e) <= high):
            scale = "in [0, 1] (the image scale)" if norm == "Linf" else ">= 0"
            raise ValueError(f"eps must hold finite numbers {scale}, got {e!r} in {eps!r}")
        out.append(float(e))
    if len(set(out)) != len(out):
        raise ValueError(f"eps must not repeat a radius, got {eps!r}")
    return out


def steps_or_none(name: str, steps: Any) -> int | None:
    """A step count of an optional check: 0 or None skip it (as the CLI's 0 does)."""
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"{name} must be an int >= 0 (0 or None skips it), got {steps!r}")
    return steps or None


def as_data(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of ``data`` in any form of the one data contract (``_data``)."""
    x, y = _data.tensors(data, "data")
    return x.float(), y


def check_certify(model: nn.Module, certify: Any, seed: int) -> dict[str, Any] | None:
    """The certification settings with defaults filled in, or ``None``."""
    if certify is None:
        return None
    if not isinstance(certify, Mapping):
        raise ValueError(
            f"certify must be a dict of certification settings or None, got {certify!r}"
        )
    unknown = sorted(set(certify) - set(CERTIFY_KEYS))
    if unknown:
        raise ValueError(f"certify takes the keys {CERTIFY_KEYS}, got unknown keys {unknown}")
    norm = certify.get("norm", "l2")
    out: dict[str, Any] = {
        "sigma": certify.get("sigma"),
        "n0": certify.get("n0", 100),
        "n": certify.get("n", 1000),
        "alpha": certify.get("alpha", 0.001),
        "norm": norm,
        "batch_size": certify.get("batch_size", 1000),
    }
    try:
        certify_settings(model, out, seed)
    except ValueError as err:
        raise ValueError(f"certify: {err}") from None
    out["alpha"] = float(out["alpha"])
    out["sigma"] = None if out["sigma"] is None else float(out["sigma"])
    radii = certify.get("radii", CERTIFY_RADII.get(norm))
    try:
        values = [float(r) for r in radii]
    except (TypeError, ValueError):
        values = []
    bad = any(isinstance(r, bool) for r in radii) if isinstance(radii, Sequence) else True
    if bad or not values or not all(0.0 <= r < math.inf for r in values):
        raise ValueError(
            f"certify['radii'] must be a non-empty sequence of radii >= 0, got {radii!r}"
        )
    out["radii"] = sorted(set(values))
    return out


def certify_settings(model: nn.Module, c: Mapping[str, Any], seed: int) -> _certify._Settings:
    """:func:`certify`'s validated settings for the dict ``c`` of :func:`_check_certify`."""
    return _certify.check_settings(
        model, c["sigma"], c["n0"], c["n"], c["alpha"], c["batch_size"], c["norm"], None, seed
    )
