"""Argument validation with messages that name the argument and the value received."""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = [
    "check_count",
    "check_images",
    "check_num_steps",
    "check_positive_int",
    "check_range",
]


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an ``int`` >= 1 (``bool`` excluded), else raise."""
    return check_count(name, value, minimum=1)


def check_count(name: str, value: Any, *, minimum: int) -> int:
    """Return ``value`` if it is an ``int`` >= ``minimum`` (``bool`` excluded), else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return value


def check_num_steps(num_steps: Any) -> int:
    """Validate ``num_steps`` (a positive int)."""
    return check_positive_int("num_steps", num_steps)


def check_range(name: str, value: Any) -> tuple[float, float] | None:
    """Validate an optional ``(low, high)`` pair of finite floats with ``low < high``."""
    if value is None:
        return None
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be None or a pair (low, high), got {value!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"{name} must be finite with low < high, got {value!r}")
    return low, high


def check_images(
    x: Any,
    *,
    name: str = "x",
    ndims: tuple[int, ...] = (2, 4),
    value_range: tuple[float, float] | None = (0.0, 1.0),
    atol: float = 1e-6,
) -> torch.Tensor:
    """Check a batch of inputs: a float tensor of an accepted rank, finite, within a range.

    The common case (a valid batch) costs one fused ``aminmax`` reduction and one
    host synchronisation; the detailed diagnosis runs only when that check fails.

    Raises:
        TypeError: ``x`` is not a tensor or not floating point.
        ValueError: wrong rank, empty batch, NaN or inf, or values outside ``value_range``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (images in [0, 1]), got dtype {x.dtype}"
        )
    if x.dim() not in ndims:
        expected = " or ".join({2: "[N, F]", 3: "[N, C, L]", 4: "[N, C, H, W]"}[d] for d in ndims)
        raise ValueError(f"{name} must have shape {expected}, got shape {tuple(x.shape)}")
    if x.shape[0] == 0 or x.numel() == 0:
        raise ValueError(f"{name} must be a non-empty batch, got shape {tuple(x.shape)}")
    lo, hi = torch.aminmax(x.detach())
    low, high = value_range if value_range is not None else (-math.inf, math.inf)
    # NaN fails both comparisons, inf fails the finite check below.
    if bool((lo >= low - atol) & (hi <= high + atol) & torch.isfinite(lo) & torch.isfinite(hi)):
        return x
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} must be finite, got {bad} NaN or inf values")
    raise ValueError(
        f"{name} must have values in [{low:g}, {high:g}] (pass input_range=None or a wider "
        f"range for data that is not an image in [0, 1]), got shape {tuple(x.shape)} "
        f"with min {float(lo):.4g} and max {float(hi):.4g}"
    )
