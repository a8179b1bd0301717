"""Randomized-smoothing certification: Cohen et al. (2019) CERTIFY and PREDICT.

The smoothed classifier ``g(x) = argmax_c P(f(x') = c)`` takes the majority vote of the
base classifier ``f`` (here usually a :class:`~robust_spikes.SpikingClassifier`) over
random inputs ``x'`` drawn around ``x``. Two kinds of randomness are supported:

* ``norm="l2"``: Gaussian smoothing, ``x' = x + sigma * z`` with ``z ~ N(0, I)`` added to
  the image before the model (before the SNN's encoder), not clipped to [0, 1]. If the
  lower confidence bound ``p_lower`` of the top class's probability exceeds 1/2, ``g`` is
  constant within the l2 ball of radius ``sigma * Phi^-1(p_lower)`` (Cohen et al.,
  Theorem 1).
* ``norm="l1"``: Bernoulli rate coding (Mukhoty et al., ICLR 2024), ``x' ~ Bernoulli(x)``
  per pixel, one binary image per noisy sample, drawn here and given to the model (whose
  encoder should then be :class:`~robust_spikes.encoders.Direct`: it sees the same binary
  image at every step). The total variation between the coded inputs of ``x`` and of
  ``x + delta`` is at most ``||delta||_1``, so ``g`` is constant for
  ``||delta||_1 < p_lower - 1/2``. There is no noise level to choose: ``sigma`` must be
  ``None``. The radius refers to this one draw per noisy sample, not to a rate code of
  ``num_steps`` draws inside the model (whose bound would shrink with ``num_steps``);
  randomness the model adds after the draw leaves the certificate valid.

Both certificates also hold for a stochastic base model (its randomness is a random
function of the noisy input), e.g. a :class:`~robust_spikes.SpikingClassifier` with a
random encoder or stochastic neurons.

Radii are in the [0, 1] image scale. All randomness comes from one generator per sample,
seeded from ``(seed, sample index)``, so results do not depend on batching, order or
which subset is certified.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from robust_spikes import _data
from robust_spikes._checks import check_count
from robust_spikes._modes import kept_modes
from robust_spikes._optional import require
from robust_spikes._random import mixed_seed, rand, randn
from robust_spikes.evaluation._certified import CertificationResult, CertifiedSample
from robust_spikes.evaluation._stats import binomial_pvalue, check_alpha, clopper_pearson

__all__ = ["certify", "certify_samples", "check_settings", "predict"]

Norm = Literal["l2", "l1"]
_NORMS = ("l2", "l1")
_BLOCK = 64  # noise rows drawn per generator call: fixes the stream whatever the batch size

# Streams of the per-sample generators (noise, model's own), seeded by mixed_seed.
_CERTIFY_STREAMS, _PREDICT_STREAMS = (0, 1), (2, 3)


_NORMAL = statistics.NormalDist()


def _radius(p_lower: float, sigma: float | None, norm: str) -> float:
    """Certified radius for a lower bound ``p_lower > 1/2`` of the top-class probability."""
    if norm == "l1":
        return p_lower - 0.5
    assert sigma is not None
    return sigma * _NORMAL.inv_cdf(p_lower)


# ------------------------------------------------------------------------- certification
def certify(
    model: nn.Module,
    data: Any,
    *,
    sigma: float | None = None,
    n0: int = 100,
    n: int = 1000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    norm: Norm = "l2",
    num_classes: int | None = None,
    indices: Sequence[int] | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> CertificationResult:
    """Certify the smoothed classifier of ``model`` on every sample of ``data`` (CERTIFY).

    For each sample: ``n0`` noisy copies pick the top class ``c_A`` (most frequent
    argmax), ``n`` fresh copies count it, and ``p_lower`` is the one-sided Clopper-Pearson
    lower bound of its probability at confidence ``1 - alpha``. If ``p_lower > 1/2`` the
    smoothed classifier predicts ``c_A`` with radius ``sigma * Phi^-1(p_lower)`` (l2) or
    ``p_lower - 1/2`` (l1), else it abstains (prediction ``-1``, radius 0). Each
    certificate is wrong with probability at most ``alpha``. See the module docstring for
    the two kinds of noise.

    The model runs in eval mode under ``torch.no_grad`` (modes are restored afterwards),
    its ``input_range`` (if it has one) is set to ``None`` meanwhile since noisy images
    leave [0, 1], and a model with a ``generator`` attribute (a stochastic encoder or
    neurons) draws from a per-sample generator meanwhile. Every call of the model gets at
    most ``batch_size`` noisy copies of one sample. For a deterministic model the result
    does not depend on ``batch_size``; a stochastic model's own draws do.

    Args:
        model: base classifier, ``model(x) -> logits [N, K]`` (e.g. a
            :class:`~robust_spikes.SpikingClassifier`, which resets its state on every call).
        data: an ``(images, labels)`` pair of tensors, a Dataset of ``(image, label)``
            pairs (e.g. ``robust_spikes.data.digits("test")``), a DataLoader, or any
            iterable of ``(images, labels)`` batches (a list of batch tuples included).
        sigma: standard deviation of the Gaussian noise for ``norm="l2"`` (image scale);
            must be ``None`` for ``norm="l1"``.
        n0: noisy samples to select the top class.
        n: noisy samples to estimate its probability.
        alpha: failure probability in (0, 1).
        batch_size: most noisy samples per model call.
        norm: ``"l2"`` (Gaussian smoothing) or ``"l1"`` (Bernoulli rate coding).
        num_classes: number of classes; default the width of the model's logits.
        indices: certify only these positions of ``data``, in this order (an iterable is
            read up to the largest position).
        max_samples: certify at most this many samples (the first ones, after ``indices``).
        seed: base seed; sample ``i`` draws from a generator seeded from ``(seed, i)``.
        progress: show a tqdm progress bar on stderr.

    Returns:
        A :class:`CertificationResult`.

    Shape:
        images ``[C, H, W]`` (or ``[F]``) per sample; the model receives
        ``[min(batch_size, n), C, H, W]`` noisy copies.

    Raises:
        ValueError: bad ``sigma``, ``n0``, ``n``, ``alpha``, ``batch_size``, ``norm``,
            ``num_classes``, ``indices``, ``max_samples`` or ``seed``; ``data`` of another
            kind, without samples, or with labels that are not one int per image; images
            outside [0, 1] for ``norm="l1"``; logits that are not ``[N, num_classes]``.
        TypeError: ``model`` is not an ``nn.Module``.

    Example:
        >>> import robust_spikes as rs
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        >>> data = rs.data.digits("test")
        >>> result = certify(net, data, sigma=0.25, n0=10, n=50, max_samples=3, progress=False)
        >>> len(result.records), result.settings["n"]
        (3, 50)
        >>> 0.0 <= result.certified_accuracy(0.0) <= 1.0
        True
    """
    settings = check_settings(model, sigma, n0, n, alpha, batch_size, norm, num_classes, seed)
    samples, total = _samples(data, indices, max_samples)
    counter = VoteCounter(model, settings, num_classes)
    tqdm = require("tqdm", "robust_spikes.certify").tqdm
    bar = tqdm(samples, total=total, desc="certify", unit="sample", disable=not progress)
    with bar:
        records = certify_samples(counter, bar, n0=n0, n=n, alpha=alpha)
    if not records or counter.num_classes is None:
        raise ValueError("data must contain at least one sample to certify, got none")
    return CertificationResult(
        records=records,
        sigma=settings.sigma,
        n0=n0,
        n=n,
        alpha=float(alpha),
        norm=norm,
        seed=seed,
        num_classes=counter.num_classes,
    )


def certify_samples(
    counter: VoteCounter,
    samples: Iterable[tuple[int, torch.Tensor, int]],
    *,
    n0: int,
    n: int,
    alpha: float,
) -> list[CertifiedSample]:
    """CERTIFY on ``(index, image, label)`` triples with validated settings (see certify).

    Sample ``index`` draws from generators seeded from ``(seed, index)``, so a caller that
    certifies part of a data set (``robust_spikes.evaluate``, chunk by chunk) passes the
    global indices and gets the certificates :func:`certify` gives for the whole.
    """
    settings, model = counter.settings, counter.model
    records: list[CertifiedSample] = []
    with _certifying(model):
        for index, x, label in samples:
            with counter.sample(index, _check_sample(x, settings.norm, index), *_CERTIFY_STREAMS):
                top = int(counter.counts(n0).argmax())
                count = int(counter.counts(n)[top])
            p_lower = clopper_pearson(count, n, alpha, side="lower")[0]
            if p_lower > 0.5:
                prediction, radius = top, _radius(p_lower, settings.sigma, settings.norm)
            else:
                prediction, radius = -1, 0.0
            records.append(
                CertifiedSample(
                    index=index,
                    label=label,
                    prediction=prediction,
                    radius=radius,
                    correct=prediction == label,
                    p_lower=p_lower,
                    count=count,
                )
            )
    return records


def predict(
    model: nn.Module,
    x: torch.Tensor,
    *,
    sigma: float | None = None,
    n: int = 1000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    norm: Norm = "l2",
    num_classes: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """The smoothed classifier's prediction for each image (Cohen et al.'s PREDICT).

    For each image, ``n`` noisy copies are classified; with ``n_A`` and ``n_B`` the counts
    of the two most frequent classes, the top class is returned if the two-sided exact
    binomial test of ``n_A`` out of ``n_A + n_B`` against 1/2 rejects at level ``alpha``,
    else ``-1`` (abstain). A returned class differs from the smoothed classifier's true
    prediction with probability at most ``alpha``. Noise, modes and generators are handled
    as in :func:`certify`; image ``i`` draws from a generator seeded from ``(seed, i)``
    (independent of :func:`certify`'s draws).

    Args:
        model: base classifier, ``model(x) -> logits [N, K]``.
        x: images in the [0, 1] scale.
        sigma, n, alpha, batch_size, norm, num_classes, seed: as in :func:`certify`.
        progress: show a tqdm progress bar on stderr.

    Returns:
        ``int64`` predictions, ``-1`` where the smoothed classifier abstains.

    Shape:
        x: ``[N, C, H, W]`` (or ``[N, F]``); returns ``[N]``.

    Raises:
        ValueError, TypeError: as :func:`certify`; ``x`` not a non-empty batch.

    Example:
        >>> import robust_spikes as rs
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        >>> x = rs.data.digits("test").images[:2]
        >>> predict(net, x, sigma=0.25, n=20).shape
        torch.Size([2])
    """
    settings = check_settings(model, sigma, 1, n, alpha, batch_size, norm, num_classes, seed)
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or x.shape[0] == 0:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a non-empty batch of images [N, C, H, W], got {got}")
    counter = VoteCounter(model, settings, num_classes)
    tqdm = require("tqdm", "robust_spikes.evaluation.predict").tqdm
    out = torch.full((x.shape[0],), -1, dtype=torch.int64)
    bar = tqdm(range(x.shape[0]), desc="predict", unit="sample", disable=not progress)
    with _certifying(model), bar:
        for i in bar:
            with counter.sample(i, _check_sample(x[i], norm, i), *_PREDICT_STREAMS):
                counts = counter.counts(n)
            top2 = torch.topk(counts, 2)
            n_a, n_b = (int(c) for c in top2.values)
            if binomial_pvalue(n_a, n_a + n_b) <= alpha:
                out[i] = int(top2.indices[0])
    return out


# ------------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class _Settings:
    sigma: float | None
    norm: str
    batch_size: int
    seed: int


def check_settings(
    model: Any,
    sigma: Any,
    n0: Any,
    n: Any,
    alpha: Any,
    batch_size: Any,
    norm: Any,
    num_classes: Any,
    seed: Any,
) -> _Settings:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    if norm == "l2":
        ok = isinstance(sigma, int | float) and not isinstance(sigma, bool)
        if not (ok and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive float for norm='l2', got {sigma!r}")
        sigma = float(sigma)
    elif sigma is not None:
        raise ValueError(
            "sigma must be None for norm='l1' (Bernoulli rate coding has no noise level), "
            f"got {sigma!r}"
        )
    check_count("n0", n0, minimum=1)
    check_count("n", n, minimum=1)
    check_alpha(alpha)
    check_count("batch_size", batch_size, minimum=1)
    if num_classes is not None:
        check_count("num_classes", num_classes, minimum=2)
    check_count("seed", seed, minimum=0)
    return _Settings(sigma=sigma, norm=norm, batch_size=batch_size, seed=seed)


def _samples(
    data: Any, indices: Sequence[int] | None, max_samples: int | None
) -> tuple[Iterator[tuple[int, torch.Tensor, int]], int]:
    """``(index, image, label)`` for every selected sample (``_data``'s contract), and their
    number; ``index`` is the sample's position in ``data``."""
    if max_samples is not None:
        check_count("max_samples", max_samples, minimum=1)
    chosen = None if indices is None else [_check_index(i) for i in indices]
    x, y = _data.tensors(data, "data", indices=chosen, limit=max_samples)
    positions = list(range(len(y))) if chosen is None else chosen[: len(y)]
    return ((p, x[j], int(y[j])) for j, p in enumerate(positions)), len(positions)


def _check_index(i: Any) -> int:
    if isinstance(i, torch.Tensor) and i.numel() == 1:
        i = int(i)
    if isinstance(i, bool) or not isinstance(i, int) or i < 0:
        raise ValueError(f"indices must hold ints >= 0 (positions in data), got {i!r}")
    return i


def _check_sample(x: torch.Tensor, norm: str, index: int) -> torch.Tensor:
    if not x.is_floating_point():
        raise TypeError(f"sample {index}: image must be a float tensor, got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"sample {index}: image must be finite, got NaN or inf values")
    if norm == "l1":
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"sample {index}: norm='l1' needs pixel values in [0, 1] (they are Bernoulli "
                f"probabilities), got min {lo:.4g} and max {hi:.4g}"
            )
    return x


class VoteCounter:
    """Classifies noisy copies of one sample at a time and counts the argmax classes."""

    def __init__(self, model: nn.Module, settings: _Settings, num_classes: int | None) -> None:
        self.model, self.settings, self.num_classes = model, settings, num_classes
        self.device = next(
            (t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu")
        )
        self._draws: _Draws | None = None
        self._x: torch.Tensor | None = None

    @contextlib.contextmanager
    def sample(
        self, index: int, x: torch.Tensor, noise_stream: int, model_stream: int
    ) -> Iterator[None]:
        """Draw noise for sample ``index``; the model's own generator is seeded for it too."""
        seed = self.settings.seed
        gen = torch.Generator().manual_seed(
            mixed_seed("certify", seed, index, noise_stream, bits=63)
        )
        kind = randn if self.settings.norm == "l2" else rand
        x = x.to(self.device)
        self._draws, self._x = _Draws(x.shape, gen, kind, x.dtype), x.unsqueeze(0)
        saved = getattr(self.model, "generator", None)
        if isinstance(saved, torch.Generator):  # a stochastic encoder or neurons
            own = torch.Generator(device=saved.device)
            own.manual_seed(mixed_seed("certify", seed, index, model_stream, bits=63))
            setattr(self.model, "generator", own)  # noqa: B010
        try:
            yield
        finally:
            self._draws = self._x = None
            if isinstance(saved, torch.Generator):
                setattr(self.model, "generator", saved)  # noqa: B010

    def counts(self, num: int) -> torch.Tensor:
        """Argmax counts ``[K]`` (``int64``, CPU) over ``num`` fresh noisy copies."""
        assert self._draws is not None and self._x is not None
        x, draws, settings = self._x, self._draws, self.settings
        total: torch.Tensor | None = None
        remaining = num
        while remaining > 0:
            m = min(settings.batch_size, remaining)
            draw = draws.take(m).to(self.device)
            if settings.norm == "l2":
                assert settings.sigma is not None
                batch = x + settings.sigma * draw
            else:
                batch = (draw < x).to(x.dtype)
            classes = self._classes(self.model(batch), m)
            counts = torch.bincount(classes, minlength=self.num_classes or 0)
            total = counts if total is None else total + counts
            remaining -= m
        assert total is not None
        return total

    def _classes(self, logits: Any, m: int) -> torch.Tensor:
        k = self.num_classes
        ok = isinstance(logits, torch.Tensor) and logits.dim() == 2 and logits.shape[0] == m
        if not ok or (k is not None and logits.shape[1] != k):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            want = f"[{m}, {k if k is not None else 'K'}]"
            raise ValueError(f"model must return logits {want}, got {got}")
        if k is None:
            if logits.shape[1] < 2:
                raise ValueError(
                    f"model must return logits for at least 2 classes, got {logits.shape[1]}"
                )
            self.num_classes = int(logits.shape[1])
        return logits.argmax(1).cpu()


class _Draws:
    """Noise rows of one sample, drawn in blocks of ``_BLOCK`` rows from its generator.

    The blocks are the same whatever sizes the rows are taken in, so the noise of a sample
    does not depend on the batch size.
    """

    def __init__(
        self,
        shape: torch.Size,
        generator: torch.Generator,
        kind: Callable[..., torch.Tensor],
        dtype: torch.dtype,
    ) -> None:
        self.shape, self.generator, self.kind, self.dtype = tuple(shape), generator, kind, dtype
        self.buffer: torch.Tensor | None = None

    def take(self, m: int) -> torch.Tensor:
        parts = [] if self.buffer is None else [self.buffer]
        have = sum(p.shape[0] for p in parts)
        while have < m:
            parts.append(
                self.kind((_BLOCK, *self.shape), self.generator, device="cpu", dtype=self.dtype)
            )
            have += _BLOCK
        rows = parts[0] if len(parts) == 1 else torch.cat(parts)
        self.buffer = rows[m:] if rows.shape[0] > m else None
        return rows[:m]


@contextlib.contextmanager
def _certifying(model: nn.Module) -> Iterator[None]:
    """Eval mode, no gradients and no input-range check; all restored on exit."""
    has_range = hasattr(model, "input_range")
    saved_range = getattr(model, "input_range", None)
    try:
        if has_range:
            setattr(model, "input_range", None)  # noqa: B010  (noisy images leave [0, 1])
        with kept_modes(model, eval=True), torch.no_grad():
            yield
    finally:
        if has_range:
            setattr(model, "input_range", saved_range)  # noqa: B010
