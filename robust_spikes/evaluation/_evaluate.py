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

import math
import numbers
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from robust_spikes import _data
from robust_spikes._checks import check_positive_int
from robust_spikes._random import mixed_seed
from robust_spikes.evaluation import _certify, _distributed, _fingerprint, _records, _sanity
from robust_spikes.evaluation._report import RobustnessReport

__all__ = ["PROTOCOLS", "evaluate"]

Protocol = Literal["adaptive", "paper", "both"]
PROTOCOLS = ("adaptive", "paper", "both")
_NORMS = ("Linf", "L2")
_PAPER_STEPS = 7
_PAPER_STEP_SIZE = 0.01
_SANITY_STEPS = 20
_CERTIFY_KEYS = ("sigma", "n0", "n", "alpha", "norm", "batch_size", "radii")
_CERTIFY_RADII = {"l2": [0.0, 0.25, 0.5, 0.75, 1.0], "l1": [0.0, 0.1, 0.2, 0.3, 0.4]}


# ------------------------------------------------------------------------------- members
def _member_kind(member: Any) -> str:
    """``"white-box"``, ``"transfer"`` (the ANN twin, Transfer) or ``"black-box"`` (queries)."""
    from robust_spikes.attacks._ensemble import member_kind

    return member_kind(member)


def _pgd_member(name: str, steps: int, alpha_steps: int, norm: str, mode: str | None = None) -> Any:
    """A PGD member with ``steps`` steps of size ``2.5 * eps / alpha_steps`` (EOT aware)."""
    import torchattacks

    from robust_spikes.attacks import Member

    def build(model: nn.Module, eps: float, eot: int) -> Any:
        alpha = 2.5 * eps / alpha_steps
        if norm == "L2":
            return torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps)
        if eot > 1:
            return torchattacks.EOTPGD(model, eps=eps, alpha=alpha, steps=steps, eot_iter=eot)
        return torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)

    return Member(name, build, mode)


def _paper_members(norm: str) -> list[Any]:
    """The literature's protocol: FGSM and PGD-7 (step 0.01, random start), own surrogate."""
    import torchattacks

    from robust_spikes.attacks import Member

    def pgd(model: nn.Module, eps: float, eot: int) -> Any:
        if norm == "L2":
            return torchattacks.PGDL2(model, eps=eps, alpha=eps / 4, steps=_PAPER_STEPS)
        return torchattacks.PGD(
            model, eps=eps, alpha=_PAPER_STEP_SIZE, steps=_PAPER_STEPS, random_start=True
        )

    def fgsm(model: nn.Module, eps: float, eot: int) -> Any:
        return torchattacks.FGSM(model, eps=eps)

    members = [Member("FGSM", fgsm)] if norm == "Linf" else []
    return [*members, Member(f"PGD-{_PAPER_STEPS}", pgd)]


def _adaptive_members(
    model: nn.Module, attacks: Any, norm: str, square_queries: int, convergence_steps: int | None
) -> tuple[list[Any], str | None]:
    """White-box members first (in the given order), the convergence check, then transfer
    and black-box members; and the convergence member's name."""
    from robust_spikes.attacks import Member, default_members

    every = default_members(model, norm=norm, square_queries=square_queries)  # type: ignore[arg-type]
    if attacks is None:
        chosen = every
    else:
        if isinstance(attacks, str | Member) or not isinstance(attacks, Sequence):
            raise TypeError(
                "attacks must be a sequence of robust_spikes.attacks.Member or member names, "
                f"got {attacks!r}"
            )
        by_name = {m.name: m for m in every}
        chosen = []
        for item in attacks:
            if isinstance(item, Member):
                chosen.append(item)
            elif isinstance(item, str) and item in by_name:
                chosen.append(by_name[item])
            elif isinstance(item, str) and (queries := _square_queries(item)) is not None:
                square = default_members(model, norm=norm, square_queries=queries)  # type: ignore[arg-type]
                chosen += [m for m in square if m.name == item]
            else:
                raise ValueError(
                    f"attacks: unknown member {item!r}; give a Member, one of "
                    f"{sorted(by_name)} or Square-N (N queries, N >= 1)"
                )
        if not chosen:
            raise ValueError("attacks must hold at least one member, got an empty sequence")
    names = [m.name for m in chosen]
    if len(set(names)) != len(names):
        raise ValueError(f"attacks: member names must be unique, got {names}")
    white = [m for m in chosen if _member_kind(m) == "white-box"]
    rest = [m for m in chosen if _member_kind(m) == "transfer"]
    rest += [m for m in chosen if _member_kind(m) == "black-box"]
    check = None
    if convergence_steps is not None:
        check = f"PGD-{convergence_steps}"
        if check in names:
            check += "/convergence"
        white.append(_pgd_member(check, convergence_steps, 20, norm))
    return white + rest, check


