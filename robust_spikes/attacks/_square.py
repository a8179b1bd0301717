"""Square Attack (Linf) with per-sample windows, batched proposals and side-by-side restarts.

Square (Andriushchenko et al., ECCV 2020) is a score-based random search: from a
vertical-stripe start at the corners of the eps-ball, each step proposes to reset one
randomly placed square window of side ``s`` to ``x +- eps`` (one sign per channel) and
keeps the proposal if the margin loss drops. The window's area, a fraction ``p`` of the
image, shrinks on a fixed schedule of the query count.

Per-sample windows are the paper's algorithm (torchattacks 3.5.1 draws one window per
iteration for the whole batch). Two additions make it fast on small inputs, where a
spiking network's forward pass costs nearly the same for 1 or 100 images on a CPU
(per-time-step Python overhead):

* each step evaluates ``proposals`` candidates per sample in one batched forward pass and
  keeps the best (ties accepted, so integer spike-count margins can drift along their
  plateaus); a step costs ``proposals`` queries of the per-sample budget, so the budget
  means what it means in the paper;
* the budget is split into ``restarts`` independent searches run side by side.

On larger inputs (more than ``SMALL_INPUT`` values per sample) the forward pass is
compute-bound and both default to 1: the paper's search.

On those inputs a search that would take long eager runs its queries through the model's
compiled forward pass (:meth:`~robust_spikes.SpikingClassifier.compiled_inference`, 3-6x
faster per query on an MNIST conv SNN on 2 CPU cores), checked once against eager.

A sample leaves the search as soon as it is misclassified. Random draws come from the
attack's own generator, seeded by ``seed``; the global RNG is not touched.
"""

from __future__ import annotations

import contextlib
import math
import time

import torch
from torch import nn
from torchattacks.attack import Attack

from robust_spikes._checks import check_positive_int

__all__ = ["CHAIN", "COMPILE_PAYS", "SMALL_INPUT", "Square", "p_schedule", "window"]

# Batched proposals and side-by-side restarts pay where a forward pass costs about the
# same for 1 or 100 candidates: small inputs (up to SMALL_INPUT values per sample). Larger
# inputs make the forward compute-bound, and Square then runs as the paper does.
SMALL_INPUT = 256
CHAIN = 1250  # most queries of one search on small inputs; longer budgets run as restarts
# Seconds an eager search must be expected to take (from its first query) before its
# queries go through a compiled forward pass: compiling costs 10-30 s on 2 CPU cores.
COMPILE_PAYS = 40.0

_STAGES = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(p_init: float, query: int, budget: int) -> float:
    """The window area fraction at ``query`` of ``budget`` (Andriushchenko et al.'s
    piecewise schedule, defined on 10,000 queries and rescaled to ``budget``)."""
    it = int(query / budget * 10000)
    return p_init / 2 ** sum(it > stage for stage in _STAGES)


def window(p: float, h: int, w: int) -> tuple[int, int]:
    """Height and width of a window of area fraction ``p`` of an ``h x w`` image: a square
    of side ``round(sqrt(p * h * w))`` within ``[1, min(h, w) - 1]`` (the paper's), or on a
    one-row (one-column) input a segment of ``p`` of its length within ``[1, length - 1]``."""
    if h == 1 or w == 1:
        length = max(h, w)
        side = min(max(round(p * length), 1), max(length - 1, 1))
        return (1, side) if h == 1 else (side, 1)
    side = min(max(round(math.sqrt(p * h * w)), 1), h - 1, w - 1)
    return side, side


