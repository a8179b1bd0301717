"""The adaptive ensemble: per-sample worst case over gradient modes and base attacks.

Özdenizci & Legenstein (TMLR 2024) evaluate spiking networks by the per-sample worst
case over many gradient variants per base attack plus a query attack on the true
forward pass; AutoAttack (Croce & Hein, ICML 2020) runs its members cheap-first and
passes on only the samples still classified correctly. This module combines the two
for :class:`~robust_spikes.SpikingClassifier` models.

When a transfer or query member breaks samples that every white-box member missed (a
sign of gradient masking or of white-box attacks that stopped short, Athalye et al.,
ICML 2018; Carlini et al. 2019), the ensemble escalates its white-box attack on those
samples only: longer PGD with restarts through more surrogates of the catalogue, and
records for each whether it fell, so a report can say which of the two it was.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torchattacks
from torch import nn
from torchattacks.attack import Attack

from robust_spikes._checks import check_positive_int
from robust_spikes._random import mixed_seed
from robust_spikes.attacks._eot import Expectation
from robust_spikes.attacks._square import Square
from robust_spikes.attacks._views import ImageView

__all__ = ["AdaptiveEnsemble", "Member", "default_members"]

Norm = Literal["Linf", "L2"]
ESCALATE_RESTARTS = 3  # random restarts of each escalation attack (default)
# Gap samples escalated per call (default): a seeded draw beyond this many. The escalation
# answers a share question (stopped short, or masked?), and on a compute-bound model its
# cost grows with the samples it attacks (MNIST conv SNN, 2 CPU cores: 45 s for 31).
ESCALATE_SAMPLES = 16


@dataclass(frozen=True)
class Member:
    """One ensemble member: a base attack run under one gradient mode.

    Attributes:
        name: shown in records, e.g. ``"PGD-20/triangle(1)"``.
        build: ``(model, eps, eot) -> torchattacks.Attack`` (``eot`` is the number of
            gradient samples per step: 1 for a deterministic model); the attack maps
            images ``x``: ``[N, C, H, W]`` in [0, 1] and labels ``y``: ``[N]`` to
            ``x_adv`` of the shape of ``x``, within ``eps`` (in the [0, 1] image scale).
        mode: gradient mode for :meth:`~robust_spikes.SpikingClassifier.gradient`, or
            ``None`` for the model as it is (query attacks, the host surrogate).
        surrogate: the surrogate of mode ``"bptt"``.

    Example:
        >>> import torchattacks
        >>> member = Member("FGSM", lambda model, eps, eot: torchattacks.FGSM(model, eps=eps))
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        >>> x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
        >>> x_adv = member.build(net, 8 / 255, 1)(x, y)
        >>> x_adv.shape, bool((x_adv - x).abs().max() <= 8 / 255 + 1e-6), member.mode
        (torch.Size([2, 1, 8, 8]), True, None)
    """

    name: str
    build: Callable[[nn.Module, float, int], Any]
    mode: str | None = None
    surrogate: Any = None


def _expected(model: nn.Module, eot: int) -> nn.Module:
    """The model itself, or for ``eot > 1`` its :class:`Expectation` over ``eot`` draws,
    all drawn in one batched call (EOT, Athalye et al. 2018)."""
    return Expectation(model, eot) if eot > 1 else model


def _fgsm(model: nn.Module, eps: float, eot: int) -> Any:
    return torchattacks.FGSM(_expected(model, eot), eps=eps)


def _pgd(
    steps: int, norm: Norm, alpha_steps: int | None = None
) -> Callable[[nn.Module, float, int], Any]:
    """PGD of ``steps`` steps of size ``2.5 * eps / alpha_steps`` (default ``alpha_steps =
    steps``), random start; on the EOT expectation of the model for ``eot > 1``."""

    def build(model: nn.Module, eps: float, eot: int) -> Any:
        alpha = 2.5 * eps / (alpha_steps or steps)
        target = _expected(model, eot)
        if norm == "L2":
            return torchattacks.PGDL2(target, eps=eps, alpha=alpha, steps=steps)
        return torchattacks.PGD(target, eps=eps, alpha=alpha, steps=steps, random_start=True)

    return build


def _apgd(loss: str, steps: int, norm: Norm) -> Callable[[nn.Module, float, int], Any]:
    def build(model: nn.Module, eps: float, eot: int) -> Any:
        return torchattacks.APGD(
            _expected(model, eot), norm=norm, eps=eps, steps=steps, loss=loss, seed=0
        )

    return build


def _square(queries: int, norm: Norm) -> Callable[[nn.Module, float, int], Any]:
    """Square with ``queries`` queries per sample: for Linf our per-sample search
    (``attacks._square``: on small inputs 8 proposals per forward pass and restarts of at
    most 1,250 queries side by side, which on trained digits SNNs broke more samples, and
    more reliably over seeds, than one search of 5,000), torchattacks' Square for L2."""

    def build(model: nn.Module, eps: float, eot: int) -> Any:
        if norm == "Linf":
            # seeded from the global RNG, which the ensemble seeds per member
            seed = int(torch.randint(0, 2**62, (1,)))
            return Square(model, eps=eps, n_queries=queries, seed=seed)
        return torchattacks.Square(model, norm=norm, eps=eps, n_queries=queries, seed=0)

    return build


