"""The full demo: six robust-spikes models on the digits, evaluated under both protocols.

:func:`run_demo` is what ``robust-spikes demo`` and ``make demo`` run. On scikit-learn's 8x8
digits (no download) it trains a plain LIF SNN (the snnTorch network of :func:`build_net`),
its TA-LIF adaptation (HoSNN neurons), a stochastically gated version (StoG), a
Poisson-coded SNN, an FGSM-trained SNN and a PGD-trained ANN converted to an SNN and
fine-tuned (:mod:`robust_spikes.conversion`, T=8); evaluates each with
:func:`robust_spikes.evaluate` under the literature's protocol and the adaptive one;
prints one table that compares them; and writes ``report.md``, ``report.json`` and
``robustness.png``. New models are added in one place, :data:`MODELS`.

Constants (plain values, documented here because they cannot carry a docstring):

* ``DEFAULT_EPS``: ``tuple[float, ...]``, the L-inf radii that :func:`run_demo` attacks
  by default, 4/255 and 8/255 in the [0, 1] image scale.
* ``DEFAULT_SEEDS``: ``tuple[int, ...]``, the seeds :func:`run_demo` runs by default
  (0, 1): the table gives the mean and the range over them (two seeds keep the demo
  within 10 minutes on 2 cores; pass more with ``seeds=``).
* ``DATASETS``: ``dict[str, str]``, the data sets :func:`run_demo` takes (``"digits"``,
  ``"mnist-5k"``) and their names in the table.
* ``MODELS``: ``dict[str, builder]``, the demo's models in table order; each builder
  takes the demo's private training setup and returns a trained
  :class:`~robust_spikes.SpikingClassifier`. Add a model by adding an entry.

Example:
    >>> [format_eps(eps) for eps in DEFAULT_EPS]
    ['4/255', '8/255']
    >>> len(MODELS), list(MODELS)[-2]
    (6, 'FGSM-trained (8/255)')
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TextIO, TypedDict

import torch
from torch import nn

from robust_spikes import data
from robust_spikes._optional import require
from robust_spikes._tables import markdown_table
from robust_spikes.classifier import SpikingClassifier
from robust_spikes.evaluation._report import RobustnessReport, format_eps, plot_curves

__all__ = [
    "DEFAULT_EPS",
    "MODELS",
    "DemoResult",
    "build_net",
    "run_demo",
]

DEFAULT_EPS: tuple[float, ...] = (4 / 255, 8 / 255)
"""L-inf radii attacked by default, in the [0, 1] image scale."""
DEFAULT_SEEDS: tuple[int, ...] = (0, 1)
DATASETS = {"digits": "the 8x8 digits", "mnist-5k": "MNIST-5k"}

NUM_STEPS = 4
_ATTACKS = (  # the adaptive members of the demo: one of each kind, cheapest first
    "FGSM",
    "PGD-20",
    "PGD-20/triangle(1)",
    "PGD-20/ann",
    "Square-200",
)


class _Setup(NamedTuple):
    """What a model builder gets: training data, the budget and shared trained weights."""

    train: tuple[torch.Tensor, torch.Tensor]
    side: int  # image height and width
    epochs: int
    seed: int
    progress: bool
    plain: dict[str, Any]  # cache: the trained plain LIF network, shared by adaptations


def _fit(model: nn.Module, setup: _Setup, epochs: int, adversary: Any = None) -> None:
    from robust_spikes.training import fit

    fit(
        model,
        setup.train,
        epochs=epochs,
        optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
        adversary=adversary,
        seed=setup.seed,
        batch_size=128,
        progress=setup.progress,
    )


def _plain_net(setup: _Setup) -> nn.Module:
    """The trained plain LIF network (trained once, then copied)."""
    if "net" not in setup.plain:
        torch.manual_seed(setup.seed)
        model = SpikingClassifier(build_net(setup.side), NUM_STEPS)
        _fit(model, setup, setup.epochs)
        setup.plain["net"] = model.net
    return copy.deepcopy(setup.plain["net"])


def _lif(setup: _Setup) -> SpikingClassifier:
    return SpikingClassifier(_plain_net(setup), NUM_STEPS)


def _ta_lif(setup: _Setup) -> SpikingClassifier:
    from robust_spikes.neurons import adapt, record_signature

    model = SpikingClassifier(adapt(_plain_net(setup), "ta-lif"), NUM_STEPS)
    record_signature(model, [setup.train[0]])
    _fit(model, setup, max(1, setup.epochs // 4))  # fine-tune with adaptive thresholds
    return model


def _gated(setup: _Setup) -> SpikingClassifier:
    from robust_spikes.neurons import adapt

    model = SpikingClassifier(adapt(_plain_net(setup), "stochastic-gate"), NUM_STEPS)
    model(setup.train[0][:2])  # materialises the gates' rho
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("rho"):
                p.fill_(0.75)  # keep 3 spikes in 4 (StoG learns rho; here it is fixed)
                p.requires_grad_(False)
    _fit(model, setup, max(1, setup.epochs // 4))
    return model


def _poisson(setup: _Setup) -> SpikingClassifier:
    from robust_spikes.encoders import Poisson

    torch.manual_seed(setup.seed)
    model = SpikingClassifier(build_net(setup.side), NUM_STEPS, encoder=Poisson())
    _fit(model, setup, setup.epochs)
    return model


def _fgsm_trained(setup: _Setup) -> SpikingClassifier:
    from robust_spikes.training import FGSM

    torch.manual_seed(setup.seed)
    model = SpikingClassifier(build_net(setup.side), NUM_STEPS)
    _fit(model, setup, setup.epochs, adversary=FGSM(8 / 255))
    return model


def _converted(setup: _Setup) -> SpikingClassifier:
    from robust_spikes.conversion import convert, robust_finetune
    from robust_spikes.training import PGD

    torch.manual_seed(setup.seed)
    ann = nn.Sequential(  # build_net's layout with ReLU for the neurons
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * (setup.side // 4) ** 2, 10),
    )  # fmt: skip
    _fit(ann, setup, setup.epochs, adversary=PGD(8 / 255, alpha=3 / 255, steps=3))
    snn = convert(ann.eval(), setup.train[0][:256], scale=0.3, calibration_steps=20)
    model = SpikingClassifier(snn, CONVERTED_STEPS)
    robust_finetune(
        model,
        setup.train,
        eps=8 / 255,
        alpha=4 / 255,
        epochs=max(1, setup.epochs // 4),
        lr=0.05,
        seed=setup.seed,
        progress=setup.progress,
    )
    return model


CONVERTED_STEPS = 8


MODELS: dict[str, Callable[[_Setup], SpikingClassifier]] = {
    "LIF": _lif,
    "TA-LIF (HoSNN)": _ta_lif,
    "stochastic gates (StoG)": _gated,
    "Poisson-coded": _poisson,
    "FGSM-trained (8/255)": _fgsm_trained,
    f"converted PGD-trained ANN, fine-tuned (T={CONVERTED_STEPS})": _converted,
    # Add a model here: "name": builder(setup) -> SpikingClassifier.
}
"""The demo's models, in table order: ``name -> builder(setup) -> SpikingClassifier``."""


