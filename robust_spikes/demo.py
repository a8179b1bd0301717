"""A self-contained tour: train a small snnTorch SNN on the 8x8 digits, then attack it.

:func:`run_demo` is what ``robust-spikes demo`` runs. It builds a convolutional spiking
network in the idiomatic snnTorch style, wraps it in :class:`~robust_spikes.SpikingClassifier`
so that it becomes an ordinary ``images -> logits`` module, trains it with Adam for a few
seconds on a CPU, and measures its accuracy under torchattacks' FGSM and PGD at several
L-inf radii. Everything is seeded, so the numbers are reproducible on one machine.
"""

from __future__ import annotations

import math
import numbers
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO, TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from robust_spikes import data
from robust_spikes._checks import check_positive_int
from robust_spikes._optional import require
from robust_spikes.classifier import SpikingClassifier

__all__ = ["DEFAULT_EPS", "DemoResult", "build_net", "format_eps", "run_demo"]

DEFAULT_EPS: tuple[float, ...] = (0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255)
"""L-inf radii attacked by default, in the [0, 1] image scale."""

_BATCH_SIZE = 128
_LEARNING_RATE = 1e-2
_PGD_STEPS = 10
_ATTACKS = ("FGSM", f"PGD-{_PGD_STEPS}")
_COLUMNS = (*_ATTACKS, "worst")  # worst: broken by either attack (per-sample worst case)


class DemoResult(TypedDict):
    """What :func:`run_demo` returns; accuracies are fractions in [0, 1]."""

    clean_accuracy: float
    robust_accuracy: dict[float, dict[str, float]]
    train_seconds: float
    num_test: int
    num_steps: int


