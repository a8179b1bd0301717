"""One chunk of an evaluation: its clean judgement, attacks, checks and records.

A chunk is ``batch_size`` consecutive samples: the unit of work, of randomness (seeded from
``(seed, first index, step)``) and of writing (see :mod:`._evaluate`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robust_spikes._random import mixed_seed
from robust_spikes.evaluation import _certify, _sanity
from robust_spikes.evaluation._sample import AttackOutcome, Certificate, SampleRecord
from robust_spikes.evaluation._settings import CertifySettings, EvaluationSettings, certify_settings

__all__ = ["SANITY_STEPS", "Chunk", "Run", "with_paper"]

SANITY_STEPS = 20


class Chunk:
    """Everything computed for one chunk of samples (see the module docstring)."""

    def __init__(self, run: Run, start: int, x: torch.Tensor, y: torch.Tensor) -> None:
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

    def records(self) -> list[SampleRecord]:
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
        results: dict[str, dict[str, list[AttackOutcome]]] = {p: {} for p in run.protocols}
        for eps in run.eps:
            paper = self.attack("paper", eps) if eps > 0 or "paper" in run.protocols else None
            if paper is not None and "paper" in run.protocols:
                results["paper"][repr(eps)] = paper
            if "adaptive" in run.protocols:
                adaptive = self.attack("adaptive", eps)
                results["adaptive"][repr(eps)] = with_paper(adaptive, paper)
        sanity: list[bool | None] = [None] * len(y)
        if run.sanity_eps is not None:
            sanity = [b is None for b in self.ensemble(run.sanity, run.sanity_eps, 1, "sanity")[0]]
        if "adaptive" in results:
            results["adaptive"] = _sanity.with_escalation(results["adaptive"], self.escalated)
        certified = self.certified()
        return [
            SampleRecord(
                index=self.start + j,
                label=int(y[j]),
                prediction=int(pred[j]),
                correct=bool(pred[j] == y[j]),
                spikes=spikes[j],
                grad_norm=grads[j],
                sanity=sanity[j],
                results={p: {k: v[j] for k, v in results[p].items()} for p in results},
                certified=certified[j],
                other_readout=other[j],
            )
            for j in range(len(y))
        ]

    def certified(self) -> list[Certificate | None]:
        """Each sample's smoothing certificate (:func:`certify`), or ``None`` if not asked."""
        run, n = self.run, len(self.y)
        c = run.certify
        if c is None:
            return [None] * n
        counter = _certify.VoteCounter(run.model, run.certify_settings, None)
        samples = [(self.start + j, self.x[j], int(self.y[j])) for j in range(n)]
        certified = _certify.certify_samples(counter, samples, n0=c.n0, n=c.n, alpha=c.alpha)
        return [
            Certificate(prediction=r.prediction, radius=r.radius, p_lower=r.p_lower, count=r.count)
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
            escalate_samples=run.escalation_samples,
        )
        self.reseed("clean")  # the same clean judgement for every radius and attack
        x_adv = attack(self.x, self.y)
        if members is run.adaptive:
            self.escalated[eps] = list(attack.escalated)
        return list(attack.broken_by), x_adv

    def attack(self, protocol: str, eps: float) -> list[AttackOutcome]:
        run, n = self.run, len(self.y)
        if eps == 0.0:
            self.reseed("clean")
            clean = (self.correct(self.x, run.num_samples) == self.y).tolist()
            return [AttackOutcome(None if ok else "clean", (), 0.0) for ok in clean]
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
        return [AttackOutcome(broken[j], tuple(fooled[j]), float(norms[j])) for j in range(n)]


def with_paper(
    adaptive: list[AttackOutcome], paper: list[AttackOutcome] | None
) -> list[AttackOutcome]:
    """The adaptive outcomes, with each sample that only a paper attack broke counted as
    broken by it (named ``"paper:<attack>"``, with that attack's perturbation norm)."""
    if paper is None:
        return adaptive
    from robust_spikes.attacks import _suite

    out = []
    for a, p in zip(adaptive, paper, strict=True):
        if a.broken_by is None and p.broken_by is not None and p.broken_by != "clean":
            name = _suite.PAPER_PREFIX + p.broken_by
            a = dataclasses.replace(a, broken_by=name, fooled_by=(name,), norm=p.norm)
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


class Run:
    """The settings of one :func:`~robust_spikes.evaluate` call and the objects it needs."""

    def __init__(self, model: nn.Module, settings: EvaluationSettings, attacks: Any) -> None:
        from robust_spikes.attacks import _suite

        self.model = model
        self.settings = settings
        generator = getattr(model, "generator", None)
        self.generator = generator if isinstance(generator, torch.Generator) else None
        self.stochastic = settings.stochastic
        self.protocols = settings.protocols
        self.eps = settings.eps
        self.norm = settings.norm
        self.seed = settings.seed
        self.eot = settings.eot
        self.num_samples = settings.prediction_samples
        self.sanity_eps = settings.sanity_eps
        self.certify: CertifySettings | None = settings.certify
        if self.certify is not None:
            self.certify_settings = certify_settings(model, self.certify, self.seed)
        self.paper = _suite.paper_members(self.norm)
        self.adaptive: list[Any] = attacks
        escalation = settings.escalation
        self.escalation_steps: int | None = None if escalation is None else escalation.steps
        self.escalation_samples: int | None = None if escalation is None else escalation.samples
        sanity = f"PGD-{SANITY_STEPS}"
        self.sanity = [_suite.pgd_member(sanity, SANITY_STEPS, SANITY_STEPS, self.norm)]