class DemoResult(TypedDict):
    """What :func:`run_demo` returns.

    Keys: ``reports`` (model name -> a list of
    :class:`~robust_spikes.evaluation.RobustnessReport`, one per seed),
    ``table`` (the printed Markdown), ``seconds`` (wall time) and ``num_test`` (number of
    test digits evaluated).

    Example:
        >>> result = DemoResult(reports={}, table="| model |", seconds=1.5, num_test=12)
        >>> sorted(result)
        ['num_test', 'reports', 'seconds', 'table']
    """

    reports: dict[str, list[RobustnessReport]]
    table: str
    seconds: float
    num_test: int


def run_demo(
    out_dir: str | Path | None = None,
    *,
    quick: bool = False,
    eps: Sequence[float] = DEFAULT_EPS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    dataset: str = "digits",
    progress: bool = True,
    out: TextIO | None = None,
) -> DemoResult:
    """Train the :data:`MODELS` for each seed, evaluate them, print and write the report.

    Each model is evaluated with :func:`robust_spikes.evaluate` (``protocol="both"``) on the
    first test images: the paper protocol (FGSM and PGD-7, step 0.01, random start, the
    model's own surrogate) and the adaptive one (FGSM; PGD-20 through the model's own
    gradient, the triangle surrogate and the ANN twin; Square with 200 queries; EOT with 10
    samples for the stochastic models; a PGD-40 convergence check, a PGD-20 escalation on
    the samples only Square or the ANN twin broke, and the large-eps check;
    and the paper attacks, so adaptive is never above paper), every prediction of a
    stochastic model a 10-pass vote in both protocols. This is a smaller ensemble than
    ``evaluate``'s default, to fit a few minutes on two CPU cores. Every seed draws its own
    data split, initialisation, training and attacks; the printed table lists, per model,
    the mean and the spread (min-max) over the seeds of the clean accuracy and, per radius,
    the paper and the adaptive worst case, then the masking flags of any seed.

    Full setting: 8 training epochs, 100 test images per seed. ``quick=True`` (for tests):
    1 epoch, 12 test images, fewer attacks (FGSM, PGD-20/triangle(1), Square-50), EOT 2, no
    convergence check.

    Args:
        out_dir: folder for ``report.md``, ``report.json`` and ``robustness.png`` (created);
            ``None`` writes nothing.
        quick: the small setting above.
        eps: L-inf radii in [0, 1] (image scale).
        seeds: one run per seed (ints >= 0, distinct).
        dataset: ``"digits"`` (scikit-learn's 8x8 digits, the default: the whole demo fits
            a few minutes on 2 CPU cores) or ``"mnist-5k"`` (:func:`robust_spikes.data.
            mnist5k`, 28x28, about ten times slower).
        progress: progress bars on stderr.
        out: stream for the report text; default ``sys.stdout``.

    Returns:
        A :class:`DemoResult`: ``reports`` (name -> one RobustnessReport per seed),
        ``table`` (the printed Markdown), ``seconds`` (wall time) and ``num_test``.

    Raises:
        ValueError: bad ``eps``, ``seeds`` or ``dataset``.
        ImportError: snnTorch, torchattacks or scikit-learn missing (names the extra).

    Shape:
        the data: ``[N, 1, H, W]`` images in [0, 1] with labels ``[N]`` (10 classes); each
        model maps them to ``[N, 10]`` logits. ``eps`` in the [0, 1] image scale. Returns a
        :class:`DemoResult` (no tensors).

    Example:
        ``run_demo(quick=True, seeds=[0], out_dir="demo-out")`` takes well under a minute,
        too long for a doctest; the models, and a bad radius rejected before any training:

        >>> list(MODELS)[:3]
        ['LIF', 'TA-LIF (HoSNN)', 'stochastic gates (StoG)']
        >>> run_demo(eps=[2.0])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: eps must hold finite numbers in [0, 1] (the image scale), got 2.0 ...
    """
    from robust_spikes.evaluation import evaluate

    require("snntorch", "robust_spikes.app.demo")
    require("torchattacks", "robust_spikes.app.demo")
    from robust_spikes.evaluation._settings import check_eps

    check_eps(list(eps), "Linf")  # fail before training
    seeds = _check_seeds(seeds)
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    stream = sys.stdout if out is None else out
    started = time.perf_counter()
    num_test = 12 if quick else 100
    epochs = 1 if quick else 8
    options: dict[str, Any] = {
        "attacks": list(_ATTACKS),
        "square_queries": 200,
        "eot": 10,
        "convergence_steps": 40,
        "escalation_steps": 20,
    }
    if quick:
        options = {
            "attacks": ["FGSM", "PGD-20/triangle(1)", "Square-50"],
            "square_queries": 50,
            "eot": 2,
            "convergence_steps": None,
            "escalation_steps": None,
        }
    _write(
        stream,
        f"robust-spikes demo: {len(MODELS)} spiking networks on {DATASETS[dataset]} "
        f"(T={NUM_STEPS}, {epochs} epoch{'s' * (epochs != 1)}, {num_test} test images, "
        f"seeds {', '.join(map(str, seeds))})",
    )
    reports: dict[str, list[RobustnessReport]] = {name: [] for name in MODELS}
    for seed in seeds:
        (x_train, y_train), (x, y) = _load(dataset, seed)
        x, y = x[:num_test], y[:num_test]
        setup = _Setup((x_train, y_train), x.shape[-1], epochs, seed, progress, {})
        with torch.random.fork_rng(devices=[]):
            for name, builder in MODELS.items():
                t0 = time.perf_counter()
                model = builder(setup).eval()
                t1 = time.perf_counter()
                reports[name].append(
                    evaluate(
                        model,
                        (x, y),
                        eps=list(eps),
                        protocol="both",
                        seed=seed,
                        progress=progress,
                        **options,
                    )
                )
                _write(
                    stream,
                    f"  seed {seed}, {name}: trained in {t1 - t0:.0f} s, evaluated in "
                    f"{time.perf_counter() - t1:.0f} s",
                )
    table = comparison_table(reports, dataset=DATASETS[dataset])
    seconds = time.perf_counter() - started
    _write(stream, "")
    _write(stream, table)
    _write(stream, f"Total time: {seconds:.0f} s")
    if out_dir is not None:
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        body = [table, ""]
        for name, runs in reports.items():
            for seed, report in zip(seeds, runs, strict=True):
                body += [f"## {name}, seed {seed}", "", report.to_markdown()]
        (folder / "report.md").write_text("\n".join(body), encoding="utf-8")
        summary = {
            name: {str(seed): r.to_dict() for seed, r in zip(seeds, runs, strict=True)}
            for name, runs in reports.items()
        }
        (folder / "report.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        series = {
            f"{name}, {p}": [
                (e, sum(r.protocol_accuracy(p)[e]["worst"] for r in runs) / len(runs))
                for e in runs[0].settings["eps"]
            ]
            for name, runs in reports.items()
            for p in runs[0].protocols
        }
        plot_curves(
            series, folder / "robustness.png", title=f"{DATASETS[dataset]}: robust accuracy"
        )
        _write(stream, f"Wrote {folder / 'report.md'}, report.json and robustness.png")
    return {"reports": reports, "table": table, "seconds": seconds, "num_test": num_test}