def run_demo(
    *,
    epochs: int = 8,
    num_steps: int = 4,
    eps: Sequence[float] = DEFAULT_EPS,
    seed: int = 0,
    progress: bool = True,
    out: TextIO | None = None,
) -> DemoResult:
    """Train a convolutional snnTorch SNN on the 8x8 digits and report its robust accuracy.

    The network is ``Conv(1→16) → Leaky → MaxPool → Conv(16→32) → Leaky → MaxPool →
    Linear(128→10) → Leaky(output=True)`` with ``beta=0.9`` and ``init_hidden=True``, read
    out through the time-mean membrane of the last layer (``SpikingClassifier(net,
    num_steps)``). It is trained with Adam (learning rate 1e-2, batches of 128) and
    cross-entropy on :func:`robust_spikes.data.digits` ``("train", seed=seed)``; with the
    defaults this takes a few seconds on two CPU cores and reaches about 95% clean test
    accuracy.

    It is then evaluated, in eval mode, on the 450 test images: clean accuracy, and for
    each radius in ``eps`` the robust accuracy under ``torchattacks.FGSM(model, eps)`` and
    ``torchattacks.PGD(model, eps, alpha=max(eps / 4, 0.5 / 255), steps=10,
    random_start=True)``. An image counts as robust if it is classified correctly both
    clean and under attack (so robust accuracy never exceeds clean accuracy); for
    ``eps=0`` no attack is run and the robust accuracy is the clean accuracy.

    Initialisation, shuffling and PGD's random start are seeded from ``seed`` inside
    :func:`torch.random.fork_rng`, so the caller's global random state is left unchanged
    and two calls with the same arguments give the same numbers on the same machine.

    A report (a header, the training time, the clean accuracy and a Markdown table of
    robust accuracies) is written to ``out``; a ``tqdm`` progress bar goes to stderr.

    Args:
        epochs: Number of passes over the 1347 training images (a positive int).
        num_steps: Number of simulation time steps ``T`` (a positive int).
        eps: L-inf attack radii in the [0, 1] image scale, each in ``[0, 1]``; rows of the
            table, in the order given.
        seed: Seed of the data split, the initialisation, the shuffling and the attacks.
        progress: Show progress bars for training and attacks on stderr.
        out: Text stream the report is written to; default :data:`sys.stdout`.

    Returns:
        A :class:`DemoResult` dict: ``"clean_accuracy"`` (float), ``"robust_accuracy"``
        (``{eps: {"FGSM": float, "PGD-10": float, "worst": float}}`` keyed by each
        ``float(eps)``; ``"worst"`` counts a sample as robust only if neither attack broke
        it),
        ``"train_seconds"`` (wall time of the training loop), ``"num_test"`` (number of
        test images) and ``"num_steps"``.

    Raises:
        ValueError: If ``epochs`` or ``num_steps`` is not a positive int, or ``eps`` is
            empty or holds a value that is not a finite number in ``[0, 1]``.
        TypeError: If ``seed`` is not an int or ``eps`` is not a sequence.
        ImportError: If snnTorch, torchattacks or scikit-learn is not installed (the
            message names the extra to install).

    Example:
        >>> import io
        >>> report = io.StringIO()
        >>> result = run_demo(epochs=1, eps=(0.0, 8 / 255), progress=False, out=report)
        >>> result["num_test"], result["num_steps"], sorted(result["robust_accuracy"])
        (450, 4, [0.0, 0.03137254901960784])
        >>> result["robust_accuracy"][0.0]["PGD-10"] == result["clean_accuracy"]
        True
        >>> "| 8/255 " in report.getvalue()
        True
    """
    epochs = check_positive_int("epochs", epochs)
    num_steps = check_positive_int("num_steps", num_steps)
    radii = _check_eps(eps)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r} of type {type(seed).__name__}")
    seed = int(seed)
    stream = sys.stdout if out is None else out

    require("snntorch", "robust_spikes.demo")  # fail before loading data if it is missing
    torchattacks = require("torchattacks", "robust_spikes.demo")
    tqdm = require("tqdm", "robust_spikes.demo").tqdm
    train_set, test_set = data.digits("train", seed=seed), data.digits("test", seed=seed)

    _write(
        stream,
        f"robust-spikes demo: a convolutional snnTorch SNN on the 8x8 digits "
        f"(T={num_steps} steps, {epochs} epoch{'s' * (epochs != 1)}, seed {seed})",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SpikingClassifier(build_net(), num_steps)
        start = time.perf_counter()
        _train(model, train_set.images, train_set.labels, epochs, seed, progress, tqdm)
        train_seconds = time.perf_counter() - start
        _write(stream, f"Training: {len(train_set)} images, {train_seconds:.1f} s")

        model.eval()
        x, y = test_set.images, test_set.labels
        clean_correct = _correct(model, x, y)
        clean_accuracy = _mean(clean_correct)
        _write(stream, f"Clean accuracy: {_percent(clean_accuracy)} on {len(y)} test images")

        robust: dict[float, dict[str, float]] = {}
        attacked = [e for e in radii if e > 0.0]
        bar = tqdm(
            total=len(attacked) * len(_ATTACKS),
            desc="attack",
            unit="attack",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
        )
        with bar:
            for e in radii:
                if e == 0.0:
                    robust[e] = dict.fromkeys(_COLUMNS, clean_accuracy)
                    continue
                robust[e] = {}
                survivors = clean_correct.clone()
                for name in _ATTACKS:
                    bar.set_postfix(eps=format_eps(e), attack=name, refresh=False)
                    torch.manual_seed(seed)
                    attack = _make_attack(torchattacks, name, model, e)
                    correct = clean_correct & _correct(model, attack(x, y), y)
                    robust[e][name] = _mean(correct)
                    survivors &= correct
                    bar.update(1)
                robust[e]["worst"] = _mean(survivors)

    _write(stream, _format_table(robust))
    return {
        "clean_accuracy": clean_accuracy,
        "robust_accuracy": robust,
        "train_seconds": train_seconds,
        "num_test": len(y),
        "num_steps": num_steps,
    }


def format_eps(eps: float) -> str:
    """A readable label for an attack radius: ``"8/255"`` for multiples of 1/255.

    Args:
        eps: Radius in the [0, 1] image scale.

    Returns:
        ``"k/255"`` when ``eps * 255`` is (to 1e-6) an integer ``k`` with ``0 < k < 255``,
        otherwise the shortest ``%g`` form (``"0"``, ``"1"``, ``"0.03"``).

    Example:
        >>> format_eps(8 / 255), format_eps(0.0), format_eps(0.03)
        ('8/255', '0', '0.03')
    """
    k = round(eps * 255)
    if 0 < k < 255 and abs(eps * 255 - k) < 1e-6:
        return f"{k}/255"
    return f"{eps:g}"


# ----------------------------------------------------------------------------- private
def build_net() -> nn.Sequential:
    """The demo network for ``[N, 1, 8, 8]`` digits, in the idiomatic snnTorch style.

    ``Conv(1->16) -> Leaky -> MaxPool -> Conv(16->32) -> Leaky -> MaxPool ->
    Linear(128->10) -> Leaky(output=True)``, ``beta=0.9``, ``init_hidden=True``.

    Shape:
        One step: ``[N, 1, 8, 8]`` -> ``(spikes, membrane)``, each ``[N, 10]``.

    Example:
        >>> build_net()(torch.rand(2, 1, 8, 8))[1].shape
        torch.Size([2, 10])
    """
    snn = require("snntorch", "robust_spikes.demo")
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 10),
        snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )


def _train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    seed: int,
    progress: bool,
    tqdm: Any,
) -> None:
    """Adam + cross-entropy, shuffled by a generator seeded with ``seed``."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=_LEARNING_RATE)
    generator = torch.Generator().manual_seed(seed)
    batches = math.ceil(len(x) / _BATCH_SIZE)
    bar = tqdm(
        total=epochs * batches,
        desc="train",
        unit="batch",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    with bar:
        for epoch in range(epochs):
            total, seen = 0.0, 0
            for idx in torch.randperm(len(x), generator=generator).split(_BATCH_SIZE):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
                seen += len(idx)
                bar.set_postfix(
                    epoch=f"{epoch + 1}/{epochs}", loss=f"{total / seen:.3f}", refresh=False
                )
                bar.update(1)


def _make_attack(torchattacks: Any, name: str, model: nn.Module, eps: float) -> Any:
    if name == "FGSM":
        return torchattacks.FGSM(model, eps=eps)
    alpha = max(eps / 4, 0.5 / 255)
    return torchattacks.PGD(model, eps=eps, alpha=alpha, steps=_PGD_STEPS, random_start=True)


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1) == y


def _mean(mask: torch.Tensor) -> float:
    return float(mask.float().mean())


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


def _format_table(robust: dict[float, dict[str, float]]) -> str:
    header = ["eps", "eps (float)", *_COLUMNS]
    rows = [
        [format_eps(e), f"{e:.4f}", *(_percent(accs[name]) for name in _COLUMNS)]
        for e, accs in robust.items()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:  # the label left-aligned, the numbers right-aligned
        padded = [cells[0].ljust(widths[0])]
        padded += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|:" + "-" * (widths[0] + 1) + "|" + "|".join("-" * (w + 1) + ":" for w in widths[1:])
    rule += "|"
    title = "Robust accuracy under L-inf attacks (eps in the [0, 1] image scale):"
    return "\n".join([title, "", line(header), rule, *map(line, rows)])


def _check_eps(eps: Any) -> list[float]:
    if isinstance(eps, str) or not isinstance(eps, Sequence):
        raise TypeError(
            f"eps must be a sequence of floats in [0, 1], got {eps!r} of type {type(eps).__name__}"
        )
    if len(eps) == 0:
        raise ValueError("eps must hold at least one radius, got an empty sequence")
    radii = []
    for e in eps:
        ok = isinstance(e, numbers.Real) and not isinstance(e, bool)
        if not (ok and math.isfinite(float(e)) and 0.0 <= float(e) <= 1.0):
            raise ValueError(f"eps must hold finite numbers in [0, 1], got {e!r} in {eps!r}")
        radii.append(float(e))
    return radii


def _write(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()
