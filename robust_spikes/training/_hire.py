"""HIRE-SNN: training with crafted input noise at the cost of plain training."""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from robust_spikes.classifier import SpikingClassifier
from robust_spikes.training._fit import (
    Data,
    History,
    _adam,
    check_regularizers,
    train_loop,
    update,
)

__all__ = ["hire"]


def hire(
    model: SpikingClassifier,
    train_data: Data,
    *,
    epochs: int,
    periods: int = 2,
    noise_eps: float | Sequence[float] = 8 / 255,
    optimizer: torch.optim.Optimizer | None = None,
    regularizers: Sequence[Any] = (),
    val_data: Data | None = None,
    callbacks: Iterable[Callable[[int, History], None]] = (),
    checkpoint_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    batch_size: int = 128,
    progress: bool = True,
) -> History:
    """Train with HIRE-SNN's crafted input noise (Kundu et al., ICCV 2021).

    The ``num_steps`` steps of each batch are split into ``periods`` consecutive periods
    (as evenly as possible, earlier periods one step longer when they do not divide).
    Period 1 sees the clean image ``x``. After each period ``n`` its loss, the
    cross-entropy of the logits read out of that period's steps, is back-propagated and
    the weights are updated; the input gradient of that same backward pass crafts the
    next period's input ``x_{n+1} = clip(x + noise_eps[n] * sign(grad_x L_n))``, clipped
    to the model's ``input_range``. The membrane state carries over from one period to
    the next (they are consecutive steps of one run), detached at the boundary, so each
    backward pass covers its own period's steps.

    Cost: the forward and backward work per batch is one ordinary ``num_steps``-step pass
    (each step runs forward and backward once), plus ``periods`` optimiser updates instead
    of one, so an epoch costs about what a plain epoch costs while each batch gives
    ``periods`` weight updates. ``benchmarks/hire_cost.py`` measures it against plain
    training and FGSM adversarial training side by side.

    Everything else (shuffling, history, checkpoints and resume, regularizers, callbacks,
    progress bar) is :func:`~robust_spikes.training.fit`'s; regularizers apply at every
    update. ``train_accuracy`` is read from the sum of the periods' logits.

    Args:
        model: a :class:`~robust_spikes.SpikingClassifier` whose network takes one step per
            call or runs SpikingJelly's multi-step mode (not a network with its own time
            loop inside ``forward``).
        train_data: as in :func:`~robust_spikes.training.fit`: an ``(images, labels)``
            pair, a Dataset of ``(image, label)`` pairs, a DataLoader or an iterable of
            ``(images, labels)`` batches.
        epochs: total number of epochs (a positive int), counting resumed ones.
        periods: number of periods ``N`` per batch, in ``[1, model.num_steps]``; 1 is plain
            training. The paper's example: ``num_steps=4, periods=2``.
        noise_eps: size of the crafted noise (in the [0, 1] image scale), one float for all
            periods or ``periods - 1`` floats, for periods 2..N. Default 8/255.
        optimizer: default ``torch.optim.Adam(model.parameters(), lr=1e-3)``.
        regularizers, val_data, callbacks, checkpoint_dir, seed, batch_size, progress:
            as in :func:`~robust_spikes.training.fit`.

    Returns:
        The :class:`~robust_spikes.training.History` of all epochs; ``loss`` is the mean of
        the periods' losses.

    Raises:
        TypeError: ``model`` is not a ``SpikingClassifier``, or it runs its own time loop;
            bad ``seed``, ``regularizers`` or ``callbacks``.
        ValueError: bad ``periods``, ``noise_eps``, ``epochs``, ``batch_size`` or data; a
            checkpoint written with other settings.

    Shape:
        ``train_data`` / ``val_data``: images ``[M, C, H, W]`` (or ``[M, F]``) in the
        model's ``input_range`` and labels ``[M]`` int64; each batch ``[B, ...]`` runs
        ``num_steps`` steps split into ``periods`` periods, each read out as ``[B, K]``
        logits. ``noise_eps`` in the [0, 1] image scale. Returns a :class:`History`.

    Example:
        >>> import snntorch as snn
        >>> from torch import nn
        >>> net = nn.Sequential(
        ...     nn.Flatten(), nn.Linear(4, 2), snn.Leaky(beta=0.9, init_hidden=True, output=True)
        ... )
        >>> model = SpikingClassifier(net, num_steps=4)
        >>> x, y = torch.rand(8, 1, 2, 2), torch.tensor([0, 1] * 4)
        >>> history = hire(model, (x, y), epochs=1, periods=2, batch_size=4, progress=False)
        >>> len(history)
        1
    """
    if not isinstance(model, SpikingClassifier):
        raise TypeError(
            "model must be a robust_spikes.SpikingClassifier (HIRE-SNN splits its time "
            f"steps into periods), got {type(model).__name__}"
        )
    if isinstance(periods, bool) or not isinstance(periods, numbers.Integral):
        raise ValueError(f"periods must be an int in [1, {model.num_steps}], got {periods!r}")
    if not 1 <= periods <= model.num_steps:
        raise ValueError(f"periods must be in [1, num_steps={model.num_steps}], got {periods!r}")
    periods = int(periods)
    eps = _check_noise_eps(noise_eps, periods)
    regularizers = check_regularizers(regularizers)
    optimizer_ = optimizer if optimizer is not None else _adam(model)
    base, extra = divmod(model.num_steps, periods)
    lengths = [base + (n < extra) for n in range(periods)]
    bounds = model.input_range

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        total, logits_sum = 0.0, torch.zeros(())
        x_n = x
        with model._stream() as span:
            for n, steps in enumerate(lengths):
                crafts = n < periods - 1
                x_in = x_n.detach().requires_grad_(crafts)
                logits = span(x_in, steps)
                total += update(model, optimizer_, F.cross_entropy(logits, y), regularizers)
                logits_sum = logits_sum + logits.detach()
                if crafts:
                    assert x_in.grad is not None
                    x_n = x + eps[n] * x_in.grad.sign()
                    if bounds is not None:
                        x_n = x_n.clamp(*bounds)
        return total / periods, logits_sum

    return train_loop(
        model,
        train_data,
        step,
        epochs=epochs,
        optimizer=optimizer_,
        regularizers=regularizers,
        val_data=val_data,
        callbacks=callbacks,
        checkpoint_dir=checkpoint_dir,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
        config={"recipe": "hire", "periods": periods, "noise_eps": eps},
        generators={},
        desc="hire",
    )


def _check_noise_eps(noise_eps: Any, periods: int) -> list[float]:
    given = [noise_eps] * (periods - 1) if isinstance(noise_eps, numbers.Real) else noise_eps
    values: list[float] | None
    try:
        values = [float(v) for v in given]
    except (TypeError, ValueError):
        values = None
    if (
        values is None
        or isinstance(noise_eps, bool)
        or len(values) != periods - 1
        or not all(0.0 <= v <= 1.0 for v in values)
    ):
        raise ValueError(
            f"noise_eps must be a float in [0, 1] or {periods - 1} such floats (one per "
            f"period after the first), got {noise_eps!r}"
        )
    return values
