"""One sample's record of :func:`~robust_spikes.evaluate`, as a type and as its JSON line.

A :class:`SampleRecord` is what a chunk computes for one sample, what the records file
holds on one line (``to_json`` gives the object that ``_records.dumps`` writes, ``from_json``
reads it back), and what the report and the masking flags read. ``from_json(to_json(r))
== r``, and the JSON is the format of ``_records.FORMAT``: keys and values as they have
always been written (``/2`` changed the attacks behind the values, not the keys).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["ABSENT", "AttackOutcome", "Certificate", "OtherReadout", "SampleRecord", "required"]


class _Absent(enum.Enum):
    ABSENT = "absent"


ABSENT: Literal[_Absent.ABSENT] = _Absent.ABSENT
"""An :attr:`AttackOutcome.escalated` that the record does not hold (no ``"escalated"``
key): the outcome was not judged by the adaptive ensemble (eps 0, the paper protocol) or
the record predates escalation. Read as "not escalated", like ``None``."""


def required(obj: Mapping[str, Any], key: str, what: str) -> Any:
    """``obj[key]``, or a ``ValueError`` naming ``what`` lacks it (or is not an object)."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{what} must be a JSON object, got {obj!r}")
    if key not in obj:
        raise ValueError(f"{what} has no {key!r}: {dict(obj)!r}")
    return obj[key]


@dataclass(frozen=True)
class AttackOutcome:
    """What the attacks of one protocol did to one sample at one radius.

    Attributes:
        broken_by: the attack that broke the sample (for the adaptive protocol, the first
            member of the cascade that did), ``"clean"`` if it is misclassified without an
            attack, ``None`` if it withstood every attack.
        fooled_by: every attack that fooled it (the paper protocol runs each attack on
            every sample; the adaptive cascade lists at most the one that broke it).
        norm: the perturbation's norm (the evaluation's norm, [0, 1] image scale).
        escalated: whether the escalated white-box attack broke it too (``True`` or
            ``False``), ``None`` if it was not escalated, :data:`ABSENT` if the record
            holds no outcome of it.
    """

    broken_by: str | None
    fooled_by: tuple[str, ...]
    norm: float
    escalated: bool | Literal[_Absent.ABSENT] | None = ABSENT

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "broken_by": self.broken_by,
            "fooled_by": list(self.fooled_by),
            "norm": self.norm,
        }
        if self.escalated is not ABSENT:
            out["escalated"] = self.escalated
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AttackOutcome:
        what = "an attack outcome"
        return cls(
            broken_by=required(obj, "broken_by", what),
            fooled_by=tuple(required(obj, "fooled_by", what)),
            norm=required(obj, "norm", what),
            escalated=obj.get("escalated", ABSENT),
        )


@dataclass(frozen=True)
class Certificate:
    """A sample's randomized-smoothing certificate (see :func:`~robust_spikes.certify`).

    Attributes:
        prediction: the smoothed classifier's class, ``-1`` when it abstains.
        radius: certified radius ([0, 1] image scale), 0 on abstain.
        p_lower: lower confidence bound of the top class's probability.
        count: noisy samples (of ``n``) the base model gave the top class.
    """

    prediction: int
    radius: float
    p_lower: float
    count: int

    def to_json(self) -> dict[str, Any]:
        return {
            "prediction": self.prediction,
            "radius": self.radius,
            "p_lower": self.p_lower,
            "count": self.count,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Certificate:
        what = "a certificate"
        return cls(
            prediction=required(obj, "prediction", what),
            radius=required(obj, "radius", what),
            p_lower=required(obj, "p_lower", what),
            count=required(obj, "count", what),
        )


@dataclass(frozen=True)
class OtherReadout:
    """A sample's clean prediction under the other built-in readout of the classifier.

    Attributes:
        readout: ``"count"`` or ``"membrane"`` (the one the model was not read by).
        prediction: the class it predicts.
    """

    readout: str
    prediction: int

    def to_json(self) -> dict[str, Any]:
        return {"readout": self.readout, "prediction": self.prediction}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> OtherReadout:
        what = "an other-readout prediction"
        return cls(
            readout=required(obj, "readout", what), prediction=required(obj, "prediction", what)
        )


@dataclass(frozen=True)
class SampleRecord:
    """Everything :func:`~robust_spikes.evaluate` recorded about one sample.

    Attributes:
        index: position of the sample in the data.
        label: true class.
        prediction: clean prediction (a vote over the prediction samples if stochastic).
        correct: ``prediction == label``.
        spikes: spikes (all neurons, all steps) of a clean forward pass, ``None`` if
            unknown (not a :class:`~robust_spikes.SpikingClassifier`).
        grad_norm: L1 norm of the input gradient of the loss, ``None`` if non-finite.
        sanity: whether the sample withstood the large-eps check, ``None`` if it did not run.
        results: ``{protocol: {repr(eps): outcome}}``, see :meth:`outcome`.
        certified: the smoothing certificate, ``None`` without ``certify`` (or in a record
            older than certification).
        other_readout: the prediction under the other readout, ``None`` if there is none
            (or in a record older than the check).

    Example:
        >>> line = {"index": 3, "label": 1, "prediction": 1, "correct": True,
        ...         "spikes": 42.0, "grad_norm": 0.5, "sanity": False,
        ...         "results": {"paper": {"0.1": {"broken_by": "FGSM",
        ...                                       "fooled_by": ["FGSM"], "norm": 0.1}}},
        ...         "certified": None, "other_readout": None}
        >>> record = SampleRecord.from_json(line)
        >>> record.outcome("paper", 0.1).broken_by, record.to_json() == line
        ('FGSM', True)
    """

    index: int
    label: int
    prediction: int
    correct: bool
    spikes: float | None
    grad_norm: float | None
    sanity: bool | None
    results: dict[str, dict[str, AttackOutcome]]
    certified: Certificate | None = None
    other_readout: OtherReadout | None = None

    def outcome(self, protocol: str, eps: float) -> AttackOutcome:
        """The outcome of ``protocol``'s attacks at radius ``eps`` (one of the settings')."""
        return self.results[protocol][repr(eps)]

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "label": self.label,
            "prediction": self.prediction,
            "correct": self.correct,
            "spikes": self.spikes,
            "grad_norm": self.grad_norm,
            "sanity": self.sanity,
            "results": {
                p: {k: o.to_json() for k, o in by_eps.items()} for p, by_eps in self.results.items()
            },
            "certified": None if self.certified is None else self.certified.to_json(),
            "other_readout": None if self.other_readout is None else self.other_readout.to_json(),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SampleRecord:
        """The record of one JSON line.

        Raises:
            ValueError: ``obj`` lacks a key every record holds (the message names it).
        """
        what = "a sample record"
        results = required(obj, "results", what)
        certified = obj.get("certified")
        other = obj.get("other_readout")
        return cls(
            index=required(obj, "index", what),
            label=required(obj, "label", what),
            prediction=required(obj, "prediction", what),
            correct=required(obj, "correct", what),
            spikes=required(obj, "spikes", what),
            grad_norm=required(obj, "grad_norm", what),
            sanity=required(obj, "sanity", what),
            results={
                p: {k: AttackOutcome.from_json(o) for k, o in by_eps.items()}
                for p, by_eps in results.items()
            },
            certified=None if certified is None else Certificate.from_json(certified),
            other_readout=None if other is None else OtherReadout.from_json(other),
        )
