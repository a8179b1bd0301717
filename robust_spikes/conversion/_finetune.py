"""Robust fine-tuning of a converted SNN: weights and thresholds, R-FGSM on TRADES."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from robust_spikes import _data
from robust_spikes._checks import check_positive_int
from robust_spikes.classifier import SpikingClassifier
from robust_spikes.conversion._convert import _check_number, thresholds
from robust_spikes.training import RFGSM, History, fit

__all__ = ["robust_finetune"]


class _Schedule:
    """After every optimiser step: clamp the thresholds, then set the cosine learning rate.

    The step count lives in the optimiser's parameter groups, so a run resumed from a
    checkpoint of :func:`~robust_spikes.training.fit` continues the schedule where it was.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        lr: float,
        total: int,
        params: list[nn.Parameter],
        min_threshold: float,
    ) -> None:
        self.optimizer, self.lr, self.total = optimizer, lr, total
        self.params, self.min_threshold = params, min_threshold

    def clamp(self) -> None:
        with torch.no_grad():
            for p in self.params:
                p.clamp_(min=self.min_threshold)

    def after_step(self, model: nn.Module) -> None:
        self.clamp()
        for group in self.optimizer.param_groups:
            step = int(group.get("cosine_step", 0)) + 1
            group["cosine_step"] = step
            group["lr"] = (
                0.5 * self.lr * (1.0 + math.cos(math.pi * min(step, self.total) / self.total))
            )


def robust_finetune(
    snn_classifier: SpikingClassifier,
    data: Any,
    *,
    eps: float = 2 / 255,
    alpha: float = 1 / 255,
    beta: float = 2.0,
    epochs: int,
    lr: float = 1e-3,
    weight_decay: float = 1e-3,
    min_threshold: float = 0.03,
    momentum: float = 0.9,
    batch_size: int = 128,
    val_data: Any = None,
    callbacks: Iterable[Callable[[int, History], None]] = (),
    checkpoint_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> History:
    """Adversarially fine-tune a converted SNN's weights and per-layer thresholds.

    The robust fine-tuning of Özdenizci & Legenstein ("Adversarially robust spiking neural
    networks through conversion", TMLR 2024): backpropagation through time (the spike
    functions' surrogate, the triangle for :func:`convert`'s networks) on the TRADES
    objective with the single-step R-FGSM adversary
    (:class:`~robust_spikes.training.RFGSM`): ``x' = x + alpha * sign(N(0, 1))``, one
    signed step of ``eps - alpha`` on ``KL(f(x) || f(x'))``, projected to the eps ball and
    [0, 1]; loss ``CE(f(x), y) + beta * KL(f(x') || f(x))``. SGD with momentum and
    weight decay (on all parameters, thresholds included), the learning rate following a
    cosine from ``lr`` to 0 over all steps, and every threshold clamped to at least
    ``min_threshold`` after each step. The paper trains 60 epochs at ``eps = 2/255``.

    It runs :func:`~robust_spikes.training.fit` (progress bar, history, checkpoints that
    resume the schedule); the model is changed in place.

    Args:
        snn_classifier: a :class:`~robust_spikes.SpikingClassifier` whose network has
            learnable thresholds (see :func:`thresholds`), e.g. around :func:`convert`'s result.
        data: training data as in :func:`~robust_spikes.training.fit`: an ``(images,
            labels)`` pair, a Dataset of ``(image, label)`` pairs, a DataLoader or an
            iterable of ``(images, labels)`` batches.
        eps: L-inf radius of the adversary in the [0, 1] image scale, in (0, 1].
        alpha: size of its random step, in [0, eps].
        beta: weight of the KL term (>= 0).
        epochs: number of epochs (a positive int).
        lr: initial learning rate (> 0).
        weight_decay: SGD weight decay (>= 0).
        min_threshold: lower bound of every threshold (> 0).
        momentum: SGD momentum, in [0, 1).
        batch_size: training batch size (a positive int).
        val_data: optional validation data; its clean accuracy is recorded per epoch.
        callbacks: ``(epoch, history)`` callables run after each epoch.
        checkpoint_dir: folder for resumable checkpoints, or ``None``.
        seed: seed of the shuffling generator.
        progress: show a progress bar.

    Returns:
        The training :class:`~robust_spikes.training.History`.

    Shape:
        data images ``[N, C, H, W]`` in [0, 1], labels ``[N]``.

    Raises:
        TypeError: ``snn_classifier`` is not a ``SpikingClassifier``.
        ValueError: a network without learnable thresholds; bad ``eps``, ``alpha``,
            ``beta``, ``epochs``, ``lr``, ``weight_decay``, ``min_threshold``,
            ``momentum``, ``batch_size`` or ``data``.

    Example:
        >>> import robust_spikes as rs
        >>> ann = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
        >>> x, y = torch.rand(32, 1, 8, 8), torch.arange(32) % 10
        >>> snn = rs.conversion.convert(ann, x, calibration_steps=4)
        >>> model = rs.SpikingClassifier(snn, num_steps=4)
        >>> history = robust_finetune(model, (x, y), epochs=1, progress=False)
        >>> len(history), bool(snn.get_parameter("2.threshold") >= 0.03)
        (1, True)
    """
    if not isinstance(snn_classifier, SpikingClassifier):
        raise TypeError(
            "snn_classifier must be a robust_spikes.SpikingClassifier, got "
            f"{type(snn_classifier).__name__}"
        )
    found = list(thresholds(snn_classifier.net).values())
    if not found:
        raise ValueError(
            "snn_classifier's network has no learnable thresholds (nn.Parameter 'threshold' "
            "or 'v_threshold'); convert an ANN with rs.conversion.convert, or use snnTorch "
            "neurons with learn_threshold=True"
        )
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    lr = _check_number("lr", lr, 0.0, math.inf, low_open=True)
    weight_decay = _check_number("weight_decay", weight_decay, 0.0, math.inf, low_open=False)
    min_threshold = _check_number("min_threshold", min_threshold, 0.0, math.inf, low_open=True)
    momentum = _check_number("momentum", momentum, 0.0, 1.0, low_open=False)
    if momentum >= 1.0:
        raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
    adversary = RFGSM(eps, alpha, beta)
    train = _data.tensors(data, "data")
    optimizer = torch.optim.SGD(
        snn_classifier.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    total = epochs * math.ceil(len(train[0]) / batch_size)
    schedule = _Schedule(optimizer, lr, total, found, min_threshold)
    schedule.clamp()
    return fit(
        snn_classifier,
        train,
        epochs=epochs,
        optimizer=optimizer,
        adversary=adversary,
        regularizers=(schedule,),
        val_data=val_data,
        callbacks=callbacks,
        checkpoint_dir=checkpoint_dir,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
    )
