"""Expectation over Transformation: gradients of a stochastic model averaged over draws.

Athalye, Carlini & Wagner, "Obfuscated gradients give a false sense of security",
ICML 2018 (section 4.3); Athalye et al., "Synthesizing robust adversarial examples",
ICML 2018. A random defence (Poisson or smoothing encoder, stochastic gates) answers
differently on every call, so one forward pass gives a noisy gradient; EOT averages
over ``num_samples`` draws per step.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from torch import nn
from torchattacks.attack import Attack

from robust_spikes._checks import check_positive_int
from robust_spikes.attacks._base import SeededAttack, check_attack
from robust_spikes.attacks._views import ModelView

__all__ = ["EOT", "Expectation"]

Average = Literal["probs", "logits"]
_AVERAGES = ("probs", "logits")


class Expectation(ModelView):
    """A model's expected prediction over ``num_samples`` forward passes, as logits.

    What is averaged: with ``average="logits"`` (default) the output is the mean logits
    ``mean_k f_k(x)`` (what :meth:`~robust_spikes.SpikingClassifier.predict` with
    ``method="mean"`` classifies); an attack's loss ``L`` then has the input gradient
    ``mean_k J_k(x)^T grad L(mean_k f_k(x))``: the per-draw Jacobians are averaged exactly,
    the loss gradient is taken once at the mean logits. With ``average="probs"`` the
    output is ``log(mean_k softmax(f_k(x)))``, the log of the mean predicted distribution
    (its softmax *is* the mean of the per-draw probabilities); its cross-entropy is
    ``-log E_k[p_k(y | x)]``, whose gradient is the mean of the per-draw cross-entropy
    gradients weighted by ``p_k(y | x) / sum_j p_j(y | x)``. Neither is the plain mean
    of per-draw loss gradients (a model-side module cannot see the attack's loss); all
    three estimate directions within cosine 0.99 of each other on a gated SNN, and on
    it ``"logits"`` gave the lowest PGD robust accuracy (by 0.01 to 0.02).
    The draws run as one call of the model on ``num_samples`` stacked copies of the
    batch (each copy draws its own noise), several times faster than one call per draw
    for small SNNs; memory grows with ``num_samples``.

    The module is a transparent view of ``model``: ``training``, ``train()``/``eval()``,
    ``parameters()`` and ``modules()`` are the model's (modes set on it set the
    model's), and ``generator``, ``is_stochastic`` and ``gradient(...)`` are forwarded
    (:class:`~robust_spikes.attacks._views.ModelView`).

    Args:
        model: a classifier ``[N, ...] -> [N, K]`` (usually a stochastic
            :class:`~robust_spikes.SpikingClassifier`).
        num_samples: forward passes per call (a positive int).
        average: ``"logits"`` or ``"probs"``, see above.

    Shape:
        x: as ``model``; returns ``[N, K]``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: bad ``num_samples`` or ``average``; at call time, a model that does
            not return ``[N, K]``.

    Example:
        >>> from torch import nn
        >>> lin = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, 3)).train()
        >>> out = Expectation(lin, num_samples=8, average="probs")(torch.rand(2, 1, 2, 2))
        >>> out.shape, bool(torch.allclose(out.exp().sum(1), torch.ones(2)))
        (torch.Size([2, 3]), True)
    """

    def __init__(self, model: nn.Module, num_samples: int = 10, *, average: Average = "logits"):
        super().__init__(model)
        if average not in _AVERAGES:
            raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
        self.num_samples = check_positive_int("num_samples", num_samples)
        self.average: Average = average

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # All draws in one call on num_samples stacked copies of the batch: each copy
        # draws its own noise, and one call of a small SNN costs about what one draw did.
        batch = x.shape[0]
        logits = self.model(x.repeat(self.num_samples, *([1] * (x.dim() - 1))))
        if (
            not isinstance(logits, torch.Tensor)
            or logits.dim() != 2
            or logits.shape[0] != self.num_samples * batch
        ):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else logits
            raise ValueError(
                f"model must return logits [N, K] (N={self.num_samples * batch}), got {got!r}"
            )
        stacked = logits.view(self.num_samples, batch, -1)
        if self.average == "logits":
            return stacked.mean(0)
        return torch.logsumexp(stacked.log_softmax(-1), dim=0) - math.log(self.num_samples)

    def extra_repr(self) -> str:
        return f"num_samples={self.num_samples}, average={self.average!r}"


class EOT(SeededAttack):
    """Run any gradient attack on the expectation of a stochastic model (EOT).

    The attack is copied (sharing the model) and its model replaced by
    :class:`Expectation` ``(model, num_samples, average)``, so every forward pass the
    attack makes averages ``num_samples`` draws of the model, and every gradient it
    takes is the gradient of that average (see :class:`Expectation` for exactly what
    is averaged). This is Athalye et al.'s EOT (ICML 2018) for any torchattacks
    attack: PGD, FGSM, APGD (whose own ``eot_iter`` multiplies on top), CW, ...
    Success checks inside the attack (APGD, MultiAttack) judge the averaged
    prediction, not one draw.

    The wrapper's ``model`` is the original one, so it composes in
    ``torchattacks.MultiAttack`` with plain attacks on the same model. The user's
    train/eval modes are restored exactly. Each call is seeded (see ``seed``).

    Args:
        attack: a ``torchattacks.Attack`` on the model (copied; later changes to it do
            not reach the wrapper, use the wrapper's setters).
        num_samples: forward passes averaged per model call (a positive int).
        average: ``"logits"`` (default) or ``"probs"``, see :class:`Expectation`.
        seed: each call seeds the global RNG (restored afterwards) and the model's
            ``generator`` (restored afterwards) from it, so the same seed gives the
            same adversarial examples.

    Returns:
        Calling the attack returns the adversarial examples, shaped like the inputs.

    Shape:
        inputs: ``[N, C, H, W]`` (as the attack accepts), labels ``[N]``.

    Raises:
        TypeError: ``attack`` is not a ``torchattacks.Attack``.
        ValueError: bad ``num_samples``, ``average`` or ``seed``.

    Example:
        >>> import torchattacks
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(16, 3))
        >>> atk = EOT(torchattacks.PGD(model, eps=0.1, steps=2), num_samples=4)
        >>> x = torch.rand(2, 1, 4, 4)
        >>> x_adv = atk(x, torch.tensor([0, 1]))
        >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6), model.training
        (True, True)
    """

    def __init__(
        self,
        attack: Attack,
        num_samples: int = 10,
        *,
        average: Average = "logits",
        seed: int = 0,
    ) -> None:
        attack = check_attack("attack", attack)
        if average not in _AVERAGES:
            raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
        self.num_samples = check_positive_int("num_samples", num_samples)
        self.average: Average = average
        model = attack.model
        super().__init__(f"EOT({attack.attack})", model, seed)
        inner = copy.deepcopy(attack, memo={id(model): model})
        inner.set_model(Expectation(model, self.num_samples, average=average))
        self.wrapped = inner  # registered: torchattacks setters reach it
        self.supported_mode = list(inner.supported_mode)
        self.attack_mode, self.targeted = inner.attack_mode, inner.targeted
        self._target_map_function = inner._target_map_function
        self._model_training = inner._model_training
        self._batchnorm_training = inner._batchnorm_training
        self._dropout_training = inner._dropout_training

    def set_model(self, model: nn.Module) -> None:
        """Attack ``model`` instead (the inner attack gets a new :class:`Expectation`)."""
        self.model = model
        self.model_name = type(model).__name__
        inner = self.__dict__.get("wrapped")
        if inner is not None:
            inner.set_model(Expectation(model, self.num_samples, average=self.average))

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.wrapped(inputs, labels)
