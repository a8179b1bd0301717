"""The validated settings of :func:`robust_spikes.evaluate`: radii, step counts, data and
certification, each refused with a message that names it, and :class:`EvaluationSettings`,
the one type that holds them (the records file's header, read by the report and the flags).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robust_spikes import _data
from robust_spikes.evaluation import _certify
from robust_spikes.evaluation._sample import required

__all__ = [
    "CERTIFY_KEYS",
    "CERTIFY_RADII",
    "NORMS",
    "AttackInfo",
    "CertifySettings",
    "Escalation",
    "EvaluationSettings",
    "RandomnessProbe",
    "as_data",
    "certify_settings",
    "check_certify",
    "check_eps",
    "steps_or_none",
]

NORMS = ("Linf", "L2")
CERTIFY_KEYS = ("sigma", "n0", "n", "alpha", "norm", "batch_size", "radii")
CERTIFY_RADII = {"l2": [0.0, 0.25, 0.5, 0.75, 1.0], "l1": [0.0, 0.1, 0.2, 0.3, 0.4]}


def check_eps(eps: Any, norm: str) -> list[float]:
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


def steps_or_none(name: str, steps: Any, zero: str = "skips it") -> int | None:
    """An optional count (steps of a check, a cap on samples): 0 or None give ``None``
    (as the CLI's 0 does); ``zero`` says what that means in the error message."""
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"{name} must be an int >= 0 (0 or None {zero}), got {steps!r}")
    return steps or None


def as_data(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of ``data`` in any form of the one data contract (``_data``)."""
    x, y = _data.tensors(data, "data")
    return x.float(), y


def check_certify(model: nn.Module, certify: Any, seed: int) -> CertifySettings | None:
    """The certification settings with defaults filled in, or ``None``."""
    if certify is None:
        return None
    if not isinstance(certify, Mapping):
        raise ValueError(
            f"certify must be a dict of certification settings or None, got {certify!r}"
        )
    unknown = sorted(set(certify) - set(CERTIFY_KEYS))
    if unknown:
        raise ValueError(f"certify takes the keys {CERTIFY_KEYS}, got unknown keys {unknown}")
    norm = certify.get("norm", "l2")
    sigma, alpha = certify.get("sigma"), certify.get("alpha", 0.001)
    n0, n = certify.get("n0", 100), certify.get("n", 1000)
    batch_size = certify.get("batch_size", 1000)
    try:
        _certify.check_settings(model, sigma, n0, n, alpha, batch_size, norm, None, seed)
    except ValueError as err:
        raise ValueError(f"certify: {err}") from None
    radii = certify.get("radii", CERTIFY_RADII.get(norm))
    try:
        values = [float(r) for r in radii]
    except (TypeError, ValueError):
        values = []
    bad = any(isinstance(r, bool) for r in radii) if isinstance(radii, Sequence) else True
    if bad or not values or not all(0.0 <= r < math.inf for r in values):
        raise ValueError(
            f"certify['radii'] must be a non-empty sequence of radii >= 0, got {radii!r}"
        )
    return CertifySettings(
        sigma=None if sigma is None else float(sigma),
        n0=n0,
        n=n,
        alpha=float(alpha),
        norm=norm,
        batch_size=batch_size,
        radii=tuple(sorted(set(values))),
    )


def certify_settings(model: nn.Module, c: CertifySettings, seed: int) -> _certify._Settings:
    """:func:`certify`'s validated settings for the certification ``c`` of an evaluation."""
    return _certify.check_settings(
        model, c.sigma, c.n0, c.n, c.alpha, c.batch_size, c.norm, None, seed
    )


@dataclass(frozen=True)
class CertifySettings:
    """The certification of every sample (:func:`certify`'s settings, defaults filled in).

    Attributes:
        sigma: Gaussian noise level (``None`` for ``norm="l1"``).
        n0: noisy samples that select the top class.
        n: noisy samples that bound its probability.
        alpha: failure probability of each certificate.
        norm: ``"l2"`` (Gaussian) or ``"l1"`` (Bernoulli rate coding).
        batch_size: noisy copies per model call.
        radii: sorted radii the report states certified accuracy at (they only shape the
            report: a resume with other radii reuses the records).
    """

    sigma: float | None
    n0: int
    n: int
    alpha: float
    norm: str
    batch_size: int
    radii: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma,
            "n0": self.n0,
            "n": self.n,
            "alpha": self.alpha,
            "norm": self.norm,
            "batch_size": self.batch_size,
            "radii": list(self.radii),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> CertifySettings:
        what = "the certify settings"
        return cls(
            sigma=required(obj, "sigma", what),
            n0=required(obj, "n0", what),
            n=required(obj, "n", what),
            alpha=required(obj, "alpha", what),
            norm=required(obj, "norm", what),
            batch_size=required(obj, "batch_size", what),
            radii=tuple(required(obj, "radii", what)),
        )


@dataclass(frozen=True)
class Escalation:
    """The escalated white-box attack of the adaptive ensemble: PGD with ``steps`` steps and
    ``restarts`` random restarts through the model's gradient and ``surrogates - 1`` more,
    on at most ``samples`` of each batch's samples only transfer or query members broke
    (a seeded draw; ``None``: all of them)."""

    steps: int
    restarts: int
    surrogates: int
    samples: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"steps": self.steps, "restarts": self.restarts, "surrogates": self.surrogates}
        if self.samples is not None:  # no cap: written as before the cap existed
            out["samples"] = self.samples
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Escalation:
        """``samples`` is missing where there was no cap (all headers before it)."""
        what = "the escalation settings"
        steps, restarts, surrogates = (
            required(obj, k, what) for k in ("steps", "restarts", "surrogates")
        )
        return cls(steps, restarts, surrogates, obj.get("samples"))


