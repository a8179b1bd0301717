"""Training adversaries: FGSM, PGD, TRADES and R-FGSM (on the TRADES objective).

Each adversary has ``perturb(model, x, y) -> x_adv``, which generates examples with the
model in eval mode (its original mode restored afterwards) and differentiates with
respect to the input only (parameter ``.grad`` is never touched), and
``loss(model, x, y) -> scalar``, the training objective that :func:`~robust_spikes.
training.fit` minimises. All randomness comes from a ``torch.Generator``: the one passed
as ``generator``, else the model's ``generator`` attribute, else the adversary's own
generator seeded with 0; never the global RNG.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from robust_spikes import _random
from robust_spikes._checks import check_positive_int
from robust_spikes._modes import kept_modes

__all__ = ["FGSM", "PGD", "RFGSM", "TRADES", "Adversary"]


def _check_real(name: str, value: Any, low: float, high: float, *, low_open: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    inside = (low < v if low_open else low <= v) and v <= high
    if not (ok and math.isfinite(v) and inside):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be a number in {bracket}{low:g}, {high:g}], got {value!r}")
    return v


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode, then restore each one's own mode."""
    with kept_modes(model, eval=True):
        yield


def _input_grad(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Gradient of the scalar ``fn(x)`` with respect to ``x`` alone."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(x), x)
    return grad


def _project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Clip ``x_adv`` to the L-inf ball of radius ``eps`` around ``x`` and to [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0).detach()


def _kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(p) || softmax(q))``, averaged over the batch."""
    return F.kl_div(
        F.log_softmax(q_logits, dim=1),
        F.log_softmax(p_logits, dim=1),
        reduction="batchmean",
        log_target=True,
    )


class Adversary:
    """Base class of the training adversaries (see the module docstring).

    Args:
        eps: L-inf radius in the [0, 1] image scale, in (0, 1].
        generator: source of random starts and noise; default the model's
            ``generator`` attribute, else a generator of the adversary seeded with 0.

    Raises:
        ValueError: ``eps`` outside (0, 1].
        TypeError: ``generator`` is not a ``torch.Generator``.

    Shape:
        :meth:`perturb`: x: ``[N, C, H, W]`` (any ``[N, ...]`` the model takes) in [0, 1],
        y: ``[N]`` int64 class labels; returns ``x_adv`` of the shape of ``x``, in [0, 1]
        and within ``eps`` of ``x``. :meth:`loss`: a 0-dim tensor.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
        >>> adversary = FGSM(0.1)
        >>> isinstance(adversary, Adversary), adversary.eps
        (True, 0.1)
        >>> adversary.perturb(net, x, y).shape, adversary.loss(net, x, y).shape
        (torch.Size([2, 1, 2, 2]), torch.Size([]))
        >>> adversary.generator_for(net) is adversary.generator_for(net)  # its own, seeded
        True
    """

    def __init__(self, eps: float, *, generator: torch.Generator | None = None) -> None:
        self.eps = _check_real("eps", eps, 0.0, 1.0, low_open=True)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.generator = generator
        self._own = torch.Generator().manual_seed(0)

    def generator_for(self, model: nn.Module) -> torch.Generator:
        """The generator used against ``model`` (argument, model's, or the adversary's own)."""
        if self.generator is not None:
            return self.generator
        model_generator = getattr(model, "generator", None)
        if isinstance(model_generator, torch.Generator):
            return model_generator
        return self._own

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Adversarial examples within ``eps`` of ``x`` and in [0, 1] (no graph attached).

        Shape:
            x: ``[N, C, H, W]`` in [0, 1]; y: ``[N]``; returns the shape of ``x``.
        """
        with _eval_mode(model):
            return self._perturb(model, x.detach(), y)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The scalar training objective of this adversary (model in its current mode)."""
        return self.loss_and_logits(model, x, y)[0]

    def loss_and_logits(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`loss` and, when computing it gave them for free, the clean logits
        (detached) from which :func:`~robust_spikes.training.fit` reads the training
        accuracy; ``None`` otherwise (``fit`` then runs one more forward pass)."""
        raise NotImplementedError

    def _perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _noise(self, model: nn.Module, x: torch.Tensor, kind: str) -> torch.Tensor:
        draw = _random.rand if kind == "uniform" else _random.randn
        return draw(x.shape, self.generator_for(model), device=x.device, dtype=x.dtype)


