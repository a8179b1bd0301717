"""Batch-first event frames ``[N, T, ...]``: the sequence is the input itself."""

from __future__ import annotations

import torch

from robust_spikes._checks import check_num_steps, check_positive_int
from robust_spikes.encoders._base import Encoder

__all__ = ["Frames", "frames"]


def frames(x: torch.Tensor, num_steps: int, *, channels: int | None = None) -> torch.Tensor:
    """Time-major ``[T, N, ...]`` copy of batch-first frames ``[N, T, ...]``.

    Event cameras (N-MNIST, DVS128 Gesture, CIFAR10-DVS) give a sequence of frames per
    sample, and a DataLoader over them (tonic, ``spikingjelly.datasets``) yields
    batch-first ``[N, T, C, H, W]``. Attack libraries treat dim 0 as the batch, so the
    attack boundary takes that layout and the network sees the frames one step each.
    Several torchattacks attacks (APGD, AutoAttack, Square, DIFGSM, ...) take 4-D
    images only: for them fold time into channels, ``[N, T * C, H, W]``, and pass
    ``channels=C``.

    Args:
        x: frames ``[N, T, ...]`` (``T`` frames per sample, e.g. event counts), or with
            ``channels`` folded frames ``[N, T * channels, H, W]``.
        num_steps: must equal ``T``: the frames are the time steps.
        channels: channels per frame of folded input; ``None`` for ``[N, T, ...]``.

    Returns:
        The frames ``[T, N, ...]``, contiguous, as is the gradient that flows back to
        ``x`` (attacks that ``view`` the gradient need that).

    Raises:
        ValueError: ``x`` of the wrong rank, or ``T != num_steps``.

    Shape:
        x: ``[N, T, ...]`` or ``[N, T * C, H, W]``; returns ``[T, N, ...]``
        (``[T, N, C, H, W]``).

    Example:
        >>> frames(torch.zeros(5, 3, 2, 16, 16), 3).shape
        torch.Size([3, 5, 2, 16, 16])
        >>> frames(torch.zeros(5, 6, 16, 16), 3, channels=2).shape
        torch.Size([3, 5, 2, 16, 16])
    """
    num_steps = check_num_steps(num_steps)
    if channels is not None:
        channels = check_positive_int("channels", channels)
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be folded frames [N, T * C, H, W], got {got}")
        if x.shape[1] != num_steps * channels:
            raise ValueError(
                f"x has {x.shape[1]} channels (x of shape {tuple(x.shape)}), but folded "
                f"frames have num_steps * channels = {num_steps} * {channels} = "
                f"{num_steps * channels}"
            )
        x = x.unflatten(1, (num_steps, channels))
    if not isinstance(x, torch.Tensor) or x.dim() < 3:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be batch-first frames [N, T, ...], got {got}")
    if x.shape[1] != num_steps:
        raise ValueError(
            f"x has {x.shape[1]} frames per sample (x.shape[1], x of shape "
            f"{tuple(x.shape)}), but num_steps={num_steps}: the frames are the time steps, "
            f"so pass num_steps={x.shape[1]} (or bin the events into {num_steps} frames)"
        )
    return torch.stack(x.unbind(1))  # backward: stack along dim 1, contiguous like x


class Frames(Encoder):
    """Batch-first event frames ``[N, T, ...]`` run over their ``T`` frames, one per step.

    With ``encoder=Frames()`` a :class:`~robust_spikes.SpikingClassifier` takes event
    data as a DataLoader over tonic or SpikingJelly's datasets yields it,
    ``[N, T, C, H, W]`` (or ``[N, T, F]``), and feeds frame ``t`` at step ``t``: to a
    step-by-step network (snnTorch, SpikingJelly single-step) one frame per call, to a
    SpikingJelly multi-step network the whole ``[T, N, ...]`` sequence. Attacks then
    perturb the frames themselves (use ``input_range=None`` or a count range for event
    counts; torchattacks clamps adversarial inputs to [0, 1], so attack binary or
    normalised frames). Deterministic; ``num_steps`` must equal ``T``. For attacks that
    take 4-D images only (APGD, AutoAttack, Square, DIFGSM, ...), pass frames folded to
    ``[N, T * C, H, W]`` and ``channels=C``.

    Args:
        channels: channels ``C`` per frame of folded input ``[N, T * C, H, W]``;
            ``None`` (default) for ``[N, T, ...]``.

    Shape:
        x: ``[N, T, ...]`` (or ``[N, T * C, H, W]``); returns ``[num_steps, N, ...]``
        with ``num_steps == T``.

    Example:
        >>> Frames()(torch.zeros(4, 6, 2, 8, 8), 6).shape
        torch.Size([6, 4, 2, 8, 8])
        >>> Frames(channels=2)(torch.zeros(4, 12, 8, 8), 6).shape
        torch.Size([6, 4, 2, 8, 8])
    """

    sequence_input = True

    def __init__(self, channels: int | None = None) -> None:
        super().__init__()
        self.channels = None if channels is None else check_positive_int("channels", channels)

    def extra_repr(self) -> str:
        return "" if self.channels is None else f"channels={self.channels}"

    def forward(
        self, x: torch.Tensor, num_steps: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return frames(x, num_steps, channels=self.channels)

    def expected_input(self, x: torch.Tensor, num_steps: int) -> torch.Tensor:
        """The mean frame ``[N, ...]`` (``[N, C, H, W]`` for folded input)."""
        return frames(x, num_steps, channels=self.channels).mean(0)
