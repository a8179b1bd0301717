"""``evaluate``: clean and robust accuracy of a spiking classifier under two protocols.

How one evaluation runs (design/EVALUATION.md):

1. The samples are cut into chunks of ``batch_size`` consecutive indices. A chunk is the
   unit of work, of randomness and of writing: its global RNG and model generator are
   seeded from ``(seed, first index of the chunk, what is being done)``, so its records
   depend on the data, the model and the settings only, never on which process computed
   it, in which order, or whether the run was interrupted before.
2. For each chunk: the clean prediction, the spike count of a clean forward pass, the
   input gradient of the loss (for the zero-gradient check); then for each protocol and
   radius the attacks; then a large-radius gradient attack (the sanity check); then,
   when asked, the randomized-smoothing certificate of each sample (its randomness is
   seeded per sample, from ``(seed, sample index)``, as in :func:`certify`).
3. The chunk's records are appended to the records file in one write, and the report is
   computed from all records at the end (after merging the ranks' records when
   ``torch.distributed`` is initialised).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from robust_spikes._checks import check_positive_int
from robust_spikes._modes import kept_modes
from robust_spikes.evaluation import _distributed, _fingerprint, _records, _sanity
from robust_spikes.evaluation._chunk import Chunk, Run
from robust_spikes.evaluation._report import RobustnessReport
from robust_spikes.evaluation._sample import SampleRecord
from robust_spikes.evaluation._settings import (
    NORMS,
    AttackInfo,
    EvaluationSettings,
    as_data,
    check_certify,
    check_eps,
    steps_or_none,
)

__all__ = ["PROTOCOLS", "evaluate"]

Protocol = Literal["adaptive", "paper", "both"]
PROTOCOLS = ("adaptive", "paper", "both")


def evaluate(
    model: nn.Module,
    data: Any,
    *,
    eps: float | Sequence[float],
    norm: Literal["Linf", "L2"] = "Linf",
    protocol: Protocol = "adaptive",
    attacks: Sequence[Any] | None = None,
    num_samples: int | None = None,
    seed: int = 0,
    records: str | Path | None = None,
    batch_size: int = 64,
    eot: int = 10,
    square_queries: int = 5000,
    convergence_steps: int | None = 100,
    sanity_eps: float | None = None,
    certify: Mapping[str, Any] | None = None,
    progress: bool = True,
    escalation_steps: int | None = 200,
    escalation_samples: int | None = 16,
) -> RobustnessReport:
    """Clean and robust accuracy of ``model`` on ``data``, with checks for gradient masking.

    Protocols (design/EVALUATION.md): ``"paper"`` is the literature's setting, FGSM and
    PGD-7 (step 0.01, random start) through the model's own surrogate, each attack on every
    sample, one gradient sample per step. ``"adaptive"`` (default)
    is the per-sample worst case of :class:`~robust_spikes.attacks.AdaptiveEnsemble`: white-
    box members first (default: FGSM, PGD-20 through the model's own gradient, four
    catalogue surrogates and the modes ``pdsg``, ``bptr``, ``rga``; APGD-CE, APGD-DLR), then
    a longer PGD run (the convergence check), then transfer (the ANN twin) and query
    attacks (Square); each member sees only the samples every earlier member failed to
    break; the paper protocol's attacks count too (as ``"paper:FGSM"`` and
    ``"paper:PGD-7"``, after every other member), so the adaptive worst case is never above
    the paper protocol's. A stochastic model gets EOT with ``eot`` gradient samples per step
    in the adaptive protocol. ``"both"`` runs both.

    Accuracy of a stochastic model (one definition for the whole report): each sample's
    prediction is the majority vote over ``num_samples`` forward passes, clean and under
    every attack of both protocols.

    Records: with ``records`` (a path), one JSON line per sample (index, label, clean
    prediction, spike count, input-gradient norm, and per protocol and radius the attack
    that broke it, the attacks that fooled it and the perturbation norm; with ``certify``,
    its smoothing certificate) is appended chunk by chunk. Calling ``evaluate`` again with
    the same path, model, data and settings resumes: samples already recorded are not
    evaluated again, a truncated last line (a killed process) is dropped, and the finished
    file holds each sample once, sorted by index. The file's header holds a fingerprint of
    the model (every parameter and buffer of ``state_dict()``, the module tree, and a
    classifier's ``num_steps``, ``readout``, encoder, ``normalize`` and ``input_range``) and
    of the data (the images and labels, in order); another model, other data (reordered
    included) or other settings raise a ``ValueError`` naming what differs rather than mix
    results, and so does a file written before fingerprints existed (robust-spikes 0.1:
    its model is unknown). Use a new path or delete the file then.

    Randomness: the samples are cut into chunks of ``batch_size`` consecutive indices; the
    global RNG (torchattacks' random starts) and the model's ``generator`` are seeded from
    ``(seed, first index of the chunk, step)`` before each step, so the records depend only
    on the model, the data and the settings (``batch_size`` included), never on the number
    of processes or on interruptions (certification draws per sample, from ``(seed, sample
    index)``, so its records do not depend on ``batch_size`` either). The caller's global
    RNG and the model's generator state and train/eval modes are restored afterwards.

    Distributed: when a ``torch.distributed`` process group is initialised (``torchrun``),
    chunk ``k`` is evaluated by rank ``k % world_size`` (no padding, no duplicates), the
    records are gathered, and rank 0 writes the merged records file; every rank returns
    the same report. Ranks write part files ``RECORDS.part-R`` while they run.

    Args:
        model: a :class:`~robust_spikes.SpikingClassifier` (gradient modes and spike counts
            need one), or any classifier ``[N, ...] -> [N, K]`` with ``attacks`` free of
            gradient modes.
        data: an ``(images, labels)`` pair of tensors, a Dataset of ``(image, label)``
            pairs, a DataLoader, or any iterable of ``(images, labels)`` batches (a list of
            batch tuples included); images in [0, 1]. It is read once, in order.
        eps: one radius or a sequence, in the [0, 1] image scale for ``"Linf"``; ``0``
            gives the clean accuracy.
        norm: ``"Linf"`` or ``"L2"`` (the paper protocol then runs PGD-7 only).
        protocol: ``"adaptive"``, ``"paper"`` or ``"both"``.
        attacks: adaptive members: :class:`~robust_spikes.attacks.Member` objects or names
            of :func:`~robust_spikes.attacks.default_members`; default all of them.
            ``"Square-N"`` is Square with ``N`` queries whatever ``square_queries`` is.
        num_samples: forward passes per prediction (a majority vote) of a stochastic model,
            in both protocols (default 10; 1 for a deterministic model).
        seed: base seed (an int >= 0).
        records: JSON-lines path for per-sample records and resume, or ``None``.
        batch_size: samples per chunk.
        eot: gradient samples per attack step for a stochastic model (adaptive protocol).
        square_queries: queries of the default Square member (when ``attacks`` is None).
        convergence_steps: steps of the extra PGD run (step size of PGD-20) that checks
            convergence; ``0`` or ``None`` skips it (the CLI's ``--convergence-steps 0``).
        sanity_eps: radius of the large-eps check (PGD-20 through the model's own
            gradient); default 0.5 for ``"Linf"`` and ``0.5 * sqrt(pixels)`` for ``"L2"``;
            ``0`` skips the check.
        certify: also certify every sample with randomized smoothing (:func:`certify`,
            Cohen et al. 2019; Bernoulli coding for ``"l1"``, Mukhoty et al. 2024) and
            report the certified accuracy: a dict with any of the keys ``sigma`` (required
            for ``"l2"``), ``n0`` (100), ``n`` (1000), ``alpha`` (0.001), ``norm``
            (``"l2"``), ``batch_size`` (1000 noisy copies per call) and ``radii`` at which
            the summary reports certified accuracy (default ``[0, 0.25, 0.5, 0.75, 1]``
            for ``"l2"``, ``[0, 0.1, 0.2, 0.3, 0.4]`` for ``"l1"``; other radii on resume
            only change the summary). ``None`` (default) skips it.
        progress: show a progress bar on stderr (rank 0 only).
        escalation_steps: steps of the escalated PGD through the model's own gradient
            (then a quarter of them through five more surrogates, 3 restarts each) that
            the adaptive ensemble runs on the
            samples only transfer or query members broke; ``0`` or ``None`` skips it (see
            :class:`~robust_spikes.attacks.AdaptiveEnsemble`). Its outcome is recorded
            per sample (``"escalated"``) and stated by the ``black-box-beats-white-box``
            flag.
        escalation_samples: at most this many of those samples per batch are escalated (a
            seeded draw; the flag states how many were); ``0`` or ``None`` escalates all.

    Returns:
        A :class:`~robust_spikes.evaluation.RobustnessReport`.

    Shape:
        images ``[N, C, H, W]`` (or ``[N, F]``), labels ``[N]``.

    Raises:
        ValueError: bad ``eps``, ``norm``, ``protocol``, ``attacks``, ``num_samples``,
            ``seed``, ``batch_size``, ``eot``, ``square_queries``, ``convergence_steps``,
            ``escalation_steps``, ``escalation_samples``, ``sanity_eps``, ``certify`` or
            ``data``; a records file written for another
            model, other data or with other settings, or without a fingerprint.
        TypeError: ``model`` is not an ``nn.Module``; gradient-mode members on a model
            without ``gradient``.

    Example:
        >>> import snntorch as snn
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10),
        ...                     snn.Leaky(beta=0.9, init_hidden=True, output=True))
        >>> from robust_spikes import SpikingClassifier
        >>> x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
        >>> report = evaluate(SpikingClassifier(net, 4), (x, y), eps=[0.1], attacks=["FGSM"],
        ...                   convergence_steps=None, sanity_eps=0, progress=False)
        >>> sorted(report.to_dict()["robust_accuracy"][0.1])
        ['FGSM', 'paper:FGSM', 'paper:PGD-7', 'worst']
    """
    from robust_spikes.attacks import _suite

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    radii = check_eps(eps, norm)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**62:
        raise ValueError(f"seed must be an int in [0, 2**62), got {seed!r}")
    batch_size = check_positive_int("batch_size", batch_size)
    eot = check_positive_int("eot", eot)
    square_queries = check_positive_int("square_queries", square_queries)
    convergence_steps = steps_or_none("convergence_steps", convergence_steps)
    escalation_steps = steps_or_none("escalation_steps", escalation_steps)
    escalation_samples = steps_or_none("escalation_samples", escalation_samples, "lifts the cap")
    x_all, y_all = as_data(data)
    stochastic = bool(getattr(model, "is_stochastic", False))
    undeclared = None if stochastic else _sanity.undeclared_randomness(model, x_all, seed)
    stochastic = stochastic or undeclared is not None
    if num_samples is None:
        num_samples = 10 if stochastic else 1
    num_samples = check_positive_int("num_samples", num_samples)
    if sanity_eps is None:
        sanity_eps = 0.5 if norm == "Linf" else 0.5 * math.sqrt(x_all[0].numel())
    elif not (
        isinstance(sanity_eps, numbers.Real)
        and not isinstance(sanity_eps, bool)
        and 0.0 <= float(sanity_eps) < math.inf
        and (norm == "L2" or float(sanity_eps) <= 1.0)
    ):
        raise ValueError(
            f"sanity_eps must be a radius >= 0 (0 skips the check), got {sanity_eps!r}"
        )
    sanity = float(sanity_eps) if sanity_eps else None
    certification = check_certify(model, certify, seed)
    if certification is not None and certification.norm == "l1":
        lo, hi = float(x_all.min()), float(x_all.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                "certify['norm']='l1' needs images in [0, 1] (they are Bernoulli "
                f"probabilities), got min {lo:.4g} and max {hi:.4g}"
            )
    protocols = ["paper", "adaptive"] if protocol == "both" else [protocol]

    adaptive: list[Any] = []
    check: str | None = None
    if "adaptive" in protocols:
        adaptive, check = _suite.adaptive_members(
            model, attacks, norm, square_queries, convergence_steps
        )
    elif attacks is not None:
        raise ValueError("attacks chooses adaptive members; protocol='paper' takes none")
    if any(m.mode is not None for m in adaptive) and not callable(getattr(model, "gradient", None)):
        modes = sorted({m.name for m in adaptive if m.mode is not None})
        raise TypeError(
            f"members {modes} need gradient modes, which need a SpikingClassifier; got "
            f"{type(model).__name__} (pass attacks without gradient modes)"
        )

    paper = _suite.paper_members(norm)
    settings = EvaluationSettings(
        protocol=protocol,
        protocols=tuple(protocols),
        eps=tuple(radii),
        norm=norm,
        seed=seed,
        batch_size=batch_size,
        stochastic=stochastic,
        eot=eot if stochastic else 1,
        prediction_samples=num_samples,
        sanity_eps=sanity,
        certify=certification,
        convergence=check,
        num_data=len(y_all),
        undeclared_randomness=undeclared,
        escalation=_sanity.escalation_settings(
            model, norm, escalation_steps, escalation_samples, adaptive
        ),
        attacks={
            "paper": tuple(_info(m) for m in paper) if "paper" in protocols else (),
            # the paper attacks last: they count for the samples no adaptive member broke
            "adaptive": tuple(_info(m) for m in adaptive)
            + tuple(_info(m, _suite.PAPER_PREFIX + m.name) for m in (paper if adaptive else [])),
        },
    )
    run = Run(model, settings, adaptive)
    path = Path(records) if records is not None else None
    rank, world_size = _distributed.world()
    done: dict[int, SampleRecord] = {}
    fingerprint: dict[str, Any] = {}
    if path is not None:
        fingerprint = {
            "model": _fingerprint.model_fingerprint(model),
            "data": _fingerprint.data_fingerprint(x_all, y_all),
        }
        _, done = _records.load(path, settings, fingerprint)
    mine = _distributed.chunks(len(y_all), batch_size, rank, world_size)
    todo = [c for c in mine if any(i not in done for i in c)]

    computed: list[SampleRecord] = []
    gen_state = run.generator.get_state() if run.generator is not None else None
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    stream = None
    if path is not None and todo:
        own = path if world_size == 1 else path.with_name(f"{path.name}.part-{rank}")
        stream = _records.open_for_append(own, settings, fingerprint)
    try:
        with (
            kept_modes(model, eval=True),
            torch.random.fork_rng(devices=[]),
            _progress(todo, progress and rank == 0) as bar,
        ):
            for c in todo:
                x = x_all[c.start : c.stop].to(device)
                y = y_all[c.start : c.stop].to(device)
                new = [r for r in Chunk(run, c.start, x, y).records() if r.index not in done]
                if stream is not None:
                    _records.append(stream, new)
                computed.extend(new)
                bar.update(len(c))
    finally:
        if stream is not None:
            stream.close()
        if gen_state is not None and run.generator is not None:
            run.generator.set_state(gen_state)

    merged: dict[int, SampleRecord] = {}
    for part in _distributed.all_gather([*done.values(), *computed]):
        for r in part:
            merged.setdefault(r.index, r)
    rows = [merged[i] for i in sorted(merged)]
    if len(rows) != len(y_all):
        missing = sorted(set(range(len(y_all))) - set(merged))[:10]
        raise RuntimeError(f"evaluation finished without the records of samples {missing}")
    if path is not None:
        if rank == 0:
            _records.write_atomic(path, settings, rows, fingerprint)
            if world_size > 1 or _records.part_paths(path):
                for part_path in _records.part_paths(path):
                    part_path.unlink(missing_ok=True)
        _distributed.barrier()
    return RobustnessReport(rows, settings)


def _info(member: Any, name: str | None = None) -> AttackInfo:
    """How the settings name ``member`` (as ``name`` if given)."""
    from robust_spikes.attacks import _suite

    info = AttackInfo.from_json(_suite.describe(member))
    return info if name is None else dataclasses.replace(info, name=name)


class _progress:
    """A tqdm bar over samples on stderr (or a do-nothing stand-in)."""

    def __init__(self, todo: list[range], enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm

            total = sum(len(c) for c in todo)
            self.bar = tqdm(
                total=total, desc="evaluate", unit="sample", file=sys.stderr, dynamic_ncols=True
            )

    def __enter__(self) -> _progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)