def _square_queries(name: str) -> int | None:
    """``N`` of a member name ``Square-N`` (N a positive int written plainly), else None."""
    prefix, _, count = name.partition("-")
    if prefix != "Square" or not count.isdigit() or count != str(int(count)) or int(count) < 1:
        return None
    return int(count)


# ------------------------------------------------------------------------------ checks
def _check_eps(eps: Any, norm: str) -> list[float]:
    values = [eps] if isinstance(eps, numbers.Real) and not isinstance(eps, bool) else eps
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
        raise ValueError(f"eps must be a number or a non-empty sequence of numbers, got {eps!r}")
    out = []
    for e in values:
        ok = isinstance(e, numbers.Real) and not isinstance(e, bool) and math.isfinite(float(e))
        high = 1.0 if norm == "Linf" else math.inf
        if not (ok and 0.0 <= float(e) <= high):
            scale = "in [0, 1] (the image scale)" if norm == "Linf" else ">= 0"
            raise ValueError(f"eps must hold finite numbers {scale}, got {e!r} in {eps!r}")
        out.append(float(e))
    if len(set(out)) != len(out):
        raise ValueError(f"eps must not repeat a radius, got {eps!r}")
    return out


def _steps_or_none(name: str, steps: Any) -> int | None:
    """A step count of an optional check: 0 or None skip it (as the CLI's 0 does)."""
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"{name} must be an int >= 0 (0 or None skips it), got {steps!r}")
    return steps or None


