"""The encoder interface: images ``[N, ...]`` to a time-major sequence ``[T, N, ...]``."""

from __future__ import annotations

import torch
from torch import nn


class Encoder(nn.Module):
    """Base class of encoders that :class:`~robust_spikes.SpikingClassifier` takes.

    An encoder maps a batch ``x`` of shape ``[N, ...]`` to ``[num_steps, N, ...]`` and
    must be differentiable with respect to ``x`` (otherwise attacks silently fail).

    Attributes:
        is_stochastic: the output is random; randomness must come from ``generator``.
        is_static: every step equals ``x`` itself, so a network may be fed ``x`` at every
            step without materialising the sequence (a speed hint, never a semantic one).
        sequence_input: the input is already a batch-first sequence ``[N, T, ...]`` (event
            frames) that the encoder only reorders to ``[T, N, ...]``.

    Shape:
        ``forward(x, num_steps)``: x: ``[N, ...]`` (e.g. ``[N, C, H, W]`` in [0, 1]);
        returns ``[num_steps, N, ...]``.

    Example:
        >>> class Repeat(Encoder):
        ...     is_static = True
        ...     def forward(self, x, num_steps, *, generator=None):
        ...         return x.unsqueeze(0).expand(num_steps, *x.shape)
        >>> x = torch.rand(2, 1, 3, 3, requires_grad=True)
        >>> out = Repeat()(x, 4)
        >>> out.shape
        torch.Size([4, 2, 1, 3, 3])
        >>> out.sum().backward()  # differentiable in x, as attacks need
        >>> x.grad.unique()
        tensor([4.])
    """

    is_stochastic: bool = False
    is_static: bool = False
    sequence_input: bool = False

    def forward(
        self, x: torch.Tensor, num_steps: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        raise NotImplementedError

    def expected_input(self, x: torch.Tensor, num_steps: int) -> torch.Tensor:
        """The time average of what the network sees per step, ``[N, ...]``, differentiable.

        What a rate model of the network (the ANN twin of a transfer attack) takes: ``x``
        itself for rate codes (direct input, Poisson and smoothing coding, whose expected
        frame is ``x``); encoders whose frames differ from ``x`` override it.
        """
        return x