def default_members(model: Any, *, norm: Norm = "Linf", square_queries: int = 5000) -> list[Member]:
    """The default members: white-box ones cheapest first, then transfer and query.

    FGSM and PGD-20 through the model's own surrogate; PGD-20 through four catalogue
    surrogates and the extra gradient modes ``pdsg``, ``bptr``, ``rga``; APGD-CE and
    APGD-DLR (scale invariant, so saturated logits do not mask it); then PGD-20 through
    the ANN twin (``ann``, a transfer attack) and Square on the true forward pass (no
    gradient at all, so encoders without a gradient do not mask it). Every white-box
    member comes before the transfer and query members, so a sample those break was
    missed by every white-box member.

    Args:
        model: the classifier the members will attack.
        norm: ``"Linf"`` or ``"L2"``; FGSM is a member for ``"Linf"`` only.
        square_queries: query budget of Square; 0 leaves Square out.

    Returns:
        A new list of :class:`Member`; each built attack maps ``x``: ``[N, C, H, W]`` in
        [0, 1] and ``y``: ``[N]`` to ``x_adv`` of the shape of ``x``.

    Example:
        >>> import snntorch as snn
        >>> from robust_spikes import SpikingClassifier
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10),
        ...                     snn.Leaky(beta=0.9, init_hidden=True, output=True))
        >>> model = SpikingClassifier(net, num_steps=4)
        >>> members = default_members(model)
        >>> len(members), members[0].name, members[2].name, members[2].mode
        (13, 'FGSM', 'PGD-20/triangle(1)', 'bptt')
        >>> x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
        >>> x_adv = members[0].build(model, 8 / 255, 1)(x, y)
        >>> x_adv.shape, bool((x_adv - x).abs().max() <= 8 / 255 + 1e-6)
        (torch.Size([2, 1, 8, 8]), True)
    """
    from robust_spikes.gradients import MODES, Exponential, Rectangular, StraightThrough, Triangle

    members = [Member("FGSM", _fgsm)] if norm == "Linf" else []
    members.append(Member("PGD-20", _pgd(20, norm)))
    for surrogate, label in (
        (Triangle(gamma=1.0), "triangle(1)"),
        (Rectangular(gamma=1.0), "rectangular(1)"),
        (Exponential(gamma=1.0), "exponential(1)"),
        (StraightThrough(), "straight-through"),
    ):
        members.append(Member(f"PGD-20/{label}", _pgd(20, norm), "bptt", surrogate))
    for mode in ("pdsg", "bptr", "rga"):
        if mode in MODES:
            members.append(Member(f"PGD-20/{mode}", _pgd(20, norm), mode))
    members.append(Member("APGD-CE", _apgd("ce", 20, norm)))
    members.append(Member("APGD-DLR", _apgd("dlr", 20, norm)))
    if "ann" in MODES:  # a transfer member: after every white-box one
        members.append(Member("PGD-20/ann", _pgd(20, norm), "ann"))
    if square_queries > 0:
        members.append(Member(f"Square-{square_queries}", _square(square_queries, norm)))
    return members


