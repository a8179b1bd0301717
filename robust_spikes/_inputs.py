"""What the classifier checks and does to its input before encoding it."""

from __future__ import annotations

from typing import Any

import torch

from robust_spikes._checks import check_images

__all__ = ["channel_view", "check_input", "check_normalize", "normalize"]


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, encoder: Any) -> torch.Tensor:
    """Per-channel normalisation; channels are dim 2 of batch-first frames."""
    if getattr(encoder, "sequence_input", False):
        if getattr(encoder, "channels", None) is not None:
            raise ValueError(
                "normalize is not supported with folded frames [N, T * C, H, W] "
                f"(encoder={encoder!r}); pass frames [N, T, C, H, W] with "
                "Frames(), or normalise the frames before the classifier"
            )
        m, s = channel_view(mean, x[:, 0]), channel_view(std, x[:, 0])
        return (x - m.unsqueeze(1)) / s.unsqueeze(1)
    return (x - channel_view(mean, x)) / channel_view(std, x)


def check_input(
    x: torch.Tensor, encoder: Any, input_range: tuple[float, float] | None
) -> torch.Tensor:
    """``x`` checked for the classifier: images, or batch-first frames for a frames encoder."""
    if getattr(encoder, "sequence_input", False):
        if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4, 5):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"x must be batch-first frames [N, T, F] or [N, T, C, H, W] (encoder="
                f"{encoder!r}), got shape {got}"
            )
        return check_images(x, ndims=(x.dim(),), value_range=input_range)
    return check_images(x, value_range=input_range)


def check_normalize(normalize: Any) -> tuple[torch.Tensor, torch.Tensor]:
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


def channel_view(stat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-channel statistic over ``x`` of shape ``[N, C, ...]``."""
    return stat.to(x.dtype).view(1, -1, *([1] * (x.dim() - 2)))
