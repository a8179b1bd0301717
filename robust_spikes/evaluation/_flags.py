"""Checks for gradient masking, computed from per-sample evaluation records.

Each check returns flags ``{"code": ..., "message": ...}``; the message says what was seen,
what it means and what to try. The checks follow Athalye et al. (ICML 2018) and Carlini
et al., "On evaluating adversarial robustness" (2019), as listed in the evaluation design:

* ``non-monotone``: robust accuracy rises with eps;
* ``no-zero-at-large-eps``: a gradient attack at a large eps leaves accuracy well above 0;
* ``black-box-beats-white-box``: a transfer or query attack breaks samples that every
  white-box gradient attack failed on; the message says how many, by which attack, at
  which eps, and how many of them the escalated white-box attack also broke;
* ``zero-gradients``: the input gradient is zero or non-finite for many samples;
* ``gradient-modes-disagree``: another surrogate or gradient mode breaks far more
  samples than the model's own gradient;
* ``not-converged``: a PGD run with more steps still lowers accuracy;
* ``stochastic-without-eot``: a stochastic model whose reported numbers used no EOT;
* ``undeclared-randomness``: the model is random although ``is_stochastic`` is false (it
  was then evaluated as a stochastic model);
* ``readout-mismatch``: clean accuracy near chance, or far below what the other built-in
  readout of a :class:`~robust_spikes.SpikingClassifier` gives on the same samples.

Every message states the magnitude (samples, attack, eps) and ends with what to try.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from robust_spikes.evaluation._sample import AttackOutcome, SampleRecord
from robust_spikes.evaluation._settings import EvaluationSettings

__all__ = ["CODES", "THRESHOLDS", "masking_flags"]

CODES = (
    "non-monotone",
    "no-zero-at-large-eps",
    "black-box-beats-white-box",
    "zero-gradients",
    "gradient-modes-disagree",
    "not-converged",
    "stochastic-without-eot",
    "undeclared-randomness",
    "readout-mismatch",
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
    # share of samples the other readout gets right beyond this one (net of the reverse)
    "readout_gain": 0.2,
}


def escalation_text(steps: int, restarts: int, surrogates: int) -> str:
    """How the escalation attacked, e.g. ``"PGD-200, then PGD-50 through 5 more
    surrogates, 3 restarts each"``."""
    from robust_spikes.attacks._ensemble import escalation_breadth_steps

    text = f"PGD-{steps}"
    if surrogates > 1:
        more = surrogates - 1
        text += (
            f", then PGD-{escalation_breadth_steps(steps)} through {more} more "
            f"surrogate{'s' if more > 1 else ''}"
        )
    return text + f", {restarts} restart{'s' if restarts > 1 else ''} each"


# Escalation steps from which a failed escalation is read as masking (the default).
_CONCLUSIVE_ESCALATION = 200