@dataclass(frozen=True)
class RandomnessProbe:
    """Undeclared randomness: two calls on the same ``samples`` samples differed on
    ``differed`` of them although the model's ``is_stochastic`` is false."""

    samples: int
    differed: int

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "differed": self.differed}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> RandomnessProbe:
        what = "the randomness probe"
        return cls(required(obj, "samples", what), required(obj, "differed", what))


@dataclass(frozen=True)
class AttackInfo:
    """One attack of a protocol, in the order the protocol runs them.

    Attributes:
        name: its name in the report (``"paper:"`` prefix for the paper attacks that count
            in the adaptive worst case).
        kind: ``"white-box"``, ``"transfer"`` or ``"black-box"``.
        mode: the gradient mode or surrogate it attacks through, ``None`` for the model's own.
    """

    name: str
    kind: str
    mode: str | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "mode": self.mode}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AttackInfo:
        what = "an attack"
        return cls(required(obj, "name", what), required(obj, "kind", what), obj.get("mode"))


@dataclass(frozen=True)
class EvaluationSettings:
    """The validated settings of one :func:`~robust_spikes.evaluate` call.

    They are the records file's header (``to_json``; a resume must find the same ones, up
    to the certification radii) and everything the report and the flags need besides the
    records.

    Attributes:
        protocol: ``"adaptive"``, ``"paper"`` or ``"both"``, as asked.
        protocols: the protocols run, in order (``("paper", "adaptive")`` for ``"both"``).
        eps: the radii, in the order given.
        norm: ``"Linf"`` or ``"L2"``.
        seed: base seed.
        batch_size: samples per chunk.
        stochastic: whether the model was evaluated as stochastic.
        eot: gradient samples per attack step (1 for a deterministic model).
        prediction_samples: forward passes per prediction (a majority vote).
        sanity_eps: radius of the large-eps check, ``None`` if skipped.
        certify: the certification, ``None`` if skipped (or in a header older than it).
        convergence: name of the convergence check's PGD member, ``None`` if skipped.
        num_data: number of samples in the data.
        undeclared_randomness: what the randomness probe saw, ``None`` if nothing.
        escalation: the escalated white-box attack, ``None`` if none can run.
        attacks: ``{"paper": ..., "adaptive": ...}``, each protocol's attacks in order.

    Example:
        >>> s = EvaluationSettings.from_json({
        ...     "protocol": "paper", "protocols": ["paper"], "eps": [0.1], "norm": "Linf",
        ...     "seed": 0, "batch_size": 64, "stochastic": False, "eot": 1,
        ...     "prediction_samples": 1, "sanity_eps": None, "convergence": None,
        ...     "num_data": 8, "attacks": {"paper": [{"name": "FGSM", "kind": "white-box",
        ...     "mode": None}], "adaptive": []}})
        >>> s.eps, s.members("paper")[0].name, s.certify
        ((0.1,), 'FGSM', None)
        >>> EvaluationSettings.from_json(s.to_json()) == s
        True
    """

    protocol: str
    protocols: tuple[str, ...]
    eps: tuple[float, ...]
    norm: str
    seed: int
    batch_size: int
    stochastic: bool
    eot: int
    prediction_samples: int
    sanity_eps: float | None
    certify: CertifySettings | None
    convergence: str | None
    num_data: int
    undeclared_randomness: RandomnessProbe | None
    escalation: Escalation | None
    attacks: dict[str, tuple[AttackInfo, ...]]

    def members(self, protocol: str) -> tuple[AttackInfo, ...]:
        """The attacks of ``protocol`` (``"paper"`` or ``"adaptive"``), in order."""
        return self.attacks[protocol]

    def to_json(self) -> dict[str, Any]:
        """The header's ``"settings"`` object."""
        return {
            "protocol": self.protocol,
            "protocols": list(self.protocols),
            "eps": list(self.eps),
            "norm": self.norm,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "stochastic": self.stochastic,
            "eot": self.eot,
            "prediction_samples": self.prediction_samples,
            "sanity_eps": self.sanity_eps,
            "certify": None if self.certify is None else self.certify.to_json(),
            "convergence": self.convergence,
            "num_data": self.num_data,
            "undeclared_randomness": (
                None if self.undeclared_randomness is None else self.undeclared_randomness.to_json()
            ),
            "escalation": None if self.escalation is None else self.escalation.to_json(),
            "attacks": {p: [m.to_json() for m in ms] for p, ms in self.attacks.items()},
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> EvaluationSettings:
        """The settings of a header's ``"settings"`` object.

        ``certify``, ``undeclared_randomness`` and ``escalation`` may be missing (headers
        older than them): they are ``None`` then.

        Raises:
            ValueError: another key is missing (the message names it).
        """
        what = "the evaluation settings"
        certify = obj.get("certify")
        probe = obj.get("undeclared_randomness")
        escalation = obj.get("escalation")
        attacks = required(obj, "attacks", what)
        return cls(
            protocol=required(obj, "protocol", what),
            protocols=tuple(required(obj, "protocols", what)),
            eps=tuple(required(obj, "eps", what)),
            norm=required(obj, "norm", what),
            seed=required(obj, "seed", what),
            batch_size=required(obj, "batch_size", what),
            stochastic=required(obj, "stochastic", what),
            eot=required(obj, "eot", what),
            prediction_samples=required(obj, "prediction_samples", what),
            sanity_eps=required(obj, "sanity_eps", what),
            certify=None if certify is None else CertifySettings.from_json(certify),
            convergence=required(obj, "convergence", what),
            num_data=required(obj, "num_data", what),
            undeclared_randomness=None if probe is None else RandomnessProbe.from_json(probe),
            escalation=None if escalation is None else Escalation.from_json(escalation),
            attacks={p: tuple(AttackInfo.from_json(m) for m in ms) for p, ms in attacks.items()},
        )
