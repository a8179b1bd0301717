"""Batch-first event frames ``[N, T, ...]``: the sequence is the input itself."""

from __future__ import annotations

import torch

from robust_spikes._checks import check_num_steps
from robust_spikes.encoders._base import Encoder

__all__ = ["Frames", "frames"]


def frames(x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Time-major view ``[T, N, ...]`` of batch-first frames ``[N, T, ...]``.

    Event cameras (N-MNIST, DVS128 Gesture, CIFAR10-DVS) give a sequence of frames per
    sample, and a DataLoader over them (tonic, ``spikingjelly.datasets``) yields
    batch-first ``[N, T, C, H, W]``. Attack libraries treat dim 0 as the batch, so the
    attack boundary takes that layout and the network sees the frames one step each.

    Args:
        x: frames ``[N, T, ...]`` (``T`` frames per sample, e.g. event counts).
        num_steps: must equal ``T``: the frames are the time steps.

    Returns:
        ``x.transpose(0, 1)``, a view (no copy); its gradient is ``x``'s, frame by frame.

    Raises:
        ValueError: ``x`` has fewer than 3 dimensions, or ``T != num_steps``.

    Shape:
        x: ``[N, T, ...]``; returns ``[T, N, ...]``.

    Example:
        >>> frames(torch.zeros(5, 3, 2, 16, 16), 3).shape
        torch.Size([3, 5, 2, 16, 16])
    """
    num_steps = check_num_steps(num_steps)
    if not isinstance(x, torch.Tensor) or x.dim() < 3:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be batch-first frames [N, T, ...], got {got}")
    if x.shape[1] != num_steps:
        raise ValueError(
            f"x has {x.shape[1]} frames per sample (x.shape[1], x of shape "
            f"{tuple(x.shape)}), but num_steps={num_steps}: the frames are the time steps, "
            f"so pass num_steps={x.shape[1]} (or bin the events into {num_steps} frames)"
        )
    return x.transpose(0, 1)


class Frames(Encoder):
    """Batch-first event frames ``[N, T, ...]`` run over their ``T`` frames, one per step.

    With ``encoder=Frames()`` a :class:`~robust_spikes.SpikingClassifier` takes event
    data as a DataLoader over tonic or SpikingJelly's datasets yields it,
    ``[N, T, C, H, W]`` (or ``[N, T, F]``), and feeds frame ``t`` at step ``t``: to a
    step-by-step network (snnTorch, SpikingJelly single-step) one frame per call, to a
    SpikingJelly multi-step network the whole ``[T, N, ...]`` sequence. Attacks then
    perturb the frames themselves (use ``input_range=None`` or a count range for event
    counts; torchattacks clamps adversarial inputs to [0, 1], so attack binary or
    normalised frames). Deterministic; ``num_steps`` must equal ``T``.

    Shape:
        x: ``[N, T, ...]``; returns ``[num_steps, N, ...]`` with ``num_steps == T``.

    Example:
        >>> Frames()(torch.zeros(4, 6, 2, 8, 8), 6).shape
        torch.Size([6, 4, 2, 8, 8])
    """

    sequence_input = True

    def forward(
        self, x: torch.Tensor, num_steps: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return frames(x, num_steps)
