"""Shared machinery of the attack wrappers: argument checks, seeding, exact mode restore."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torchattacks.attack import Attack

from robust_spikes._modes import kept_modes
from robust_spikes._random import mixed_seed

__all__ = ["SeededAttack", "check_attack", "check_seed", "seeded"]

_MASK = (1 << 63) - 1


def check_seed(seed: Any) -> int:
    """Return ``seed`` if it is an int in ``[0, 2**63)`` (``bool`` excluded), else raise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= _MASK:
        raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}")
    return seed


def check_attack(name: str, attack: Any) -> Attack:
    """Return ``attack`` if it is a ``torchattacks.Attack`` on an ``nn.Module``, else raise."""
    if not isinstance(attack, Attack):
        raise TypeError(f"{name} must be a torchattacks.Attack, got {type(attack).__name__}")
    if not isinstance(attack.model, nn.Module):
        raise TypeError(
            f"{name}.model must be a torch.nn.Module, got {type(attack.model).__name__}"
        )
    return attack


def derive_seed(seed: int, salt: int) -> int:
    """A seed for generator number ``salt``, decorrelated from ``seed`` itself.

    Users often seed their own evaluation with ``manual_seed(seed)``; the attack's draws
    must not replay the evaluation's (the attack would then see the very masks it is
    scored on).
    """
    return mixed_seed("attack", seed, salt, bits=63)


def _generators(models: Sequence[nn.Module]) -> list[torch.Generator]:
    found: dict[int, torch.Generator] = {}
    for model in models:
        generator = getattr(model, "generator", None)
        if isinstance(generator, torch.Generator):
            found.setdefault(id(generator), generator)
    return list(found.values())


@contextlib.contextmanager
def seeded(seed: int, models: Sequence[nn.Module], inputs: Any) -> Iterator[None]:
    """Run a block with the global RNG and every model's generator seeded from ``seed``.

    The global RNG (CPU, and the CUDA device of ``inputs``) and the generators are put
    back as they were on exit, so the caller's random streams are unchanged.
    """
    devices: list[int] = []
    if isinstance(inputs, torch.Tensor) and inputs.is_cuda:
        index = inputs.device.index
        devices = [torch.cuda.current_device() if index is None else index]
    generators = _generators(models)
    states = [g.get_state() for g in generators]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for salt, generator in enumerate(generators):
            generator.manual_seed(derive_seed(seed, salt))
        try:
            yield
        finally:
            for generator, state in zip(generators, states, strict=True):
                generator.set_state(state)


class SeededAttack(Attack):
    """A torchattacks ``Attack`` whose every call is seeded and leaves no trace.

    On each call: the global RNG and the generators of :meth:`models` are seeded from
    ``seed`` and restored afterwards; the train/eval flag of every module of
    :meth:`models` is restored exactly (torchattacks itself restores only
    ``model.train()``, and leaves a model in train mode after
    ``set_model_training_mode(True)``).
    """

    def __init__(self, name: str, model: nn.Module, seed: int) -> None:
        super().__init__(name, model)
        self.seed = check_seed(seed)

    def models(self) -> list[nn.Module]:
        """The models this attack runs (their modes and generators are managed)."""
        return [self.model]

    def __call__(
        self, inputs: torch.Tensor, labels: torch.Tensor | None = None, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        models = self.models()
        with kept_modes(*models), seeded(self.seed, models, inputs):
            return super().__call__(inputs, labels, *args, **kwargs)