def member_kind(member: Member) -> str:
    """``"white-box"``, ``"transfer"`` (the ANN twin, Transfer) or ``"black-box"`` (queries)."""
    if member.mode == "ann" or member.name.startswith("Transfer"):
        return "transfer"
    if member.name.startswith("Square"):
        return "black-box"
    return "white-box"


def escalation_members(model: Any, norm: Norm, steps: int) -> list[Member]:
    """Depth, then breadth: PGD-``steps`` through the model's own gradient and, for a model
    with gradient modes, PGD-``steps // 4`` through five more catalogue surrogates (other
    widths than the default members'), a quarter of the steps each so that the breadth
    costs about what the depth does."""
    from robust_spikes.gradients import ExponentialD, Rectangular, Triangle

    members = [Member(f"PGD-{steps}", _pgd(steps, norm))]
    if callable(getattr(model, "gradient", None)):
        short = escalation_breadth_steps(steps)
        for surrogate, label in (
            (Triangle(gamma=0.5), "triangle(0.5)"),
            (Triangle(gamma=2.0), "triangle(2)"),
            (Rectangular(gamma=0.5), "rectangular(0.5)"),
            (Rectangular(gamma=2.0), "rectangular(2)"),
            (ExponentialD(gamma=1.0), "exponential-d(1)"),
        ):
            members.append(Member(f"PGD-{short}/{label}", _pgd(short, norm), "bptt", surrogate))
    return members