class Square(Attack):
    """Untargeted Linf Square Attack with per-sample windows and batched proposals.

    Args:
        model: maps images ``[N, C, H, W]`` in [0, 1] to logits ``[N, K]``.
        eps: Linf radius in the [0, 1] image scale.
        n_queries: queries per sample, shared equally by its restarts (each restart's
            stripe-start query included).
        proposals: candidates per sample evaluated in one forward pass per step;
            ``None``: 8 on small inputs (``C * H * W <= SMALL_INPUT``), else 1.
        restarts: independent searches per sample, run side by side in one batch (the
            copy with the lowest margin is returned); ``None``: on small inputs enough
            for searches of at most ``CHAIN`` queries, else 1.
        p_init: initial window area as a fraction of the image.
        seed: seeds the attack's own generator.
        compile: run the queries through the model's ``compiled_inference()`` (a
            :class:`~robust_spikes.SpikingClassifier` has one): ``None`` (default) where
            the input is not small and the search, timed on its first query, would take
            over ``COMPILE_PAYS`` seconds eager; ``False`` never; ``True`` always.

    Shape:
        ``images``: ``[N, C, H, W]`` in [0, 1], ``labels``: ``[N]`` -> ``[N, C, H, W]``,
        within ``eps`` of ``images`` and in [0, 1].

    After a call, :attr:`queries` holds the queries each sample used, summed over its
    restarts (``[N]``).

    Example:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        >>> x, y = torch.rand(4, 1, 8, 8), torch.arange(4)
        >>> x_adv = Square(net, eps=0.1, n_queries=40)(x, y)
        >>> x_adv.shape, bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
        (torch.Size([4, 1, 8, 8]), True)
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        n_queries: int = 5000,
        *,
        proposals: int | None = None,
        restarts: int | None = None,
        p_init: float = 0.8,
        seed: int = 0,
        compile: bool | None = None,
    ) -> None:
        super().__init__("Square", model)
        if not (isinstance(eps, int | float) and eps > 0):
            raise ValueError(f"eps must be a positive number, got {eps!r}")
        if not 0 < p_init <= 1:
            raise ValueError(f"p_init must be in (0, 1], got {p_init!r}")
        self.eps, self.p_init, self.seed = float(eps), float(p_init), int(seed)
        self.n_queries = check_positive_int("n_queries", n_queries)
        self.proposals = None if proposals is None else check_positive_int("proposals", proposals)
        self.restarts = None if restarts is None else check_positive_int("restarts", restarts)
        if compile not in (None, True, False):
            raise ValueError(f"compile must be True, False or None, got {compile!r}")
        self.compile = compile
        self.supported_mode = ["default"]
        self.queries = torch.zeros(0, dtype=torch.long)

    def _margin(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = self.get_logits(x).float()
        true = logits.gather(1, y[:, None]).squeeze(1)
        other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
        return true - other

    def _compiles(self, first_query: float, steps: float, size: int) -> bool:
        """Whether the search's queries go through the model's compiled forward pass."""
        if self.compile is False or not callable(getattr(self.model, "compiled_inference", None)):
            return False
        if self.compile:
            return True
        return size > SMALL_INPUT and first_query * steps > COMPILE_PAYS

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(
                f"Square needs images [N, C, H, W], got shape {tuple(images.shape)}; view "
                "features [N, F] as [N, 1, 1, F] (attacks._views.ImageView), fold event "
                "frames [N, T, C, H, W] with encoders.Frames(channels=C)"
            )
        x = images.clone().detach().to(self.device)
        y = labels.clone().detach().to(self.device)
        small = x[0].numel() <= SMALL_INPUT
        k = self.proposals or (8 if small else 1)
        r = self.restarts or (-(-self.n_queries // CHAIN) if small else 1)
        n, budget = x.shape[0], max(self.n_queries // r, 1)
        best, margin, queries = self._search(x.repeat(r, 1, 1, 1), y.repeat(r), k, budget)
        # per sample, the copy (restart) with the lowest margin; queries summed over copies
        pick = margin.view(r, n).argmin(0)
        self.queries = queries.view(r, n).sum(0)
        return (
            best.view(r, n, *x.shape[1:])[pick, torch.arange(n, device=pick.device)]
            .detach()
            .clone()
        )

    def _search(
        self, x: torch.Tensor, y: torch.Tensor, k: int, budget: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, c, h, w = x.shape
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        eps = self.eps
        with torch.inference_mode(), contextlib.ExitStack() as stack:
            stripes = torch.randint(0, 2, (n, c, 1, w), generator=gen, device=x.device)
            best = (x + eps * (2.0 * stripes - 1)).clamp(0, 1)
            start = time.perf_counter()
            margin = self._margin(best, y)
            if margin.is_cuda:  # the first query's time, not its launch
                torch.cuda.synchronize(margin.device)
            if self._compiles(time.perf_counter() - start, budget / k, x[0].numel()):
                stack.enter_context(self.model.compiled_inference())
            queries = torch.ones(n, dtype=torch.long, device=x.device)
            rows = torch.arange(h, device=x.device)
            cols = torch.arange(w, device=x.device)
            used = 1
            while used < budget:
                alive = (margin > 0).nonzero().flatten()
                if alive.numel() == 0:
                    break
                k_now = min(k, budget - used)
                sh, sw = window(p_schedule(self.p_init, used, budget), h, w)
                m = alive.numel() * k_now
                top = torch.randint(0, h - sh + 1, (m, 1, 1, 1), generator=gen, device=x.device)
                left = torch.randint(0, w - sw + 1, (m, 1, 1, 1), generator=gen, device=x.device)
                signs = torch.randint(0, 2, (m, c, 1, 1), generator=gen, device=x.device)
                inside = ((rows.view(1, 1, h, 1) >= top) & (rows.view(1, 1, h, 1) < top + sh)) & (
                    (cols.view(1, 1, 1, w) >= left) & (cols.view(1, 1, 1, w) < left + sw)
                )
                x_rep = x[alive].repeat_interleave(k_now, 0)
                corner = x_rep + eps * (2.0 * signs - 1)
                candidate = torch.where(inside, corner, best[alive].repeat_interleave(k_now, 0))
                candidate = candidate.clamp(0, 1)
                cand_margin = self._margin(candidate, y[alive].repeat_interleave(k_now, 0))
                cand_margin = cand_margin.view(-1, k_now)
                low, pick = cand_margin.min(1)
                better = low <= margin[alive]
                chosen = candidate.view(-1, k_now, c, h, w)[
                    torch.arange(alive.numel(), device=pick.device), pick
                ]
                take = alive[better]
                best[take] = chosen[better]
                margin[take] = low[better]
                queries[alive] += k_now
                used += k_now
        return best, margin, queries
