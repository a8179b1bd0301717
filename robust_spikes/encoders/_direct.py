"""Direct (analog) input coding."""

from __future__ import annotations

import torch

from robust_spikes.encoders._base import Encoder


def direct(x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Repeat the analog input at every step (a view, no copy).

    Shape:
        x: ``[N, ...]``; returns ``[num_steps, N, ...]``.

    Example:
        >>> direct(torch.ones(2, 3), 4).shape
        torch.Size([4, 2, 3])
    """
    return x.unsqueeze(0).expand(num_steps, *x.shape)


class Direct(Encoder):
    """Direct input: the image is the input current at every time step.

    The coding of HIRE-SNN (Kundu et al., ICCV 2021) and of most deep SNNs trained with
    surrogate gradients. Deterministic, gradient is the identity summed over steps.

    Shape:
        x: ``[N, ...]``; returns ``[num_steps, N, ...]``.

    Example:
        >>> Direct()(torch.zeros(5, 1, 8, 8), 3).shape
        torch.Size([3, 5, 1, 8, 8])
    """

    is_static = True

    def forward(
        self, x: torch.Tensor, num_steps: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return direct(x, num_steps)