def _as_data(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of ``data`` in any form of the one data contract (``_data``)."""
    x, y = _data.tensors(data, "data")
    return x.float(), y


def _check_certify(model: nn.Module, certify: Any, seed: int) -> dict[str, Any] | None:
    """The certification settings with defaults filled in, or ``None``."""
    if certify is None:
        return None
    if not isinstance(certify, Mapping):
        raise ValueError(
            f"certify must be a dict of certification settings or None, got {certify!r}"
        )
    unknown = sorted(set(certify) - set(_CERTIFY_KEYS))
    if unknown:
        raise ValueError(f"certify takes the keys {_CERTIFY_KEYS}, got unknown keys {unknown}")
    norm = certify.get("norm", "l2")
    out: dict[str, Any] = {
        "sigma": certify.get("sigma"),
        "n0": certify.get("n0", 100),
        "n": certify.get("n", 1000),
        "alpha": certify.get("alpha", 0.001),
        "norm": norm,
        "batch_size": certify.get("batch_size", 1000),
    }
    try:
        _certify_settings(model, out, seed)
    except ValueError as err:
        raise ValueError(f"certify: {err}") from None
    out["alpha"] = float(out["alpha"])
    out["sigma"] = None if out["sigma"] is None else float(out["sigma"])
    radii = certify.get("radii", _CERTIFY_RADII.get(norm))
    try:
        values = [float(r) for r in radii]
    except (TypeError, ValueError):
        values = []
    bad = any(isinstance(r, bool) for r in radii) if isinstance(radii, Sequence) else True
    if bad or not values or not all(0.0 <= r < math.inf for r in values):
        raise ValueError(
            f"certify['radii'] must be a non-empty sequence of radii >= 0, got {radii!r}"
        )
    out["radii"] = sorted(set(values))
    return out


def _certify_settings(model: nn.Module, c: Mapping[str, Any], seed: int) -> _certify._Settings:
    """:func:`certify`'s validated settings for the dict ``c`` of :func:`_check_certify`."""
    return _certify.check_settings(
        model, c["sigma"], c["n0"], c["n"], c["alpha"], c["batch_size"], c["norm"], None, seed
    )


# ---------------------------------------------------------------------------- one chunk
class _Chunk:
    """Everything computed for one chunk of samples (see the module docstring)."""

    def __init__(self, run: _Run, start: int, x: torch.Tensor, y: torch.Tensor) -> None:
        self.run, self.start, self.x, self.y = run, start, x, y
        self.escalated: dict[float, list[bool | None]] = {}  # adaptive eps -> per sample

    def seed(self, tag: str) -> int:
        return mixed_seed("evaluate", self.run.seed, self.start, tag)

    def reseed(self, tag: str) -> None:
        """Seed the global RNG and the model's generator for step ``tag``."""
        s = self.seed(tag)
        torch.manual_seed(s)
        generator = self.run.generator
        if generator is not None:
            generator.manual_seed(s)

    def correct(self, x: torch.Tensor, samples: int) -> torch.Tensor:
        """What AdaptiveEnsemble judges: a vote over ``samples`` passes if stochastic."""
        from robust_spikes.attacks._ensemble import predict_classes

        return predict_classes(self.run.model, x, samples, self.run.stochastic)

    def records(self) -> list[dict[str, Any]]:
        run, x, y = self.run, self.x, self.y
        self.reseed("clean")
        pred = self.correct(x, run.num_samples)
        self.reseed("spikes")
        spikes = _spike_counts(run.model, x)
        self.reseed("gradient")
        grads = _gradient_norms(run.model, x, y)
        self.reseed("clean")
        other = _sanity.other_readout(run.model, x, lambda: self.correct(x, run.num_samples))
        # One accuracy definition for both protocols: a stochastic model's prediction is
        # the vote over ``num_samples`` passes, clean and under every attack.
        results: dict[str, dict[str, Any]] = {p: {} for p in run.protocols}
        for eps in run.eps:
            paper = self.attack("paper", eps) if eps > 0 or "paper" in run.protocols else None
            if "paper" in run.protocols:
                results["paper"][repr(eps)] = paper
            if "adaptive" in run.protocols:
                adaptive = self.attack("adaptive", eps)
                results["adaptive"][repr(eps)] = _with_paper(adaptive, paper)
        sanity: list[bool | None] = [None] * len(y)
        if run.sanity_eps is not None:
            sanity = [b is None for b in self.ensemble(run.sanity, run.sanity_eps, 1, "sanity")[0]]
        certified = self.certified()
        out = []
        for j in range(len(y)):
            out.append(
                {
                    "index": self.start + j,
                    "label": int(y[j]),
                    "prediction": int(pred[j]),
                    "correct": bool(pred[j] == y[j]),
                    "spikes": spikes[j],
                    "grad_norm": grads[j],
                    "sanity": sanity[j],
                    "results": {p: {k: v[j] for k, v in results[p].items()} for p in results},
                    "certified": certified[j],
                    "other_readout": other[j],
                }
            )
        _sanity.add_escalation(out, self.escalated)
        return out

    def certified(self) -> list[dict[str, Any] | None]:
        """Each sample's smoothing certificate (:func:`certify`), or ``None`` if not asked."""
        run, n = self.run, len(self.y)
        c = run.certify
        if c is None:
            return [None] * n
        counter = _certify.VoteCounter(run.model, run.certify_settings, None)
        samples = [(self.start + j, self.x[j], int(self.y[j])) for j in range(n)]
        certified = _certify.certify_samples(
            counter, samples, n0=c["n0"], n=c["n"], alpha=c["alpha"]
        )
        return [
            {"prediction": r.prediction, "radius": r.radius, "p_lower": r.p_lower, "count": r.count}
            for r in certified
        ]

    def ensemble(
        self, members: list[Any], eps: float, eot: int, tag: str, samples: int | None = None
    ) -> tuple[list[str | None], torch.Tensor]:
        from robust_spikes.attacks import AdaptiveEnsemble

        run = self.run
        attack = AdaptiveEnsemble(
            run.model,
            eps,
            run.norm,  # type: ignore[arg-type]
            members=members,
            eot=eot if run.stochastic else 1,
            predict_samples=samples or run.num_samples,
            cascade=True,
            seed=self.seed(tag),
            stochastic=run.stochastic,
            escalate_steps=run.escalation_steps if members is run.adaptive else None,
        )
        self.reseed("clean")  # the same clean judgement for every radius and attack
        x_adv = attack(self.x, self.y)
        if members is run.adaptive:
            self.escalated[eps] = list(attack.escalated)
        return list(attack.broken_by), x_adv

    def attack(self, protocol: str, eps: float) -> list[dict[str, Any]]:
        run, n = self.run, len(self.y)
        if eps == 0.0:
            self.reseed("clean")
            clean = (self.correct(self.x, run.num_samples) == self.y).tolist()
            return [
                {"broken_by": None if ok else "clean", "fooled_by": [], "norm": 0.0} for ok in clean
            ]
        tag = f"{protocol}:{eps!r}"
        if protocol == "adaptive":
            broken, x_adv = self.ensemble(run.adaptive, eps, run.eot, tag)
            fooled = [[b] if b not in (None, "clean") else [] for b in broken]
        else:  # every paper attack sees every sample: per-attack outcomes
            fooled = [[] for _ in range(n)]
            broken = [None] * n
            x_adv = self.x.clone()
            for member in run.paper:  # one gradient sample per step, as the papers do
                by, adv = self.ensemble([member], eps, 1, tag)
                for j, b in enumerate(by):
                    if b == "clean":
                        broken[j] = "clean"
                    elif b is not None:
                        fooled[j].append(b)
                        if broken[j] is None:
                            broken[j], x_adv[j] = b, adv[j]
        delta = (x_adv - self.x).flatten(1)
        norms = delta.abs().amax(1) if run.norm == "Linf" else delta.norm(dim=1)
        return [
            {"broken_by": broken[j], "fooled_by": fooled[j], "norm": float(norms[j])}
            for j in range(n)
        ]


# The paper protocol's attacks as they appear among the adaptive members: the adaptive
# worst case contains them, so it is never above the paper protocol's.
PAPER_PREFIX = "paper:"


def _with_paper(
    adaptive: list[dict[str, Any]], paper: list[dict[str, Any]] | None
) -> list[dict[str, Any]]:
    """The adaptive outcomes, with each sample that only a paper attack broke counted as
    broken by it (named ``"paper:<attack>"``, with that attack's perturbation norm)."""
    if paper is None:
        return adaptive
    out = []
    for a, p in zip(adaptive, paper, strict=True):
        if a["broken_by"] is None and p["broken_by"] not in (None, "clean"):
            name = PAPER_PREFIX + p["broken_by"]
            a = {**a, "broken_by": name, "fooled_by": [name], "norm": p["norm"]}
        out.append(a)
    return out


def _spike_counts(model: nn.Module, x: torch.Tensor) -> list[float | None]:
    """Spikes per sample (all neurons, all steps) in one clean forward pass."""
    host = getattr(model, "_host", None)
    net = getattr(model, "net", None)
    if host is None or net is None:
        return [None] * len(x)
    neurons = host.neurons(net)
    n = len(x)
    total = torch.zeros(n, dtype=torch.float64)
    seen = [False]

    def hook(module: nn.Module, args: Any, out: Any) -> None:
        spikes = out[0] if isinstance(out, tuple) else out
        if not isinstance(spikes, torch.Tensor) or spikes.dim() == 0:
            return
        spikes = spikes.detach().to(torch.float64).cpu()
        if spikes.shape[0] == n:
            total.add_(spikes.reshape(n, -1).sum(1))
        elif spikes.dim() >= 2 and spikes.shape[1] == n:  # [T, N, ...]
            total.add_(spikes.sum(0).reshape(n, -1).sum(1))
        else:
            return
        seen[0] = True

    handles = [m.register_forward_hook(hook) for m in neurons]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    if not seen[0]:
        return [None] * n
    return [float(v) for v in total]


def _gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float | None]:
    """Per-sample L1 norm of the input gradient of the summed cross-entropy (None: non-finite)."""
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
    if grad is None:
        return [0.0] * len(x)
    grad = grad.detach().flatten(1)
    finite = torch.isfinite(grad).all(1)
    norms = grad.abs().sum(1, dtype=torch.float64)
    return [float(v) if ok else None for v, ok in zip(norms, finite.tolist(), strict=True)]


