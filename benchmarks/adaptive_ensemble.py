"""The paper protocol against the adaptive ensemble, and what the ensemble costs.

Trains the demo's convolutional snnTorch SNN on the 8x8 digits, then measures robust
accuracy on the test images at each eps under

* the literature's protocol (METHODS.md, last section): FGSM and PGD-7 with step 0.01
  and a random start, through the model's own surrogate, worst case of the two;
* :class:`robust_spikes.attacks.AdaptiveEnsemble` (cheap-first cascade over gradient
  modes x base attacks, Square on the true forward pass),

and the ensemble's wall time as a multiple of one PGD-20 run on the same images (the
goal: under 3x thanks to the cascade), timed in the same process.

    python benchmarks/adaptive_ensemble.py [--epochs 8] [--num-test 200] [--eps 0.05 0.1]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

import robust_spikes as rs
from robust_spikes.app.demo import build_net
from robust_spikes.attacks import AdaptiveEnsemble

NUM_STEPS = 4


def train(model: nn.Module, epochs: int, seed: int) -> None:
    data = rs.data.digits("train", seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(data), generator=generator).split(128):
            loss = F.cross_entropy(model(data.images[idx]), data.labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) == y


def paper_protocol(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    """Worst case of FGSM and PGD-7 (step 0.01, random start), the model's own surrogate."""
    torch.manual_seed(0)
    survivors = correct(model, x, y)
    for attack in (
        torchattacks.FGSM(model, eps=eps),
        torchattacks.PGD(model, eps=eps, alpha=0.01, steps=7, random_start=True),
    ):
        survivors &= correct(model, attack(x, y), y)
    return float(survivors.float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--num-test", type=int, default=200)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.05, 0.1])
    parser.add_argument("--square-queries", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    model = rs.SpikingClassifier(build_net(), NUM_STEPS)
    train(model.train(), args.epochs, args.seed)
    model.eval()
    test = rs.data.digits("test", seed=args.seed)
    x, y = test.images[: args.num_test], test.labels[: args.num_test]
    clean = float(correct(model, x, y).float().mean())
    print(
        f"digits, snnTorch conv SNN, T={NUM_STEPS}, {args.epochs} epochs, {len(y)} test "
        f"images, clean accuracy {100 * clean:.1f}%, Square {args.square_queries} queries"
    )
    print("\n| eps | paper protocol (FGSM, PGD-7) | adaptive ensemble | ensemble time / PGD-20 |")
    print("|---:|---:|---:|---:|")
    for eps in args.eps:
        paper = paper_protocol(model, x, y, eps)
        start = time.perf_counter()
        torch.manual_seed(0)
        torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / 20, steps=20)(x, y)
        pgd_seconds = time.perf_counter() - start
        ensemble = AdaptiveEnsemble(model, eps, square_queries=args.square_queries)
        start = time.perf_counter()
        ensemble(x, y)
        ensemble_seconds = time.perf_counter() - start
        robust = sum(b is None for b in ensemble.broken_by) / len(y)
        print(
            f"| {eps:g} | {100 * paper:.1f}% | {100 * robust:.1f}% | "
            f"{ensemble_seconds / pgd_seconds:.2f}x ({ensemble_seconds:.1f} s) |"
        )
        counts: dict[str, int] = {}
        for b in ensemble.broken_by:
            if b is not None:
                counts[b] = counts.get(b, 0) + 1
        print(f"|  | broken by: {counts} | | |")
        slowest = sorted(ensemble.seconds.items(), key=lambda kv: -kv[1])[:3]
        print(f"|  | slowest members: {[(k, round(v, 1)) for k, v in slowest]} | | |")


if __name__ == "__main__":
    main()