class PGD(Adversary):
    """Projected gradient descent on the cross-entropy (Madry et al. 2018).

    Args:
        eps: L-inf radius in the [0, 1] image scale, in (0, 1].
        alpha: step size, in (0, 1].
        steps: number of steps (a positive int).
        random_start: start from a uniform point of the eps ball.
        generator: see :class:`Adversary`.

    Raises:
        ValueError: bad ``eps``, ``alpha`` or ``steps``.

    Shape:
        :meth:`perturb`: x: ``[N, C, H, W]`` (any ``[N, ...]`` the model takes) in [0, 1],
        y: ``[N]`` int64 class labels; returns ``x_adv`` of the shape of ``x``, in [0, 1]
        and within ``eps`` of ``x``. :meth:`loss`: a 0-dim tensor.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
        >>> x_adv = PGD(0.1, alpha=0.05, steps=3).perturb(net, x, y)
        >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
        True
    """

    def __init__(
        self,
        eps: float,
        alpha: float,
        steps: int,
        random_start: bool = True,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(eps, generator=generator)
        self.alpha = _check_real("alpha", alpha, 0.0, 1.0, low_open=True)
        self.steps = check_positive_int("steps", steps)
        self.random_start = bool(random_start)

    def loss_and_logits(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Cross-entropy on the adversarial examples; without a random start the first
        step's forward pass is on ``x`` itself, and its logits come back too."""
        seen: list[torch.Tensor] = []
        with _eval_mode(model):
            x_adv = self._perturb(model, x.detach(), y, seen)
        return F.cross_entropy(model(x_adv), y), (seen[0] if seen else None)

    def _perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        seen: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        x_adv = x
        if self.random_start:
            x_adv = _project(x + (2 * self._noise(model, x, "uniform") - 1) * self.eps, x, self.eps)

        def objective(z: torch.Tensor) -> torch.Tensor:
            logits = model(z)
            if seen is not None and not seen and not self.random_start:
                seen.append(logits.detach())  # the clean logits, from the first step
            return F.cross_entropy(logits, y)

        for _ in range(self.steps):
            grad = _input_grad(objective, x_adv)
            x_adv = _project(x_adv + self.alpha * grad.sign(), x, self.eps)
        return x_adv


class FGSM(PGD):
    """The fast gradient sign method: one step of size ``eps`` on the cross-entropy.

    Args:
        eps: L-inf radius in the [0, 1] image scale, in (0, 1].
        generator: unused (FGSM is deterministic); accepted for a uniform interface.

    Raises:
        ValueError: ``eps`` outside (0, 1].

    Shape:
        :meth:`perturb`: x: ``[N, C, H, W]`` (any ``[N, ...]`` the model takes) in [0, 1],
        y: ``[N]`` int64 class labels; returns ``x_adv`` of the shape of ``x``, in [0, 1]
        and within ``eps`` of ``x``. :meth:`loss`: a 0-dim tensor.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
        >>> FGSM(0.1).perturb(net, x, y).shape
        torch.Size([2, 1, 2, 2])
    """

    def __init__(self, eps: float, *, generator: torch.Generator | None = None) -> None:
        super().__init__(eps, eps, 1, random_start=False, generator=generator)

    def __repr__(self) -> str:
        return f"FGSM(eps={self.eps:g})"


class TRADES(Adversary):
    """TRADES (Zhang et al. 2019): ``CE(f(x), y) + beta * KL(f(x) || f(x_adv))``.

    ``x_adv`` starts at ``x`` plus ``0.001 * N(0, 1)`` noise and takes ``steps`` signed
    gradient steps of size ``alpha`` that increase ``KL(f(x) || f(x_adv))``.

    Args:
        eps: L-inf radius in the [0, 1] image scale, in (0, 1].
        beta: weight of the KL term (>= 0).
        steps: number of steps (a positive int).
        alpha: step size; default ``eps / 4``.
        generator: see :class:`Adversary`.

    Raises:
        ValueError: bad ``eps``, ``beta``, ``steps`` or ``alpha``.

    Shape:
        :meth:`perturb`: x: ``[N, C, H, W]`` (any ``[N, ...]`` the model takes) in [0, 1],
        y: ``[N]`` int64 class labels; returns ``x_adv`` of the shape of ``x``, in [0, 1]
        and within ``eps`` of ``x``. :meth:`loss`: a 0-dim tensor.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
        >>> TRADES(0.1, steps=2).loss(net, x, y).dim()
        0
    """

    def __init__(
        self,
        eps: float,
        beta: float = 6.0,
        steps: int = 10,
        alpha: float | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(eps, generator=generator)
        self.beta = _check_real("beta", beta, 0.0, math.inf, low_open=False)
        self.steps = check_positive_int("steps", steps)
        alpha = self.eps / 4 if alpha is None else alpha
        self.alpha = _check_real("alpha", alpha, 0.0, 1.0, low_open=True)

    def loss_and_logits(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``CE(f(x), y) + beta * KL(f(x) || f(x_adv))`` and the clean logits ``f(x)``."""
        x_adv = self.perturb(model, x, y)
        logits = model(x)
        loss = F.cross_entropy(logits, y) + self.beta * _kl(logits, model(x_adv))
        return loss, logits.detach()

    def _perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            clean = model(x)
        x_adv = _project(x + 0.001 * self._noise(model, x, "normal"), x, self.eps)
        for _ in range(self.steps):
            grad = _input_grad(lambda z: _kl(clean, model(z)), x_adv)
            x_adv = _project(x_adv + self.alpha * grad.sign(), x, self.eps)
        return x_adv


class RFGSM(Adversary):
    """Single-step R-FGSM on the TRADES objective (Özdenizci & Legenstein 2024).

    ``x' = x + alpha * sign(N(0, 1))``, then one step of size ``eps - alpha`` along the
    sign of the gradient of ``KL(f(x) || f(x'))``, projected to the eps ball and [0, 1].
    The loss is ``CE(f(x), y) + beta * KL(f(x') || f(x))``.

    Args:
        eps: L-inf radius in the [0, 1] image scale, in (0, 1].
        alpha: size of the random step, in [0, eps].
        beta: weight of the KL term (>= 0), default 2.
        generator: see :class:`Adversary`.

    Raises:
        ValueError: bad ``eps``, ``alpha`` or ``beta``.

    Shape:
        :meth:`perturb`: x: ``[N, C, H, W]`` (any ``[N, ...]`` the model takes) in [0, 1],
        y: ``[N]`` int64 class labels; returns ``x_adv`` of the shape of ``x``, in [0, 1]
        and within ``eps`` of ``x``. :meth:`loss`: a 0-dim tensor.

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
        >>> RFGSM(2 / 255, 1 / 255).perturb(net, x, y).shape
        torch.Size([2, 1, 2, 2])
    """

    def __init__(
        self,
        eps: float,
        alpha: float,
        beta: float = 2.0,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(eps, generator=generator)
        self.alpha = _check_real("alpha", alpha, 0.0, self.eps, low_open=False)
        self.beta = _check_real("beta", beta, 0.0, math.inf, low_open=False)

    def loss_and_logits(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``CE(f(x), y) + beta * KL(f(x') || f(x))`` and the clean logits ``f(x)``."""
        x_adv = self.perturb(model, x, y)
        logits = model(x)
        loss = F.cross_entropy(logits, y) + self.beta * _kl(model(x_adv), logits)
        return loss, logits.detach()

    def _perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            clean = model(x)
        x_adv = _project(x + self.alpha * self._noise(model, x, "normal").sign(), x, self.eps)
        grad = _input_grad(lambda z: _kl(clean, model(z)), x_adv)
        return _project(x_adv + (self.eps - self.alpha) * grad.sign(), x, self.eps)