# ---------------------------------------------------------------------------- the run
class _Run:
    """The validated settings of one :func:`evaluate` call and the objects it needs."""

    def __init__(self, model: nn.Module, settings: dict[str, Any], attacks: Any) -> None:
        self.model = model
        self.settings = settings
        generator = getattr(model, "generator", None)
        self.generator = generator if isinstance(generator, torch.Generator) else None
        self.stochastic = settings["stochastic"]
        self.protocols: list[str] = settings["protocols"]
        self.eps: list[float] = settings["eps"]
        self.norm: str = settings["norm"]
        self.seed: int = settings["seed"]
        self.eot: int = settings["eot"]
        self.num_samples: int = settings["prediction_samples"]
        self.sanity_eps: float | None = settings["sanity_eps"]
        self.certify: dict[str, Any] | None = settings["certify"]
        if self.certify is not None:
            self.certify_settings = _certify_settings(model, self.certify, self.seed)
        self.paper = _paper_members(self.norm)
        self.adaptive: list[Any] = attacks
        escalation = settings.get("escalation")
        self.escalation_steps: int | None = None if escalation is None else escalation["steps"]
        self.sanity = [_pgd_member(f"PGD-{_SANITY_STEPS}", _SANITY_STEPS, _SANITY_STEPS, self.norm)]


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
        escalation_steps: steps of the escalated PGD (3 restarts, the model's own
            gradient and five more surrogates) that the adaptive ensemble runs on the
            samples only transfer or query members broke; ``0`` or ``None`` skips it (see
            :class:`~robust_spikes.attacks.AdaptiveEnsemble`). Its outcome is recorded
            per sample (``"escalated"``) and stated by the ``black-box-beats-white-box``
            flag.

    Returns:
        A :class:`~robust_spikes.evaluation.RobustnessReport`.

    Shape:
        images ``[N, C, H, W]`` (or ``[N, F]``), labels ``[N]``.

    Raises:
        ValueError: bad ``eps``, ``norm``, ``protocol``, ``attacks``, ``num_samples``,
            ``seed``, ``batch_size``, ``eot``, ``square_queries``, ``convergence_steps``,
            ``sanity_eps``, ``certify`` or ``data``; a records file written for another
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
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    radii = _check_eps(eps, norm)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**62:
        raise ValueError(f"seed must be an int in [0, 2**62), got {seed!r}")
    batch_size = check_positive_int("batch_size", batch_size)
    eot = check_positive_int("eot", eot)
    square_queries = check_positive_int("square_queries", square_queries)
    convergence_steps = _steps_or_none("convergence_steps", convergence_steps)
    escalation_steps = _steps_or_none("escalation_steps", escalation_steps)
    x_all, y_all = _as_data(data)
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
    certification = _check_certify(model, certify, seed)
    if certification is not None and certification["norm"] == "l1":
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
        adaptive, check = _adaptive_members(model, attacks, norm, square_queries, convergence_steps)
    elif attacks is not None:
        raise ValueError("attacks chooses adaptive members; protocol='paper' takes none")
    if any(m.mode is not None for m in adaptive) and not callable(getattr(model, "gradient", None)):
        modes = sorted({m.name for m in adaptive if m.mode is not None})
        raise TypeError(
            f"members {modes} need gradient modes, which need a SpikingClassifier; got "
            f"{type(model).__name__} (pass attacks without gradient modes)"
        )

    settings: dict[str, Any] = {
        "protocol": protocol,
        "protocols": protocols,
        "eps": radii,
        "norm": norm,
        "seed": seed,
        "batch_size": batch_size,
        "stochastic": stochastic,
        "eot": eot if stochastic else 1,
        "prediction_samples": num_samples,
        "sanity_eps": sanity,
        "certify": certification,
        "convergence": check,
        "num_data": len(y_all),
        "undeclared_randomness": undeclared,
        "escalation": _sanity.escalation_settings(model, norm, escalation_steps, adaptive),
        "attacks": {
            "paper": [_describe(m) for m in _paper_members(norm)] if "paper" in protocols else [],
            # the paper attacks last: they count for the samples no adaptive member broke
            "adaptive": [_describe(m) for m in adaptive]
            + [
                {**_describe(m), "name": PAPER_PREFIX + m.name}
                for m in (_paper_members(norm) if adaptive else [])
            ],
        },
    }
    run = _Run(model, settings, adaptive)
    path = Path(records) if records is not None else None
    rank, world_size = _distributed.world()
    done: dict[int, dict[str, Any]] = {}
    fingerprint: dict[str, Any] = {}
    if path is not None:
        fingerprint = {
            "model": _fingerprint.model_fingerprint(model),
            "data": _fingerprint.data_fingerprint(x_all, y_all),
        }
        _, done = _records.load(path, settings, fingerprint)
    mine = _distributed.chunks(len(y_all), batch_size, rank, world_size)
    todo = [c for c in mine if any(i not in done for i in c)]

    computed: list[dict[str, Any]] = []
    training_modes = {m: m.training for m in model.modules()}
    gen_state = run.generator.get_state() if run.generator is not None else None
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    stream = None
    if path is not None and todo:
        own = path if world_size == 1 else path.with_name(f"{path.name}.part-{rank}")
        stream = _records.open_for_append(own, settings, fingerprint)
    try:
        model.eval()
        with torch.random.fork_rng(devices=[]), _progress(todo, progress and rank == 0) as bar:
            for c in todo:
                x = x_all[c.start : c.stop].to(device)
                y = y_all[c.start : c.stop].to(device)
                new = [r for r in _Chunk(run, c.start, x, y).records() if r["index"] not in done]
                if stream is not None:
                    _records.append(stream, new)
                computed.extend(new)
                bar.update(len(c))
    finally:
        if stream is not None:
            stream.close()
        for m, training in training_modes.items():
            m.training = training
        if gen_state is not None and run.generator is not None:
            run.generator.set_state(gen_state)

    merged: dict[int, dict[str, Any]] = {}
    for part in _distributed.all_gather([*done.values(), *computed]):
        for r in part:
            merged.setdefault(r["index"], r)
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


def _describe(member: Any) -> dict[str, Any]:
    return {"name": member.name, "kind": _member_kind(member), "mode": member.mode}


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
