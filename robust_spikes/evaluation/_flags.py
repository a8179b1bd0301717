"""Checks for gradient masking, computed from per-sample evaluation records.

Each check returns flags ``{"code": ..., "message": ...}``; the message says what was seen,
what it means and what to try. The checks follow Athalye et al. (ICML 2018) and Carlini
et al., "On evaluating adversarial robustness" (2019), as listed in the evaluation design:

* ``non-monotone``: robust accuracy rises with eps;
* ``no-zero-at-large-eps``: a gradient attack at a large eps leaves accuracy well above 0;
* ``black-box-beats-white-box``: a transfer or query attack breaks samples that every
  white-box gradient attack failed on;
* ``zero-gradients``: the input gradient is zero or non-finite for many samples;
* ``gradient-modes-disagree``: another surrogate or gradient mode breaks far more
  samples than the model's own gradient;
* ``not-converged``: a PGD run with more steps still lowers accuracy;
* ``stochastic-without-eot``: a stochastic model whose reported numbers used no EOT.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["CODES", "THRESHOLDS", "masking_flags"]

CODES = (
    "non-monotone",
    "no-zero-at-large-eps",
    "black-box-beats-white-box",
    "zero-gradients",
    "gradient-modes-disagree",
    "not-converged",
    "stochastic-without-eot",
)

THRESHOLDS: dict[str, float] = {
    # accuracy rise (fraction of samples) between two radii that counts as non-monotone
    "non_monotone": 0.01,
    # accuracy left by the large-eps gradient attack that counts as "not about zero"
    "large_eps_accuracy": 0.05,
    # share of samples that transfer/black-box members break after all white-box ones
    "black_box_share": 0.01,
    # share of samples with a zero or non-finite input gradient
    "zero_gradient_share": 0.05,
    # extra share of samples broken by other gradient modes after the model's own gradient
    "modes_share": 0.10,
    # share of samples the longer PGD run breaks after every other member
    "not_converged_share": 0.03,
}


def _flag(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _at_least(share: float, n: int) -> int:
    """Samples that make up ``share`` of ``n`` (at least one)."""
    return max(1, math.ceil(share * n - 1e-9))


def _entries(records: Sequence[dict[str, Any]], protocol: str, key: str) -> list[dict[str, Any]]:
    return [r["results"][protocol][key] for r in records]


def masking_flags(
    records: Sequence[dict[str, Any]], settings: dict[str, Any]
) -> list[dict[str, str]]:
    """All masking flags for ``records`` evaluated with ``settings`` (see the module doc).

    Args:
        records: per-sample records as written by :func:`robust_spikes.evaluate`.
        settings: the evaluation's settings (``RobustnessReport.settings``).

    Returns:
        A list of ``{"code", "message"}`` dicts, in the order of :data:`CODES`.
    """
    n = len(records)
    if n == 0:
        return []
    flags: list[dict[str, str]] = []
    flags += _non_monotone(records, settings)
    flags += _large_eps(records, settings)
    flags += _black_box(records, settings)
    flags += _zero_gradients(records)
    flags += _modes(records, settings)
    flags += _not_converged(records, settings)
    flags += _stochastic(settings)
    return flags


def _non_monotone(
    records: Sequence[dict[str, Any]], settings: dict[str, Any]
) -> list[dict[str, str]]:
    n, out = len(records), []
    need = _at_least(THRESHOLDS["non_monotone"], n) + 1  # more than one sample of noise
    for protocol in settings["protocols"]:
        radii = sorted(settings["eps"])
        counts = [
            sum(e["broken_by"] is None for e in _entries(records, protocol, repr(r))) for r in radii
        ]
        for (e1, c1), (e2, c2) in itertools.pairwise(zip(radii, counts, strict=True)):
            if c2 - c1 >= need:
                out.append(
                    _flag(
                        "non-monotone",
                        f"{protocol}: robust accuracy rises from {_pct(c1 / n)} at eps={e1:.4g} "
                        f"to {_pct(c2 / n)} at eps={e2:.4g}. A larger radius contains every "
                        "perturbation of a smaller one, so the attack missed adversarial "
                        "examples that exist: a sign of gradient masking or of an attack "
                        "that has not converged. Try: more steps and restarts, other "
                        "gradient modes (model.gradient), a query attack such as Square, "
                        "and EOT for a stochastic model.",
                    )
                )
                break
    return out


def _large_eps(records: Sequence[dict[str, Any]], settings: dict[str, Any]) -> list[dict[str, str]]:
    eps = settings.get("sanity_eps")
    outcomes = [r.get("sanity") for r in records]
    if eps is None or any(o is None for o in outcomes):
        return []
    accuracy = sum(bool(o) for o in outcomes) / len(records)
    if accuracy <= THRESHOLDS["large_eps_accuracy"]:
        return []
    return [
        _flag(
            "no-zero-at-large-eps",
            f"PGD-20 through the model's own gradient at the large radius eps={eps:.4g} "
            f"leaves {_pct(accuracy)} accuracy; at such a radius images can be moved most of "
            "the way to images of other classes, and a working gradient attack reaches about "
            "0%. The gradient does not lead the attack: zero or shattered gradients, an "
            "encoder without a gradient, or saturated logits (gradient masking). Do not "
            "trust small-eps numbers from gradient attacks alone. Try: other gradient modes, "
            "APGD-DLR, Square, and check the zero-gradients flag.",
        )
    ]


def _members(settings: dict[str, Any], protocol: str) -> list[dict[str, Any]]:
    members: list[dict[str, Any]] = settings["attacks"][protocol]
    return members


def _black_box(records: Sequence[dict[str, Any]], settings: dict[str, Any]) -> list[dict[str, str]]:
    if "adaptive" not in settings["protocols"]:
        return []
    n, out = len(records), []
    kinds = {m["name"]: m["kind"] for m in _members(settings, "adaptive")}
    need = _at_least(THRESHOLDS["black_box_share"], n)
    for eps in settings["eps"]:
        broken = [e["broken_by"] for e in _entries(records, "adaptive", repr(eps))]
        by = [b for b in broken if b is not None and kinds.get(b) in ("transfer", "black-box")]
        if len(by) >= need:
            names = ", ".join(sorted(set(by)))
            out.append(
                _flag(
                    "black-box-beats-white-box",
                    f"adaptive, eps={eps:.4g}: {len(by)} of {n} samples ({_pct(len(by) / n)}) "
                    f"survived every white-box gradient attack but were broken by {names}. "
                    "An attack that sees no gradient of this model should be weaker than "
                    "one that does; when it is stronger, the model's gradient misleads the "
                    "attacker (gradient masking). The worst case above already counts these "
                    "samples. Try: compare gradient modes (model.gradient) to find the one "
                    "that fails, and check the zero-gradients flag.",
                )
            )
            break
    return out


def _zero_gradients(records: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    norms = [r.get("grad_norm", 1.0) for r in records]
    bad = sum(g is None or g == 0.0 for g in norms)
    if bad < _at_least(THRESHOLDS["zero_gradient_share"], len(records)):
        return []
    nonfinite = sum(g is None for g in norms)
    return [
        _flag(
            "zero-gradients",
            f"the input gradient of the cross-entropy loss is zero for {bad - nonfinite} and "
            f"non-finite for {nonfinite} of {len(records)} samples "
            f"({_pct(bad / len(records))}). Gradient attacks cannot move these samples, so "
            "their robustness is not measured by them. Usual causes: an encoder or "
            "preprocessing without a gradient (rate coding, rounding), saturated logits "
            "(use APGD-DLR), dead neurons or a surrogate that is zero almost everywhere. "
            "Try: the gradient modes of model.gradient(...), a straight-through encoder, and a "
            "query attack such as Square.",
        )
    ]


def _modes(records: Sequence[dict[str, Any]], settings: dict[str, Any]) -> list[dict[str, str]]:
    if "adaptive" not in settings["protocols"]:
        return []
    n, out = len(records), []
    members = _members(settings, "adaptive")
    other = {m["name"] for m in members if m["kind"] == "white-box" and m.get("mode") is not None}
    if not other or not any(m["kind"] == "white-box" and m.get("mode") is None for m in members):
        return []
    need = _at_least(THRESHOLDS["modes_share"], n)
    for eps in settings["eps"]:
        broken = [e["broken_by"] for e in _entries(records, "adaptive", repr(eps))]
        by = [b for b in broken if b in other]
        if len(by) >= need:
            best = max(sorted(set(by)), key=by.count)
            out.append(
                _flag(
                    "gradient-modes-disagree",
                    f"adaptive, eps={eps:.4g}: after the attacks through the model's own "
                    f"gradient, other gradient modes broke {len(by)} more of {n} samples "
                    f"({_pct(len(by) / n)}; {by.count(best)} by {best}). The model's own "
                    "surrogate gradient understates what an attacker can do, so numbers from "
                    "attacks through it alone (the paper protocol) overstate robustness. "
                    "Try: report the adaptive worst case, and attack with the strongest mode.",
                )
            )
            break
    return out


def _not_converged(
    records: Sequence[dict[str, Any]], settings: dict[str, Any]
) -> list[dict[str, str]]:
    name = settings.get("convergence")
    if "adaptive" not in settings["protocols"] or name is None:
        return []
    n, out = len(records), []
    need = max(2, _at_least(THRESHOLDS["not_converged_share"], n))
    for eps in settings["eps"]:
        count = sum(e["broken_by"] == name for e in _entries(records, "adaptive", repr(eps)))
        if count >= need:
            out.append(
                _flag(
                    "not-converged",
                    f"adaptive, eps={eps:.4g}: {name}, run after every other attack, still "
                    f"broke {count} of {n} samples ({_pct(count / n)}). The attacks had not "
                    "converged: more steps keep lowering the accuracy, so the numbers from "
                    "shorter attacks overstate robustness (noisy or shattered gradients are a "
                    "common cause). The worst case counts these samples. Try: longer attacks "
                    "and more restarts (or EOT) until the accuracy stops falling.",
                )
            )
            break
    return out


def _stochastic(settings: dict[str, Any]) -> list[dict[str, str]]:
    if not settings.get("stochastic"):
        return []
    adaptive = "adaptive" in settings["protocols"] and settings.get("eot", 1) > 1
    if adaptive:
        return []
    return [
        _flag(
            "stochastic-without-eot",
            "the model is stochastic (a random encoder or stochastic neurons), but no reported "
            "attack averaged its gradient over random draws (EOT): each attack step saw one "
            "random draw, a noisy gradient that overstates robustness (the paper protocol "
            "does this). Try: protocol='adaptive' (or 'both') with eot >= 10, and report "
            "the number of prediction samples.",
        )
    ]