def _check_seeds(seeds: Any) -> list[int]:
    values = list(seeds) if isinstance(seeds, Sequence) and not isinstance(seeds, str) else None
    if (
        not values
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values)
        or len(set(values)) != len(values)
    ):
        raise ValueError(f"seeds must be a non-empty sequence of distinct ints >= 0, got {seeds!r}")
    return values


def _load(dataset: str, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(train images, labels), (test images, labels)]`` of the dataset's split for seed."""
    load = data.digits if dataset == "digits" else data.mnist5k
    return [(d.images, d.labels) for d in (load(s, seed=seed) for s in ("train", "test"))]


def _spread(values: list[float]) -> str:
    """``"mean"`` for one value, ``"mean (min-max)"`` for several, in percent."""
    mean = 100 * sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ({100 * min(values):.0f}-{100 * max(values):.0f})"


def comparison_table(reports: dict[str, list[RobustnessReport]], dataset: str = "digits") -> str:
    """One Markdown table: per model, clean accuracy and paper / adaptive worst case per eps.

    Each cell is the mean over the model's reports (one per seed) with the range in
    parentheses when there are several.

    Args:
        reports: ``name -> [RobustnessReport, ...]``, one per seed, evaluated with
            ``protocol="both"`` at the same radii.
        dataset: the data set's name for the title.

    Returns:
        The table with a title line.
    """
    runs = [r for rs_ in reports.values() for r in rs_]
    first = runs[0]
    radii = first.settings["eps"]
    header = ["model", "clean"]
    for e in radii:
        header += [f"paper {format_eps(e)}", f"adaptive {format_eps(e)}"]
    header.append("flags")
    rows = []
    for name, model_runs in reports.items():
        paper = [r.protocol_accuracy("paper") for r in model_runs]
        adaptive = [r.protocol_accuracy("adaptive") for r in model_runs]
        row = [name, _spread([r.clean_accuracy for r in model_runs])]
        for e in radii:
            row += [_spread([p[e]["worst"] for p in paper])]
            row += [_spread([a[e]["worst"] for a in adaptive])]
        row.append(", ".join(sorted({f["code"] for r in model_runs for f in r.flags})) or "-")
        rows.append(row)
    stochastic = [r.settings for r in runs if r.settings["stochastic"]]
    vote = (
        f" Stochastic models: every prediction, clean and attacked, is the majority vote over "
        f"{max(s['prediction_samples'] for s in stochastic)} passes; the adaptive ensemble "
        f"uses EOT with {max(s['eot'] for s in stochastic)} gradient samples."
        if stochastic
        else ""
    )
    seeds = len(next(iter(reports.values())))
    spread = f"mean (min-max) over {seeds} seeds" if seeds > 1 else "one seed"
    title = (
        f"Accuracy (%) on {first.num_samples} test images of {dataset} per seed, {spread}, "
        "under L-inf attacks (eps in the [0, 1] image scale). paper: worst of FGSM and PGD-7 "
        "(step 0.01, random start); adaptive: per-sample worst case of the robust-spikes "
        f"ensemble and the paper attacks, so never above paper.{vote}"
    )
    table = markdown_table(header, rows, left=(0, len(header) - 1))
    return "\n".join([title, "", *table])


def build_net(side: int = 8) -> nn.Sequential:
    """The demo network for ``[N, 1, side, side]`` images, in the idiomatic snnTorch style.

    ``Conv(1->16) -> Leaky -> MaxPool -> Conv(16->32) -> Leaky -> MaxPool ->
    Linear(32 * (side // 4)^2 -> 10) -> Leaky(output=True)``, ``beta=0.9``,
    ``init_hidden=True``.

    Args:
        side: image height and width (8 for the digits, 28 for MNIST).

    Shape:
        One step: ``[N, 1, side, side]`` -> ``(spikes, membrane)``, each ``[N, 10]``.

    Example:
        >>> build_net()(torch.rand(2, 1, 8, 8))[1].shape
        torch.Size([2, 10])
    """
    snn = require("snntorch", "robust_spikes.app.demo")
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * (side // 4) ** 2, 10),
        snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )


def _write(stream: TextIO, text: str) -> None:
    stream.write(text + "\n")
    stream.flush()
