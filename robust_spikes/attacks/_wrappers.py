"""Attack wrappers: a chosen gradient mode, and transfer from a source model."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torchattacks.attack import Attack

from robust_spikes.attacks._base import SeededAttack, check_attack

if TYPE_CHECKING:
    from robust_spikes.gradients import Surrogate

__all__ = ["GradientModeAttack", "Transfer"]


class GradientModeAttack(SeededAttack):
    """Run an attack with the model's backward pass in a chosen gradient mode.

    Each call runs ``attack`` inside ``with model.gradient(mode, surrogate=surrogate):``
    (:meth:`~robust_spikes.SpikingClassifier.gradient`): only the backward pass changes,
    the forward pass is the model's own, so the adversarial examples are valid for the
    true model. The context is released when the call ends, also by an exception.
    SNN-RAT (Ding et al., NeurIPS 2022) and Özdenizci & Legenstein (TMLR 2024) show
    that the surrogate and gradient mode decide how strong a gradient attack is.

    Args:
        attack: a ``torchattacks.Attack`` on a :class:`~robust_spikes.SpikingClassifier`
            (or on an :class:`~robust_spikes.attacks.Expectation` of one); it is used
            as it is, not copied.
        mode: a name from :data:`robust_spikes.gradients.MODES`.
        surrogate: for ``"bptt"``, a :class:`robust_spikes.gradients.Surrogate`, or
            ``None`` for the host's own.
        seed: each call seeds the global RNG and the model's ``generator`` from it
            (both restored afterwards).

    Returns:
        Calling the attack returns the adversarial examples, shaped like the inputs.

    Shape:
        inputs: ``[N, C, H, W]`` (as the attack accepts), labels ``[N]``.

    Raises:
        TypeError: ``attack`` is not a ``torchattacks.Attack``, or its model has no
            ``gradient`` method; ``surrogate`` is not a Surrogate.
        ValueError: unknown ``mode`` (the message lists the modes), a ``surrogate`` the
            mode does not take, or a bad ``seed``.
        RuntimeError: at call time, another gradient context is active on the model.

    Example:
        >>> import snntorch as snn, torchattacks
        >>> from torch import nn
        >>> from robust_spikes import SpikingClassifier
        >>> from robust_spikes.gradients import Triangle
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3),
        ...                     snn.Leaky(beta=0.9, init_hidden=True, output=True))
        >>> model = SpikingClassifier(net, num_steps=4)
        >>> atk = GradientModeAttack(torchattacks.PGD(model, eps=0.1, steps=2),
        ...                          surrogate=Triangle(gamma=1.0))
        >>> atk.attack
        "GradientModeAttack(PGD, mode='bptt', surrogate=Triangle(gamma=1.0))"
        >>> atk(torch.rand(2, 1, 4, 4), torch.tensor([0, 1])).shape
        torch.Size([2, 1, 4, 4])
    """

    def __init__(
        self,
        attack: Attack,
        mode: str = "bptt",
        surrogate: Surrogate | None = None,
        *,
        seed: int = 0,
    ) -> None:
        attack = check_attack("attack", attack)
        gradient = getattr(attack.model, "gradient", None)
        if not callable(gradient):
            raise TypeError(
                "attack.model must be a SpikingClassifier (a model with .gradient), "
                f"got {type(attack.model).__name__}"
            )
        gradient(mode, surrogate=surrogate)  # validates mode and surrogate, enters nothing
        self.mode, self.surrogate = mode, surrogate
        name = f"GradientModeAttack({attack.attack}, mode={mode!r}, surrogate={surrogate!r})"
        super().__init__(name, attack.model, seed)
        self.wrapped = attack  # registered: torchattacks setters reach it
        self.supported_mode = list(attack.supported_mode)
        self.attack_mode, self.targeted = attack.attack_mode, attack.targeted
        self._target_map_function = attack._target_map_function
        self._model_training = attack._model_training
        self._batchnorm_training = attack._batchnorm_training
        self._dropout_training = attack._dropout_training

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        with self.model.gradient(self.mode, surrogate=self.surrogate):
            return self.wrapped(inputs, labels)


class Transfer(SeededAttack):
    """Craft adversarial examples on a source model and use them against ``model``.

    A transfer attack (Papernot et al., 2017) needs no gradient of the evaluated model:
    a large gap between white-box and transfer success, or a transfer attack that
    beats the white-box one, signals gradient masking (Athalye et al., ICML 2018).
    The source can be another SNN, the ANN twin, or any classifier on the same inputs.

    ``model`` (the evaluated one) comes first, as in every torchattacks attack, so a
    ``Transfer`` composes in ``torchattacks.MultiAttack`` with attacks on ``model``.
    The crafting attack is private to the wrapper: configure targeting, normalisation
    and training mode through ``attack_factory``. The train/eval modes of both models
    are restored exactly.

    Args:
        model: the model being evaluated (never called by this attack).
        source: the model the examples are crafted on.
        attack_factory: ``attack_factory(source) -> torchattacks.Attack``, e.g.
            ``functools.partial(torchattacks.PGD, eps=8/255)``.
        seed: each call seeds the global RNG and the source's ``generator`` from it
            (both restored afterwards).

    Returns:
        Calling the attack returns the adversarial examples, shaped like the inputs.

    Shape:
        inputs: ``[N, C, H, W]`` (as the attack accepts), labels ``[N]``.

    Raises:
        TypeError: ``model`` or ``source`` is not an ``nn.Module``; ``attack_factory``
            is not callable or does not return a ``torchattacks.Attack``.
        ValueError: the factory's attack is not on ``source``; a bad ``seed``.

    Example:
        >>> import functools, torchattacks
        >>> from torch import nn
        >>> target = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> source = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> atk = Transfer(target, source, functools.partial(torchattacks.FGSM, eps=0.1))
        >>> x = torch.rand(2, 1, 4, 4)
        >>> bool((atk(x, torch.tensor([0, 1])) - x).abs().max() <= 0.1 + 1e-6)
        True
    """

    def __init__(
        self,
        model: nn.Module,
        source: nn.Module,
        attack_factory: Callable[[nn.Module], Any],
        *,
        seed: int = 0,
    ) -> None:
        for name, value in (("model", model), ("source", source)):
            if not isinstance(value, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module, got {type(value).__name__}")
        if isinstance(attack_factory, Attack) or not callable(attack_factory):
            raise TypeError(
                "attack_factory must be callable as attack_factory(source) -> Attack, e.g. "
                "functools.partial(torchattacks.PGD, eps=8/255), got "
                f"{type(attack_factory).__name__}"
            )
        crafter = attack_factory(source)
        if not isinstance(crafter, Attack):
            raise TypeError(
                "attack_factory(source) must return a torchattacks.Attack, "
                f"got {type(crafter).__name__}"
            )
        if crafter.model is not source and getattr(crafter.model, "model", None) is not source:
            raise ValueError(
                "attack_factory(source) must return an attack on source, got one on "
                f"{type(crafter.model).__name__}"
            )
        super().__init__(f"Transfer({crafter.attack})", model, seed)
        self.source = source
        # Not registered in self._attacks: torchattacks setters on this wrapper (or on a
        # MultiAttack holding it) must not move the crafting attack to the target model.
        object.__setattr__(self, "_crafter", crafter)

    @property
    def crafter(self) -> Attack:
        """The attack on ``source`` that crafts the examples."""
        crafter: Attack = self.__dict__["_crafter"]
        return crafter

    def models(self) -> list[nn.Module]:
        return [self.model, self.source]

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.crafter(inputs, labels).detach()
