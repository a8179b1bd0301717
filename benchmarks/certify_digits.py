"""Certified l2 robustness of a spiking network on the 8x8 digits (Cohen et al. CERTIFY).

Trains a small snnTorch conv SNN (Conv(1->16,3)-LIF-MaxPool-Linear(256->10)-LIF, T=4) on
the digits with Gaussian noise augmentation at the smoothing level ``sigma`` (without it
the smoothed classifier abstains almost everywhere), wraps it in ``SpikingClassifier``,
and certifies the first test images with ``robust_spikes.evaluation.certify``. Prints a
Markdown table of certified accuracy at l2 radii (image scale [0, 1]) next to the clean
accuracy of the base model and of the smoothed classifier (PREDICT), the abstain rate
and wall times.

    python benchmarks/certify_digits.py [--sigma 0.25] [--num-samples 100] [--epochs 30]
        [--n0 100] [--n 1000] [--alpha 0.001] [--batch-size 1000] [--seed 0]

With n = 1000 and alpha = 0.001 no radius can exceed sigma * Phi^-1(alpha^(1/n)), about
2.46 sigma (0.62 at sigma = 0.25).
"""

from __future__ import annotations

import argparse
import statistics
import time

import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn

import robust_spikes as rs
from robust_spikes.evaluation import certify, predict

RADII = (0.0, 0.25, 0.5, 0.75, 1.0)
NUM_STEPS = 4


def build_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 10),
        snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )


def train(
    model: rs.SpikingClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    epochs: int,
    seed: int,
) -> None:
    """Adam on cross-entropy of noisy images x + sigma * N(0, I) (fresh noise every batch)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            noisy = x[idx] + sigma * torch.randn(x[idx].shape, generator=g)
            loss = F.cross_entropy(model(noisy), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--num-samples", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    train_set, test_set = rs.data.digits("train"), rs.data.digits("test")
    torch.manual_seed(args.seed)  # weight initialisation
    model = rs.SpikingClassifier(build_net(), NUM_STEPS, input_range=None)
    start = time.perf_counter()
    train(model, train_set.images, train_set.labels, args.sigma, args.epochs, args.seed)
    train_s = time.perf_counter() - start
    model.input_range = (0.0, 1.0)  # certify lifts it while it adds noise

    x, y = test_set.images[: args.num_samples], test_set.labels[: args.num_samples]
    with torch.no_grad():
        base_all = (model(test_set.images).argmax(1) == test_set.labels).float().mean()
        base = (model(x).argmax(1) == y).float().mean()

    start = time.perf_counter()
    result = certify(
        model,
        test_set,
        sigma=args.sigma,
        n0=args.n0,
        n=args.n,
        alpha=args.alpha,
        batch_size=args.batch_size,
        max_samples=args.num_samples,
        seed=args.seed,
    )
    certify_s = time.perf_counter() - start
    start = time.perf_counter()
    smoothed = predict(
        model, x, sigma=args.sigma, n=args.n, alpha=args.alpha, batch_size=args.batch_size
    )
    predict_s = time.perf_counter() - start
    predict_acc = float((smoothed == y).float().mean())
    predict_abstain = float((smoothed < 0).float().mean())

    print(
        f"Settings: sigma={args.sigma}, n0={args.n0}, n={args.n}, alpha={args.alpha}, "
        f"batch_size={args.batch_size}, seed={args.seed}, {len(result)} test images, "
        f"snnTorch conv SNN T={NUM_STEPS} trained {args.epochs} epochs with Gaussian noise "
        f"({len(train_set)} images), torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print()
    print("| l2 radius | " + " | ".join(f"{r:g}" for r in RADII) + " |")
    print("|---|" + "---:|" * len(RADII))
    accs = [result.certified_accuracy(r) for r in RADII]
    print("| certified accuracy | " + " | ".join(f"{100 * a:.1f}%" for a in accs) + " |")
    print()
    radii = [r.radius for r in result.records if r.prediction >= 0]
    largest = args.sigma * statistics.NormalDist().inv_cdf(args.alpha ** (1 / args.n))
    rows = {
        f"base model clean accuracy ({len(y)} images)": f"{100 * float(base):.1f}%",
        f"base model clean accuracy (all {len(test_set)} test images)": (
            f"{100 * float(base_all):.1f}%"
        ),
        "smoothed classifier accuracy, CERTIFY (radius >= 0)": f"{100 * accs[0]:.1f}%",
        f"smoothed classifier accuracy, PREDICT (n={args.n})": f"{100 * predict_acc:.1f}%",
        "abstain rate, CERTIFY / PREDICT": (
            f"{100 * result.abstain_rate:.1f}% / {100 * predict_abstain:.1f}%"
        ),
        "median certified radius (non-abstained)": (
            f"{statistics.median(radii):.3f}" if radii else "-"
        ),
        "largest radius possible at this n and alpha": f"{largest:.3f}",
        "wall time: train / certify / predict": (
            f"{train_s:.1f} s / {certify_s:.1f} s / {predict_s:.1f} s"
        ),
    }
    print("| quantity | value |")
    print("|---|---:|")
    for name, value in rows.items():
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
