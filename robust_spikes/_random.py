"""Random draws from an explicit ``torch.Generator``, on any device.

All randomness of robust-spikes comes from a generator owned by the caller (usually the
:class:`~robust_spikes.SpikingClassifier`), never from the global RNG that several
torchattacks attacks re-seed on every call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import torch

__all__ = ["mixed_seed", "rand", "randn"]


def mixed_seed(namespace: str, *parts: object, bits: int = 62) -> int:
    """A ``bits``-bit seed mixed from ``parts`` by BLAKE2b, the one seed mixer of the package.

    Seeds derived this way depend on the values of ``parts`` only (never on process,
    order or machine), and different namespaces or parts give unrelated seeds:
    ``mixed_seed("evaluate", seed, first_index, tag)`` seeds one chunk of an evaluation.
    """
    key = ":".join([f"robust_spikes.{namespace}", *map(str, parts)]).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> (64 - bits)


def rand(
    shape: Sequence[int],
    generator: torch.Generator,
    *,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Uniform [0, 1) draws from ``generator``, returned on ``device``.

    Sampled on the generator's device (a CPU generator serves CUDA tensors too, at the
    cost of a copy), so results depend on the seed only, not on where the model runs.
    """
    return _draw(torch.rand, shape, generator, device, dtype)


def randn(
    shape: Sequence[int],
    generator: torch.Generator,
    *,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal draws from ``generator``, returned on ``device`` (see :func:`rand`)."""
    return _draw(torch.randn, shape, generator, device, dtype)


def _draw(
    sampler: Callable[..., torch.Tensor],
    shape: Sequence[int],
    generator: torch.Generator,
    device: torch.device | str,
    dtype: torch.dtype,
) -> torch.Tensor:
    out = sampler(tuple(shape), generator=generator, device=generator.device, dtype=dtype)
    return out.to(device)
