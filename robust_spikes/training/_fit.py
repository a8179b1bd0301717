"""A plain, resumable training loop for classifiers on images in [0, 1]."""

from __future__ import annotations

import math
import numbers
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robust_spikes import _data
from robust_spikes._checks import check_positive_int
from robust_spikes._modes import kept_modes
from robust_spikes._optional import require

__all__ = ["History", "fit"]

_CHECKPOINT = re.compile(r"^epoch-(\d+)\.pt$")

Data = Any  # any form of robust_spikes._data's contract: pair, Dataset, DataLoader, batches


@dataclass
class History:
    """Per-epoch training record returned by :func:`fit`.

    Each attribute holds one float per epoch (``len(history)`` is the number of epochs);
    accuracies are fractions in [0, 1].

    Attributes:
        loss: mean training loss of each epoch (regularizer terms included).
        train_accuracy: accuracy on the clean training batches, measured during the epoch.
        val_accuracy: accuracy on ``val_data`` after each epoch (empty without it).

    Example:
        >>> history = History(loss=[0.9, 0.5], train_accuracy=[0.5, 0.75])
        >>> len(history), history.to_dict()["val_accuracy"]
        (2, [])
    """

    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.loss)

    def to_dict(self) -> dict[str, list[float]]:
        """Plain lists of floats (what checkpoints store)."""
        return {
            "loss": list(self.loss),
            "train_accuracy": list(self.train_accuracy),
            "val_accuracy": list(self.val_accuracy),
        }


def fit(
    model: nn.Module,
    train_data: Data,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    adversary: Any = None,
    regularizers: Sequence[Any] = (),
    val_data: Data | None = None,
    callbacks: Iterable[Callable[[int, History], None]] = (),
    checkpoint_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    batch_size: int = 128,
    progress: bool = True,
) -> History:
    """Train ``model`` (e.g. a :class:`~robust_spikes.SpikingClassifier`), optionally adversarially.

    Each epoch shuffles ``train_data`` with a ``torch.Generator`` seeded with ``seed``
    (never the global RNG), minimises the cross-entropy (or ``adversary.loss``) plus the
    regularizer terms, and after the epoch records the history, calls the callbacks and
    writes a checkpoint. The model is in train mode during training; the mode of every
    submodule is restored at the end.

    Checkpoints: with ``checkpoint_dir``, ``epoch-NNNN.pt`` is written after every epoch,
    atomically (a temporary file in the same folder, then ``os.replace``). It holds only
    tensors and plain Python values (model and optimizer state dicts, the epoch, the history
    and the generator states: shuffling, the model's ``generator``, the adversary's), so it
    loads with ``torch.load(path, weights_only=True)``. Calling ``fit`` again with the same
    ``checkpoint_dir`` resumes from the latest checkpoint of at most ``epochs`` epochs; the
    result equals an uninterrupted run (bitwise, for a deterministic model). Learning-rate
    schedulers are not saved: step them in a callback from the epoch number if needed.

    Regularizers: each item is a callable ``(model) -> scalar tensor`` added to the loss,
    and/or an object with ``after_step(model)`` (called after every optimiser step, e.g.
    :class:`~robust_spikes.training.OrthogonalRetraction`) or ``before_epoch(model,
    epoch)`` (called before each epoch, ``epoch`` counting from 1, e.g. to freeze
    parameters as :class:`~robust_spikes.training.GatePenalty` does); an object may
    have several of these. ``requires_grad`` of every parameter is restored at the end.

    Args:
        model: a classifier mapping ``[N, C, H, W]`` images in [0, 1] to ``[N, K]`` logits.
        train_data: an ``(images, labels)`` pair of tensors, a Dataset of ``(image,
            label)`` pairs, a DataLoader, or any iterable of ``(images, labels)`` batches. It
            is read into memory once; every epoch then shuffles the samples with the seeded
            generator into batches of ``batch_size`` (a DataLoader's own order, batch size
            and random transforms are not used), so every form gives the same training.
        epochs: total number of epochs (a positive int), counting resumed ones.
        optimizer: default ``torch.optim.Adam(model.parameters(), lr=1e-3)``.
        adversary: ``None`` for clean training, else an object with
            ``loss(model, x, y) -> scalar`` such as :class:`~robust_spikes.training.FGSM`,
            ``PGD``, ``TRADES`` or ``RFGSM``. If it also has ``loss_and_logits`` returning
            the clean logits it computed anyway, the training accuracy is read from them;
            otherwise from one more forward pass on the clean batch.
        regularizers: see above.
        val_data: like ``train_data``; its accuracy (model in eval mode) is recorded per epoch.
        callbacks: callables ``(epoch, history) -> None`` called after each epoch
            (``epoch`` counts from 1).
        checkpoint_dir: folder for checkpoints (created if missing), or ``None``.
        seed: seed of the shuffling generator.
        batch_size: training and validation batch size (a positive int).
        progress: show a tqdm progress bar on stderr.

    Returns:
        The :class:`History` of all epochs, resumed ones included.

    Raises:
        ValueError: bad ``epochs``, ``batch_size``, ``train_data`` or ``val_data``; a
            checkpoint written with another ``seed`` or ``batch_size``.
        TypeError: bad ``model``, ``seed``, ``adversary``, ``regularizers`` or ``callbacks``.

    Shape:
        ``train_data`` / ``val_data``: images ``[M, C, H, W]`` (any ``[M, ...]`` the model
        takes) in [0, 1] and labels ``[M]`` int64; batches of ``[B, ...]`` and ``[B]``
        reach ``model``, which returns ``[B, K]`` logits. Returns a :class:`History`
        (lists of floats, one per epoch).

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> x, y = torch.rand(8, 1, 2, 2), torch.tensor([0, 1] * 4)
        >>> history = fit(net, (x, y), epochs=2, batch_size=4, progress=False)
        >>> len(history), len(history.val_accuracy)
        (2, 0)
    """
    _check_model(model)
    if adversary is not None and not callable(getattr(adversary, "loss", None)):
        raise TypeError(
            f"adversary must be None or have loss(model, x, y), got {type(adversary).__name__}"
        )
    regularizers = check_regularizers(regularizers)

    def step(x: torch.Tensor, y: torch.Tensor) -> tuple[float, torch.Tensor]:
        if adversary is None:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        else:
            loss_and_logits = getattr(adversary, "loss_and_logits", None)
            if callable(loss_and_logits):
                loss, clean_logits = loss_and_logits(model, x, y)
            else:
                loss, clean_logits = adversary.loss(model, x, y), None
            if clean_logits is None:  # the adversary did not see the clean batch
                with torch.no_grad():
                    clean_logits = model(x)
            logits = clean_logits
        return update(model, optimizer_, loss, regularizers), logits

    optimizer_ = optimizer if optimizer is not None else _adam(model)
    extra = {"adversary_rng": _adversary_generator(model, adversary)}
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
        config={"recipe": "fit"},
        generators=extra,
        desc="fit",
    )