def _flag(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _at_least(share: float, n: int) -> int:
    """Samples that make up ``share`` of ``n`` (at least one)."""
    return max(1, math.ceil(share * n - 1e-9))


def _entries(records: Sequence[SampleRecord], protocol: str, eps: float) -> list[AttackOutcome]:
    return [r.outcome(protocol, eps) for r in records]


def masking_flags(
    records: Sequence[SampleRecord], settings: EvaluationSettings
) -> list[dict[str, str]]:
    """All masking flags for ``records`` evaluated with ``settings`` (see the module doc).

    Args:
        records: per-sample records of :func:`robust_spikes.evaluate`.
        settings: the evaluation's settings (the records file's header).

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
    flags += _undeclared(settings)
    flags += _readout(records)
    return flags


def _non_monotone(
    records: Sequence[SampleRecord], settings: EvaluationSettings
) -> list[dict[str, str]]:
    n, out = len(records), []
    need = _at_least(THRESHOLDS["non_monotone"], n) + 1  # more than one sample of noise
    for protocol in settings.protocols:
        radii = sorted(settings.eps)
        counts = [sum(e.broken_by is None for e in _entries(records, protocol, r)) for r in radii]
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


def _large_eps(
    records: Sequence[SampleRecord], settings: EvaluationSettings
) -> list[dict[str, str]]:
    eps = settings.sanity_eps
    outcomes = [r.sanity for r in records]
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


def _black_box(
    records: Sequence[SampleRecord], settings: EvaluationSettings
) -> list[dict[str, str]]:
    if "adaptive" not in settings.protocols:
        return []
    n = len(records)
    kinds = {m.name: m.kind for m in settings.members("adaptive")}
    need = _at_least(THRESHOLDS["black_box_share"], n)
    escalation = settings.escalation
    parts, unknown = [], False
    masked = tried = gaps = 0  # escalated samples that resisted it; escalated; gap samples
    for eps in settings.eps:
        gap = [
            e
            for e in _entries(records, "adaptive", eps)
            if e.broken_by is not None and kinds.get(e.broken_by) in ("transfer", "black-box")
        ]
        if len(gap) < need:
            continue
        names = sorted({e.broken_by for e in gap if e.broken_by is not None})
        counts = [sum(e.broken_by == name for e in gap) for name in names]
        by = (
            names[0]
            if len(names) == 1
            else " and ".join(f"{name} ({c})" for name, c in zip(names, counts, strict=True))
        )
        part = (
            f"at eps={eps:.4g}, {by} alone broke {len(gap)} of {n} samples "
            f"({_pct(len(gap) / n)}) that every white-box member missed"
        )
        # None: not escalated (beyond the escalation's draw); ABSENT: records before it
        outcomes = [e.escalated for e in gap if e.escalated is not None]
        known = bool(outcomes) and all(isinstance(o, bool) for o in outcomes)
        if (
            escalation is not None
            and known
            and (len(outcomes) == len(gap) or escalation.samples is not None)
        ):
            hit = sum(o is True for o in outcomes)
            masked += len(outcomes) - hit
            tried += len(outcomes)
            gaps += len(gap)
            attack = escalation_text(escalation.steps, escalation.restarts, escalation.surrogates)
            short = escalation.steps < _CONCLUSIVE_ESCALATION
            masking = "masked gradient, or too few escalation steps" if short else "masked gradient"
            if hit == len(outcomes):
                verdict = "all of them: the default white-box members stopped short"
            elif hit == 0:
                verdict = f"none of them ({masking})"
            else:
                verdict = (
                    f"{hit} of them (the default white-box members stopped short there); "
                    f"{len(outcomes) - hit} resisted it too ({masking})"
                )
            on = "" if len(outcomes) == len(gap) else f", run on a random {len(outcomes)} of them,"
            part += f"; the escalated white-box attack ({attack}){on} broke {verdict}"
        else:
            unknown = True
        parts.append(part)
    if not parts:
        return []
    where = f"On {masked} sample(s)" + ("" if tried == gaps else f" of the {tried} it ran on,")
    if escalation is None or unknown:
        meaning = (
            "An attack that sees no gradient of this model should be weaker than one that "
            "does; when it is stronger, the gradient attacks stopped short or the model's "
            "gradient misleads them (gradient masking). Try: escalation_steps=200 to tell "
            "the two apart, compare gradient modes (model.gradient), check zero-gradients."
        )
    elif masked == 0:
        meaning = (
            "The gradient is usable, but the default white-box attacks are too short or too "
            "few for this model: numbers from gradient attacks alone (the paper protocol) "
            "overstate robustness. Try: more PGD steps and restarts (convergence_steps), "
            "and report the adaptive worst case."
        )
    elif escalation.steps < _CONCLUSIVE_ESCALATION:
        meaning = (
            f"{where} the escalated gradient attack (only "
            f"{escalation.steps} steps) fails where a gradient-free attack succeeds: the "
            "gradient may be masked, or the escalation too short to tell. Try: "
            f"escalation_steps={_CONCLUSIVE_ESCALATION}, and report the adaptive worst case."
        )
    else:
        meaning = (
            f"{where} even the escalated gradient attack fails where a "
            "gradient-free attack succeeds: the model's gradient misleads the attacker "
            "(gradient masking), so no gradient-based number is trustworthy for it. Try: "
            "find the component without a useful gradient (encoder, rounding, saturated "
            "logits; see zero-gradients and model.gradient modes), a straight-through "
            "replacement for it, and query attacks with a larger budget."
        )
    return [
        _flag(
            "black-box-beats-white-box",
            f"adaptive: {'; '.join(parts)}. The worst case above already counts these "
            f"samples. {meaning}",
        )
    ]


def _zero_gradients(records: Sequence[SampleRecord]) -> list[dict[str, str]]:
    norms = [r.grad_norm for r in records]
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


def _modes(records: Sequence[SampleRecord], settings: EvaluationSettings) -> list[dict[str, str]]:
    if "adaptive" not in settings.protocols:
        return []
    n, out = len(records), []
    members = settings.members("adaptive")
    other = {m.name for m in members if m.kind == "white-box" and m.mode is not None}
    if not other or not any(m.kind == "white-box" and m.mode is None for m in members):
        return []
    need = _at_least(THRESHOLDS["modes_share"], n)
    for eps in settings.eps:
        broken = [e.broken_by for e in _entries(records, "adaptive", eps)]
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
    records: Sequence[SampleRecord], settings: EvaluationSettings
) -> list[dict[str, str]]:
    name = settings.convergence
    if "adaptive" not in settings.protocols or name is None:
        return []
    n, out = len(records), []
    need = max(2, _at_least(THRESHOLDS["not_converged_share"], n))
    for eps in settings.eps:
        count = sum(e.broken_by == name for e in _entries(records, "adaptive", eps))
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


def _stochastic(settings: EvaluationSettings) -> list[dict[str, str]]:
    if not settings.stochastic:
        return []
    adaptive = "adaptive" in settings.protocols and settings.eot > 1
    if adaptive:
        return []
    where = (
        "the paper protocol (1 gradient sample per step, 1 prediction pass)"
        if "adaptive" not in settings.protocols
        else f"the adaptive protocol with eot={settings.eot}"
    )
    return [
        _flag(
            "stochastic-without-eot",
            "the model is stochastic (a random encoder or stochastic neurons), but no reported "
            f"attack averaged its gradient over random draws (EOT): {where}. Each attack step "
            "saw one random draw, a noisy gradient that overstates robustness. Try: "
            "protocol='adaptive' (or 'both') with eot >= 10, and report the number of "
            "prediction samples.",
        )
    ]


def _undeclared(settings: EvaluationSettings) -> list[dict[str, str]]:
    probe = settings.undeclared_randomness
    if probe is None:
        return []
    return [
        _flag(
            "undeclared-randomness",
            f"two calls on the same {probe.samples} samples (eval mode, two global RNG "
            f"states) gave different logits for {probe.differed} of them, although "
            "model.is_stochastic is False: the model draws noise it does not declare "
            "(torch.randn/rand in forward, snntorch.spikegen.rate inside the network). "
            "One random draw per prediction and per attack step overstates robustness, so "
            f"this evaluation treated it as stochastic: EOT with {settings.eot} "
            f"gradient samples per step and a vote over {settings.prediction_samples} "
            "passes per prediction. Try: move the noise into a robust_spikes encoder (e.g. "
            "rs.encoders.Poisson) or a module with is_stochastic = True drawing from the "
            "classifier's generator, so that it is seeded and declared.",
        )
    ]


def _readout(records: Sequence[SampleRecord]) -> list[dict[str, str]]:
    others = [r.other_readout for r in records if r.other_readout is not None]
    n = len(records)
    if len(others) < n:
        return []
    other = others[0].readout
    own = "count" if other == "membrane" else "membrane"
    ok = [r.correct for r in records]
    alt = [o.prediction == r.label for o, r in zip(others, records, strict=True)]
    gain = sum(a and not b for a, b in zip(alt, ok, strict=True))
    loss = sum(b and not a for a, b in zip(alt, ok, strict=True))
    classes = 1 + max(max(r.label, r.prediction) for r in records)
    chance = 1.0 / max(2, classes)
    acc, acc_alt = sum(ok) / n, sum(alt) / n
    # McNemar: the other readout wins on clearly more of the samples where the two differ
    clear = gain - loss >= max(3.0, 3 * math.sqrt(gain + loss))
    far_below = clear and gain - loss >= _at_least(THRESHOLDS["readout_gain"], n)
    near_chance = n >= 20 and acc <= chance + 2 * math.sqrt(chance * (1 - chance) / n)
    if not (far_below or (near_chance and clear)):
        return []
    what = "is far below" if far_below else "is near chance and below"
    return [
        _flag(
            "readout-mismatch",
            f"clean accuracy with readout={own!r} is {_pct(acc)} on {n} samples, which {what} "
            f"the {_pct(acc_alt)} that readout={other!r} gives on the same samples (chance: "
            f"{_pct(chance)} for {classes} classes). The readout probably does not match how "
            "the network was trained (SpikingJelly's tutorials train on the output firing "
            "rate, which readout='count' reads), so every robust accuracy here measures a "
            f"misread model. Try: SpikingClassifier(..., readout={other!r}) and evaluate again.",
        )
    ]
