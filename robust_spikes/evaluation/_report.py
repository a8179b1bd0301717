"""``RobustnessReport``: the summary of an evaluation and its renderings."""

from __future__ import annotations

import csv
import functools
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from robust_spikes._tables import markdown_table
from robust_spikes.evaluation import _records
from robust_spikes.evaluation._flags import masking_flags
from robust_spikes.evaluation._sample import Certificate, SampleRecord
from robust_spikes.evaluation._settings import EvaluationSettings

__all__ = ["RobustnessReport", "format_eps", "plot_curves"]


def format_eps(eps: float) -> str:
    """``"8/255"`` for multiples of 1/255 in (0, 1), else the shortest ``%g`` form.

    Example:
        >>> format_eps(8 / 255), format_eps(0.0), format_eps(0.5)
        ('8/255', '0', '0.5')
    """
    k = round(eps * 255)
    if 0 < k < 255 and abs(eps * 255 - k) < 1e-6:
        return f"{k}/255"
    return f"{eps:g}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


class RobustnessReport:
    """Per-sample records of :func:`robust_spikes.evaluate` and what they add up to.

    Every number is computed from the per-sample records and the settings, so a report
    read back from a records file (:meth:`from_records`) equals the one the run returned.
    :attr:`records` and :attr:`settings` give them as plain JSON values, as the records
    file holds them (one dict per sample, sorted by index; the header's settings).

    Accuracies are fractions in [0, 1] of all evaluated samples; a sample counts as robust
    at a radius ``eps`` (in the [0, 1] image scale) only if it is classified correctly clean
    and under every attack. For the adaptive protocol (a cascade), the accuracy under a
    member is the accuracy after that member and every earlier one; for the paper protocol
    each attack sees every sample.

    Args:
        records: one record per sample (``SampleRecord``, or its dict as written to the
            records file), in any order.
        settings: the evaluation's settings (``EvaluationSettings``, or the dict of the
            records file's header).

    Example:
        >>> import snntorch as snn, torch
        >>> from torch import nn
        >>> import robust_spikes as rs
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10),
        ...                     snn.Leaky(beta=0.9, init_hidden=True, output=True))
        >>> x, y = torch.rand(4, 1, 8, 8), torch.randint(0, 10, (4,))
        >>> report = rs.evaluate(rs.SpikingClassifier(net, 4), (x, y), eps=[0, 0.1],
        ...                      protocol="paper", sanity_eps=0, progress=False)
        >>> report.num_samples, sorted(report.to_dict()["robust_accuracy"][0.1])
        (4, ['FGSM', 'PGD-7', 'worst'])
    """

    def __init__(
        self,
        records: Iterable[SampleRecord | Mapping[str, Any]],
        settings: EvaluationSettings | Mapping[str, Any],
    ) -> None:
        samples = [r if isinstance(r, SampleRecord) else SampleRecord.from_json(r) for r in records]
        self._samples = sorted(samples, key=lambda r: r.index)
        self._settings = (
            settings
            if isinstance(settings, EvaluationSettings)
            else EvaluationSettings.from_json(settings)
        )

    @functools.cached_property
    def records(self) -> list[dict[str, Any]]:
        """One dict per sample, sorted by index, as the records file holds them."""
        return [r.to_json() for r in self._samples]

    @functools.cached_property
    def settings(self) -> dict[str, Any]:
        """The evaluation's settings, as the records file's header holds them."""
        return self._settings.to_json()

    @classmethod
    def from_records(cls, path: str | os.PathLike[str]) -> RobustnessReport:
        """The report of a finished records file.

        Raises:
            ValueError: ``path`` is missing, not a records file, or incomplete.
        """
        settings, rows = _records.load(Path(path))
        if settings is None:
            raise ValueError(f"path {str(path)!r} holds no robust-spikes records")
        if len(rows) != settings.num_data:
            raise ValueError(
                f"records {str(path)!r} are incomplete: {len(rows)} of {settings.num_data} "
                "samples; run evaluate again with the same path to finish them"
            )
        return cls(list(rows.values()), settings)

    # ------------------------------------------------------------------ numbers
    @property
    def num_samples(self) -> int:
        """Number of evaluated samples."""
        return len(self._samples)

    @property
    def protocols(self) -> list[str]:
        """The protocols run (``["paper", "adaptive"]`` for ``protocol="both"``)."""
        return list(self._settings.protocols)

    def _mean(self, flags: Sequence[bool]) -> float:
        return sum(flags) / len(flags) if flags else math.nan

    @property
    def clean_accuracy(self) -> float:
        """Clean accuracy (a vote over the prediction samples for a stochastic model)."""
        return self._mean([r.correct for r in self._samples])

    def protocol_accuracy(self, protocol: str) -> dict[float, dict[str, float]]:
        """``{eps: {attack: accuracy, ..., "worst": accuracy}}`` of one protocol."""
        names = [m.name for m in self._settings.members(protocol)]
        out: dict[float, dict[str, float]] = {}
        for eps in self._settings.eps:
            entries = [r.outcome(protocol, eps) for r in self._samples]
            accs: dict[str, float] = {}
            for k, name in enumerate(names):
                if protocol == "adaptive":  # cascade: after this member and the earlier ones
                    later = set(names[k + 1 :])
                    ok = [e.broken_by is None or e.broken_by in later for e in entries]
                else:
                    ok = [e.broken_by != "clean" and name not in e.fooled_by for e in entries]
                accs[name] = self._mean(ok)
            accs["worst"] = self._mean([e.broken_by is None for e in entries])
            out[eps] = accs
        return out

    def _robust(self, eps: float) -> list[bool]:
        return [
            all(r.outcome(p, eps).broken_by is None for p in self.protocols) for r in self._samples
        ]

    @property
    def robust_accuracy(self) -> dict[float, dict[str, float]]:
        """``{eps: {attack: accuracy, ..., "worst": accuracy}}``.

        With ``protocol="both"`` the attack names are prefixed ``"paper/"`` and
        ``"adaptive/"`` (each protocol's worst case included), and ``"worst"`` is the
        per-sample worst case over both.
        """
        if len(self.protocols) == 1:
            return self.protocol_accuracy(self.protocols[0])
        out: dict[float, dict[str, float]] = {eps: {} for eps in self._settings.eps}
        for protocol in self.protocols:
            for eps, accs in self.protocol_accuracy(protocol).items():
                out[eps].update({f"{protocol}/{k}": v for k, v in accs.items()})
        for eps in out:
            out[eps]["worst"] = self._mean(self._robust(eps))
        return out

    @property
    def attack_success_rate(self) -> dict[float, float]:
        """``{eps: share of the initially correct samples that the worst case broke}``."""
        first = self._settings.eps[0]
        initially = [
            all(r.outcome(p, first).broken_by != "clean" for p in self.protocols)
            for r in self._samples
        ]
        out = {}
        for eps in self._settings.eps:
            robust = self._robust(eps)
            hits = [not ok for ok, was in zip(robust, initially, strict=True) if was]
            out[eps] = self._mean(hits) if hits else 0.0
        return out

    @property
    def mean_spike_count(self) -> float | None:
        """Mean spikes per sample (all neurons and steps) in a clean pass; ``None`` if unknown."""
        counts = [r.spikes for r in self._samples if r.spikes is not None]
        if not counts or len(counts) < len(self._samples):
            return None
        return sum(counts) / len(counts)

    @property
    def certified_accuracy(self) -> dict[float, float] | None:
        """``{radius: accuracy}`` of the smoothed classifier; ``None`` if not certified.

        A sample counts at a radius if the smoothed classifier predicts its label with a
        certified radius at least that large (abstentions count as errors), as in
        :meth:`~robust_spikes.evaluation.CertificationResult.certified_accuracy`; radius 0
        gives the smoothed classifier's accuracy.
        """
        settings = self._settings.certify
        if settings is None:
            return None
        return {radius: self._certified_at(radius) for radius in settings.radii}

    def _certificates(self) -> list[tuple[SampleRecord, Certificate]]:
        """Each sample with its certificate (the evaluation ran with ``certify``)."""
        out = []
        for r in self._samples:
            if r.certified is None:
                raise ValueError(f"the record of sample {r.index} holds no certificate")
            out.append((r, r.certified))
        return out

    def _certified_at(self, radius: float) -> float:
        return self._mean(
            [c.prediction == r.label and c.radius >= radius for r, c in self._certificates()]
        )

    def certified_curve(self, points: int = 51) -> list[tuple[float, float]]:
        """Certified accuracy at ``points`` radii from 0 to the largest certified radius.

        ``[(0.0, 0.0)]`` alone when no sample is certified correctly.

        Raises:
            ValueError: the evaluation ran without ``certify``; ``points`` is not an int >= 2.
        """
        if self._settings.certify is None:
            raise ValueError("certified_curve needs an evaluation run with certify=..., got none")
        if isinstance(points, bool) or not isinstance(points, int) or points < 2:
            raise ValueError(f"points must be an int >= 2, got {points!r}")
        top = max(
            (c.radius for r, c in self._certificates() if c.prediction == r.label), default=0.0
        )
        radii = [top * i / (points - 1) for i in range(points)] if top > 0 else [0.0]
        return [(radius, self._certified_at(radius)) for radius in radii]

    @property
    def flags(self) -> list[dict[str, str]]:
        """Masking flags ``{"code", "message"}`` (see :mod:`robust_spikes.evaluation`)."""
        return masking_flags(self._samples, self._settings)

    # --------------------------------------------------------------- renderings
    def to_dict(self) -> dict[str, Any]:
        """The summary as plain Python values (eps keys are floats).

        Keys: ``clean_accuracy``, ``robust_accuracy``, ``robust_accuracy_by_protocol``,
        ``attack_success_rate``, ``certified_accuracy`` (``{radius: accuracy}``, ``None``
        without ``certify``), ``num_samples``, ``mean_spike_count``, ``flags``,
        ``protocol``, ``seed``, ``eot``, ``prediction_samples`` and ``settings`` (all of
        them).
        """
        return {
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "robust_accuracy_by_protocol": {p: self.protocol_accuracy(p) for p in self.protocols},
            "attack_success_rate": self.attack_success_rate,
            "certified_accuracy": self.certified_accuracy,
            "num_samples": self.num_samples,
            "mean_spike_count": self.mean_spike_count,
            "flags": self.flags,
            "protocol": self._settings.protocol,
            "seed": self._settings.seed,
            "eot": self._settings.eot,
            "prediction_samples": self._settings.prediction_samples,
            "settings": self._settings.to_json(),
        }

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as JSON (eps keys become strings such as ``"0.1"``)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write one row per (protocol, eps, attack): ``protocol,eps,attack,accuracy``.

        With certification, one row per radius follows: ``certified,RADIUS,NORM,accuracy``
        (the ``eps`` column then holds the radius of the smoothing certificate).
        """
        with Path(path).open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["protocol", "eps", "attack", "accuracy"])
            writer.writerow(["clean", 0.0, "none", self.clean_accuracy])
            for protocol in self.protocols:
                for eps, accs in self.protocol_accuracy(protocol).items():
                    for name, acc in accs.items():
                        writer.writerow([protocol, eps, name, acc])
            certify, certified = self._settings.certify, self.certified_accuracy
            if certify is not None and certified is not None:
                for radius, acc in certified.items():
                    writer.writerow(["certified", radius, certify.norm, acc])

    def to_markdown(self) -> str:
        """A Markdown summary: settings, one table per protocol, and the flags."""
        s = self._settings
        spikes = self.mean_spike_count
        lines = [
            f"Robustness of {self.num_samples} samples under {s.norm} attacks "
            f"(protocol {s.protocol}, seed {s.seed}, EOT samples {s.eot}, "
            f"prediction samples {s.prediction_samples}).",
            "",
            f"Clean accuracy: {_pct(self.clean_accuracy)}"
            + ("" if spikes is None else f"; mean spike count {spikes:.1f} per sample"),
        ]
        if s.stochastic:
            lines += [
                "",
                f"The model is stochastic: each sample's prediction is the majority vote over "
                f"{s.prediction_samples} forward passes, clean and under every attack of "
                "every protocol.",
            ]
        success = self.attack_success_rate
        for protocol in self.protocols:
            table = self.protocol_accuracy(protocol)
            names = list(next(iter(table.values())))
            note = " (cumulative: after each member and the earlier ones)"
            lines += ["", f"{protocol}" + (note if protocol == "adaptive" else "") + ":", ""]
            lines += markdown_table(
                ["eps", *names],
                [[format_eps(e)] + [_pct(a[n]) for n in names] for e, a in table.items()],
            )
        if len(self.protocols) > 1:
            lines += ["", "Worst case over both protocols:", ""]
            robust = self.robust_accuracy
            lines += markdown_table(
                ["eps", "worst", "attack success rate"],
                [[format_eps(e), _pct(robust[e]["worst"]), _pct(success[e])] for e in robust],
            )
        certified = self.certified_accuracy
        c = s.certify
        if certified is not None and c is not None:
            noise = f"sigma {c.sigma:g}" if c.norm == "l2" else "Bernoulli coding"
            lines += [
                "",
                f"Certified accuracy (randomized smoothing, {c.norm} radius, {noise}, "
                f"n {c.n}, alpha {c.alpha:g}):",
                "",
            ]
            lines += markdown_table(
                ["radius", "certified accuracy"],
                [[f"{r:g}", _pct(a)] for r, a in certified.items()],
            )
        lines += ["", "Masking checks:", ""]
        flags = self.flags
        lines += [f"- **{f['code']}**: {f['message']}" for f in flags] or ["- none fired"]
        return "\n".join(lines) + "\n"

    def plot(self, path: str | os.PathLike[str], *, title: str | None = None) -> None:
        """Save robust accuracy (worst case) vs eps, one curve per protocol, as an image.

        With certification, a second panel shows certified accuracy vs radius. Needs
        matplotlib (``pip install 'robust-spikes[plots]'``), imported only here; no pyplot
        state is touched (an Agg canvas is used).
        """
        series = {
            p: [(e, a["worst"]) for e, a in sorted(self.protocol_accuracy(p).items())]
            for p in self.protocols
        }
        certified = None
        if self._settings.certify is not None:
            certified = (self._settings.certify.norm, self.certified_curve())
        plot_curves(
            series, path, title=title or f"{self._settings.norm} robustness", certified=certified
        )

    def __repr__(self) -> str:
        return (
            f"RobustnessReport(num_samples={self.num_samples}, protocol="
            f"{self._settings.protocol!r}, clean_accuracy={self.clean_accuracy:.3f}, "
            f"flags={[f['code'] for f in self.flags]})"
        )


def plot_curves(
    series: Mapping[str, Sequence[tuple[float, float]]],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    certified: tuple[str, Sequence[tuple[float, float]]] | None = None,
) -> None:
    """Save accuracy-vs-eps curves (``{label: [(eps, accuracy), ...]}``) as a PNG.

    Labels ending in ``"paper"`` are dashed. ``certified=(norm, [(radius, accuracy), ...])``
    adds a second panel, certified accuracy vs radius. Uses matplotlib's Agg canvas (no
    pyplot).

    Raises:
        ImportError: matplotlib is missing (the message names the extra).
    """
    from robust_spikes._optional import require

    require("matplotlib", "RobustnessReport.plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0 if certified is None else 11.0, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1 if certified is None else 2, 1)
    for label, points in series.items():
        xs = [255 * e for e, _ in points]
        ys = [100 * a for _, a in points]
        style = "--" if label.endswith("paper") else "-"
        ax.plot(xs, ys, style, marker="o", label=label)
    ax.set_xlabel("eps (x/255)")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    if certified is not None:
        norm, points = certified
        cx = fig.add_subplot(1, 2, 2)
        marker = "o" if len(points) == 1 else None  # a lone point needs a marker to show
        cx.plot([r for r, _ in points], [100 * a for _, a in points], marker=marker)
        cx.set_xlabel(f"{norm} radius ([0, 1] image scale)")
        cx.set_ylabel("certified accuracy (%)")
        cx.set_ylim(-2, 102)
        cx.grid(alpha=0.3)
        cx.set_title("randomized smoothing")
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=120)