Step = Callable[[torch.Tensor, torch.Tensor], tuple[float, torch.Tensor]]


def train_loop(
    model: nn.Module,
    train_data: Data,
    step: Step,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    regularizers: tuple[Any, ...],
    val_data: Data | None,
    callbacks: Iterable[Callable[[int, History], None]],
    checkpoint_dir: str | os.PathLike[str] | None,
    seed: int,
    batch_size: int,
    progress: bool,
    config: dict[str, Any],
    generators: dict[str, torch.Generator | None],
    desc: str,
) -> History:
    """The epoch loop shared by :func:`fit` and :func:`~robust_spikes.training.hire`.

    ``step(x, y)`` trains on one batch (any number of optimiser updates) and returns the
    batch's mean loss and the logits its accuracy is read from. ``config`` (with ``seed``
    and ``batch_size`` added) is stored in every checkpoint and must match on resume.
    """
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r} of type {type(seed).__name__}")
    callbacks = tuple(callbacks)
    for c in callbacks:
        if not callable(c):
            raise TypeError(f"callbacks must be callables (epoch, history), got {type(c).__name__}")
    train = _as_tensors("train_data", train_data)
    val = None if val_data is None else _as_tensors("val_data", val_data)
    tqdm = require("tqdm", f"robust_spikes.training.{desc}").tqdm
    config = {**config, "seed": int(seed), "batch_size": batch_size}

    shuffle = torch.Generator().manual_seed(int(seed))
    streams = {"shuffle_rng": shuffle}
    model_generator = getattr(model, "generator", None)
    if isinstance(model_generator, torch.Generator):
        streams["model_rng"] = model_generator
    for i, r in enumerate(regularizers):  # e.g. OrthogonalRetraction's row sampler
        generators = {**generators, f"regularizer{i}_rng": getattr(r, "generator", None)}
    for key, g in generators.items():
        if isinstance(g, torch.Generator) and all(g is not s for s in streams.values()):
            streams[key] = g

    history, start = History(), 0
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        start = _resume(folder, epochs, model, optimizer, streams, history, config)

    device = _device(model)
    num_batches = math.ceil(len(train[0]) / batch_size)
    trainable = [(p, p.requires_grad) for p in model.parameters()]
    bar = tqdm(
        total=(epochs - start) * num_batches,
        desc=desc,
        unit="batch",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        with bar, kept_modes(model):
            for epoch in range(start + 1, epochs + 1):
                model.train()
                for r in regularizers:
                    before_epoch = getattr(r, "before_epoch", None)
                    if callable(before_epoch):
                        before_epoch(model, epoch)
                total, correct, seen = 0.0, 0, 0
                for x, y in _data.batches(*train, batch_size, shuffle):
                    x, y = x.to(device), y.to(device)
                    loss, logits = step(x, y)
                    total += loss * len(y)
                    correct += int((logits.detach().argmax(1) == y).sum())
                    seen += len(y)
                    bar.set_postfix(epoch=epoch, loss=f"{loss:.4f}", refresh=False)
                    bar.update(1)
                history.loss.append(total / seen)
                history.train_accuracy.append(correct / seen)
                if val is not None:
                    history.val_accuracy.append(_accuracy(model, val, batch_size, device))
                if folder is not None:
                    state = {
                        "epoch": epoch,
                        "config": config,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "history": history.to_dict(),
                        **{k: g.get_state() for k, g in streams.items()},
                    }
                    _save_atomic(state, folder / f"epoch-{epoch:04d}.pt")
                for c in callbacks:
                    c(epoch, history)
    finally:
        for p, requires_grad in trainable:  # regularizers may freeze parameters per epoch
            p.requires_grad_(requires_grad)
    return history


def update(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    regularizers: tuple[Any, ...],
) -> float:
    """One optimiser update on ``loss`` plus the regularizer terms; returns the total loss."""
    for r in regularizers:
        if callable(r):
            loss = loss + r(model)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    for r in regularizers:
        after_step = getattr(r, "after_step", None)
        if callable(after_step):
            after_step(model)
    return float(loss.detach())


def check_regularizers(regularizers: Sequence[Any]) -> tuple[Any, ...]:
    """The regularizers as a tuple, each a callable or an object with hook methods."""
    regularizers = tuple(regularizers)
    for r in regularizers:
        hooks = (getattr(r, name, None) for name in ("after_step", "before_epoch"))
        if not (callable(r) or any(callable(h) for h in hooks)):
            raise TypeError(
                "regularizers must be callables (model) -> loss or objects with "
                f"after_step(model) or before_epoch(model, epoch), got {type(r).__name__}"
            )
    return regularizers


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _adam(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=1e-3)


def _adversary_generator(model: nn.Module, adversary: Any) -> torch.Generator | None:
    generator_for = getattr(adversary, "generator_for", None)
    return generator_for(model) if callable(generator_for) else None


def _as_tensors(name: str, data: Data) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of ``data`` in any form of the one data contract (``_data``)."""
    return _data.tensors(data, name)


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def _accuracy(
    model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], batch_size: int, device: torch.device
) -> float:
    model.eval()
    try:
        correct = 0
        for x, y in _data.batches(*data, batch_size):
            correct += int((model(x.to(device)).argmax(1) == y.to(device)).sum())
    finally:
        model.train()
    return correct / len(data[1])


def _save_atomic(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _resume(
    folder: Path,
    epochs: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
    history: History,
    config: dict[str, Any],
) -> int:
    """Load the latest checkpoint of at most ``epochs`` epochs; return its epoch (or 0)."""
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := _CHECKPOINT.match(p.name)) and int(m.group(1)) <= epochs
    ]
    if not found:
        return 0
    epoch, path = max(found)
    state = torch.load(path, weights_only=True, map_location="cpu")
    saved = state.get("config", {})
    if saved != config:
        differ = sorted(k for k in saved.keys() | config.keys() if saved.get(k) != config.get(k))
        theirs = ", ".join(f"{k}={saved.get(k)!r}" for k in differ)
        ours = ", ".join(f"{k}={config.get(k)!r}" for k in differ)
        raise ValueError(
            f"checkpoint {path} was written with {theirs}, got {ours}; use another "
            "checkpoint_dir for a different run"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    for key, g in generators.items():
        if key in state:
            g.set_state(state[key])
    for key, values in state["history"].items():
        getattr(history, key).extend(values)
    return epoch