def escalation_breadth_steps(steps: int) -> int:
    """PGD steps of each extra surrogate of an escalation of ``steps`` steps."""
    return max(steps // 4, 1)


def predict_classes(
    model: nn.Module, x: torch.Tensor, samples: int, stochastic: bool
) -> torch.Tensor:
    """The model's class predictions: one pass, or a majority vote over ``samples`` passes
    (``model.predict`` where it has one) for a stochastic model."""
    with torch.no_grad():
        if not stochastic:
            return model(x).argmax(1)
        predict = getattr(model, "predict", None)
        if callable(predict):
            return predict(x, num_samples=samples)
        logits = model(x)
        votes = torch.nn.functional.one_hot(logits.argmax(1), logits.shape[1])
        probs = logits.softmax(1)
        for _ in range(samples - 1):
            logits = model(x)
            votes += torch.nn.functional.one_hot(logits.argmax(1), logits.shape[1])
            probs += logits.softmax(1)
        return (votes + 0.5 * probs / samples).argmax(1)  # probs < 1 only break ties


class AdaptiveEnsemble(Attack):
    """Per-sample worst case over gradient modes x base attacks, cheap attacks first.

    Each member runs only on the samples that every earlier member failed to break
    (``cascade=True``, AutoAttack's scheme), so the ensemble costs a small multiple of
    one PGD run on a non-robust model; with ``cascade=False`` every member sees every
    sample. Gradient members run inside ``model.gradient(mode, surrogate=...)``; success
    is always judged on the true model outside any gradient mode. When the model is
    stochastic (``model.is_stochastic``, or ``stochastic=True`` for a model that draws
    noise without declaring it), gradient members average ``eot`` gradient samples per
    step (EOT, Athalye et al. 2018; drawn in one batched call, see
    :class:`~robust_spikes.attacks.Expectation`) and success is judged by a majority vote
    over ``predict_samples`` forward passes. Square (Linf) is our batched implementation
    (``attacks._square``: per-sample windows, 8 proposals per forward pass, budgets over
    1,250 queries split into restarts run side by side), several times faster than
    torchattacks' and stronger per query on spiking networks.

    Escalation: when transfer or query members (the ANN twin, Square) break samples that
    the white-box members missed, PGD with ``escalate_steps`` steps through the model's
    own gradient, then with a quarter of the steps through five more catalogue
    surrogates, each with ``escalate_restarts`` random restarts (run side by side, as
    copies of the samples in one batch), attacks those samples only (at most
    ``escalate_samples`` of them, drawn at random with the seed), before the call
    returns. The returned examples and :attr:`broken_by` do not change (those samples
    are broken either way); :attr:`escalated` says, per sample, whether the escalated white-box
    attack broke it too (``True``: the default white-box members stopped short;
    ``False``: even the escalated gradient attack fails there, a sign of gradient
    masking; ``None``: not escalated, including gap samples beyond the draw).

    After a call, :attr:`broken_by` holds, per sample, the name of the member that
    broke it (``None``: robust, or misclassified before any attack: ``"clean"``), and
    :attr:`seconds` the wall time of each member that ran (``"escalation"`` included).

    Args:
        model: a :class:`~robust_spikes.SpikingClassifier`.
        eps: radius in the [0, 1] image scale.
        norm: ``"Linf"`` or ``"L2"``.
        members: default :func:`default_members`.
        eot: gradient samples per step for a stochastic model (default 10).
        predict_samples: forward passes per success decision for a stochastic model.
        cascade: attack only the samples still classified correctly.
        seed: with each member's name, seeds the member and the model's generator.
        square_queries: queries of the Square member in the default members.
        stochastic: treat the model as stochastic (EOT, votes); ``None`` (default) asks
            ``model.is_stochastic``.
        escalate_steps: PGD steps of the escalation, or ``None`` for no escalation.
        escalate_restarts: random restarts of each escalation attack.
        escalate_samples: at most this many of the samples only transfer or query members
            broke are escalated (a seeded draw), ``None`` for all of them.

    Shape:
        images ``[N, C, H, W]`` in [0, 1], labels ``[N]``; returns ``[N, C, H, W]``.

    Example:
        >>> import snntorch as snn
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10),
        ...                     snn.Leaky(beta=0.9, init_hidden=True, output=True))
        >>> from robust_spikes import SpikingClassifier
        >>> atk = AdaptiveEnsemble(SpikingClassifier(net, 4), eps=8 / 255, square_queries=10,
        ...                        escalate_steps=10)
        >>> x_adv = atk(torch.rand(4, 1, 8, 8), torch.arange(4))
        >>> len(atk.broken_by), len(atk.escalated)
        (4, 4)
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        norm: Norm = "Linf",
        *,
        members: Sequence[Member] | None = None,
        eot: int = 10,
        predict_samples: int = 10,
        cascade: bool = True,
        seed: int = 0,
        square_queries: int = 5000,
        stochastic: bool | None = None,
        escalate_steps: int | None = 200,
        escalate_restarts: int = ESCALATE_RESTARTS,
        escalate_samples: int | None = ESCALATE_SAMPLES,
    ) -> None:
        super().__init__("AdaptiveEnsemble", model)
        if norm not in ("Linf", "L2"):
            raise ValueError(f"norm must be 'Linf' or 'L2', got {norm!r}")
        if not (isinstance(eps, int | float) and eps > 0):
            raise ValueError(f"eps must be a positive number, got {eps!r}")
        if stochastic is not None and not isinstance(stochastic, bool):
            raise ValueError(f"stochastic must be True, False or None, got {stochastic!r}")
        self.eps, self.norm, self.cascade, self.seed = float(eps), norm, cascade, int(seed)
        self.eot = check_positive_int("eot", eot)
        self.predict_samples = check_positive_int("predict_samples", predict_samples)
        self.stochastic = stochastic
        if escalate_steps is not None:
            escalate_steps = check_positive_int("escalate_steps", escalate_steps)
        self.escalate_steps = escalate_steps
        self.escalate_restarts = check_positive_int("escalate_restarts", escalate_restarts)
        if escalate_samples is not None:
            escalate_samples = check_positive_int("escalate_samples", escalate_samples)
        self.escalate_samples = escalate_samples
        self.members = list(
            members
            if members is not None
            else default_members(model, norm=norm, square_queries=square_queries)
        )
        if not self.members:
            raise ValueError("members must hold at least one Member, got an empty sequence")
        self.broken_by: list[str | None] = []
        self.escalated: list[bool | None] = []
        self.seconds: dict[str, float] = {}

    @property
    def is_stochastic(self) -> bool:
        """Whether the attacked model is treated as stochastic (EOT and votes)."""
        if self.stochastic is not None:
            return self.stochastic
        return bool(getattr(self.model, "is_stochastic", False))

    def _correct(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return predict_classes(self.model, x, self.predict_samples, self.is_stochastic) == y

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Run the members; the model's generator state is restored afterwards."""
        generator = getattr(self.model, "generator", None)
        state = generator.get_state() if isinstance(generator, torch.Generator) else None
        try:
            return self._cascade(images, labels)
        finally:
            if state is not None:
                generator.set_state(state)  # type: ignore[union-attr]

    def _cascade(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        eot = self.eot if self.is_stochastic else 1
        x, y = images.clone().detach(), labels.clone().detach()
        x_adv = x.clone()
        self.seconds = {}
        alive = self._correct(x, y)
        broken: list[str | None] = [None if ok else "clean" for ok in alive.tolist()]
        for member in self.members:
            idx = alive.nonzero().flatten() if self.cascade else torch.arange(len(y))
            if idx.numel() == 0:
                break
            start = time.perf_counter()
            candidate = self._run(member, x[idx], y[idx], eot)
            self.seconds[member.name] = time.perf_counter() - start
            with torch.random.fork_rng(devices=[]):
                fooled = ~self._correct(candidate, y[idx])
            for j, i in enumerate(idx.tolist()):
                if fooled[j] and broken[i] is None:
                    broken[i] = member.name
                    x_adv[i] = candidate[j]
            alive = torch.tensor([b is None for b in broken], device=alive.device)
        self.broken_by = broken
        self.escalated = self._escalate(x, y, broken, eot)
        return x_adv

    def _escalate(
        self, x: torch.Tensor, y: torch.Tensor, broken: list[str | None], eot: int
    ) -> list[bool | None]:
        """Escalated white-box attacks on the samples only transfer/query members broke."""
        out: list[bool | None] = [None] * len(broken)
        kinds = {m.name: member_kind(m) for m in self.members}
        if self.escalate_steps is None or "white-box" not in kinds.values():
            return out
        outside = ("transfer", "black-box")
        gap = [i for i, b in enumerate(broken) if b is not None and kinds.get(b) in outside]
        if not gap:
            return out
        start = time.perf_counter()
        gap = self._escalation_draw(gap)
        alive = torch.tensor(gap, device=y.device)
        copies = self.escalate_restarts  # restarts run side by side, as copies in one batch
        for member in escalation_members(self.model, self.norm, self.escalate_steps):
            if alive.numel() == 0:
                break
            x_rep = x[alive].repeat(copies, *([1] * (x.dim() - 1)))
            candidate = self._run(member, x_rep, y[alive].repeat(copies), eot, "#restarts")
            with torch.random.fork_rng(devices=[]):
                fooled = ~self._correct(candidate, y[alive].repeat(copies))
            fooled = fooled.view(copies, -1).any(0)
            for j, i in enumerate(alive.tolist()):
                if fooled[j]:
                    out[i] = True
            alive = alive[~fooled]
        for i in gap:
            if out[i] is None:
                out[i] = False
        self.seconds["escalation"] = time.perf_counter() - start
        return out

    def _escalation_draw(self, gap: list[int]) -> list[int]:
        """At most ``escalate_samples`` of the ``gap`` indices, a draw seeded by the
        ensemble's seed, in increasing order."""
        cap = self.escalate_samples
        if cap is None or len(gap) <= cap:
            return gap
        generator = torch.Generator().manual_seed(mixed_seed("ensemble", self.seed, "escalate"))
        keep = torch.randperm(len(gap), generator=generator)[:cap].sort().values
        return [gap[i] for i in keep.tolist()]

    def _run(
        self, member: Member, x: torch.Tensor, y: torch.Tensor, eot: int, salt: str = ""
    ) -> torch.Tensor:
        """One member on ``x``; seeded by (seed, member name), so a member gives the same
        result inside the ensemble as alone (with ``cascade=False``)."""
        model: Any = self.model
        target, images = model, x
        if x.dim() != 4:  # APGD and Square take images: members see [N, 1, 1, D] views
            target, images = ImageView(model, tuple(x.shape[1:])), x.reshape(len(x), 1, 1, -1)
        seed = mixed_seed("ensemble", self.seed, member.name + salt)
        with torch.random.fork_rng(devices=[]), contextlib.ExitStack() as stack:
            torch.manual_seed(seed)
            generator = getattr(model, "generator", None)
            if isinstance(generator, torch.Generator):
                generator.manual_seed(seed)
            attack = member.build(target, self.eps, eot)
            if member.mode is not None:
                stack.enter_context(model.gradient(member.mode, surrogate=member.surrogate))
            return attack(images, y).detach().reshape(x.shape)
