"""Robust ANN-to-SNN conversion on the 8x8 digits: ANN, converted SNN, fine-tuned SNN.

For each seed: trains a conv ANN (Conv(1->16,3)-BN-ReLU-MaxPool-Linear(256->64)-ReLU-
Linear(64->10)) with PGD adversarial training (eps 0.1, 5 steps of 0.1/3, 10 epochs,
Adam 1e-3, batch 64), converts it with ``rs.conversion.convert`` (IF neurons, reset by
subtraction, 99.7th percentile, ``--scale``, 20 calibration steps on 256 training
images) and fine-tunes it with ``rs.conversion.robust_finetune`` (R-FGSM on TRADES, eps
0.1, alpha 0.05, ``--finetune-epochs``, ``--lr``). Prints a Markdown table of clean and
PGD robust accuracy on the 450 test digits at ``--num-steps`` (torchattacks PGD,
``--eps``, alpha eps/4, 10 steps, random start, global seed 0 before each attack), then
the clean accuracy of a plainly trained ANN's conversion (scale 1) at 8, 32 and 128 steps.

    python benchmarks/conversion_digits.py [--seeds 0 1 2] [--targets snntorch spikingjelly]
        [--eps 0.1] [--scale 0.3] [--num-steps 8] [--finetune-epochs 5] [--lr 0.05]

The fine-tuning's robustness claim lives here, not in tests/test_conversion.py
(accuracy after training differs from one CPU to another), whose frozen PGD-trained
ANN (tests/data/ann-adv.pt) follows this recipe with seed 0.
"""

from __future__ import annotations

import argparse
import time

import torch
import torchattacks
from torch import nn

import robust_spikes as rs
from robust_spikes.conversion import convert, robust_finetune


def build_ann(channels: int = 16, hidden: int = 64) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(channels * 16, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def pgd_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    torch.manual_seed(0)  # torchattacks' random start draws from the global RNG
    attack = torchattacks.PGD(model.eval(), eps=eps, alpha=eps / 4, steps=10, random_start=True)
    return accuracy(model, attack(x, y), y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--targets", nargs="+", default=["snntorch", "spikingjelly"])
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--scale", type=float, default=0.3)
    parser.add_argument("--num-steps", type=int, default=8)
    parser.add_argument("--finetune-epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args()
    train, test = rs.data.digits("train"), rs.data.digits("test")
    x, y, x_test, y_test = train.images, train.labels, test.images, test.labels
    eps = args.eps

    print(f"\nPGD-10 at eps {eps:g}, {args.num_steps} steps, scale {args.scale:g}\n")
    print(
        "| seed | target | ANN clean | ANN PGD | SNN clean | SNN PGD | fine-tuned clean "
        "| fine-tuned PGD | margin | fine-tune s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        torch.manual_seed(seed)
        ann = build_ann()
        adversary = rs.training.PGD(eps, alpha=eps / 3, steps=5)
        rs.training.fit(
            ann, (x, y), epochs=10, batch_size=64, adversary=adversary, seed=seed, progress=False
        )
        ann.eval()
        ann_row = (accuracy(ann, x_test, y_test), pgd_accuracy(ann, x_test, y_test, eps))
        for target in args.targets:
            snn = convert(ann, x[:256], target=target, scale=args.scale, calibration_steps=20)
            model = rs.SpikingClassifier(snn, args.num_steps)
            plain = (accuracy(model, x_test, y_test), pgd_accuracy(model, x_test, y_test, eps))
            start = time.perf_counter()
            robust_finetune(
                model,
                (x, y),
                eps=eps,
                alpha=eps / 2,
                epochs=args.finetune_epochs,
                lr=args.lr,
                seed=seed,
                progress=False,
            )
            took = time.perf_counter() - start
            tuned = (accuracy(model, x_test, y_test), pgd_accuracy(model, x_test, y_test, eps))
            print(
                f"| {seed} | {target} | {ann_row[0]:.3f} | {ann_row[1]:.3f} | {plain[0]:.3f} | "
                f"{plain[1]:.3f} | {tuned[0]:.3f} | {tuned[1]:.3f} | {tuned[1] - plain[1]:+.3f} "
                f"| {took:.1f} |",
                flush=True,
            )

    print("\nClean accuracy of a plainly trained ANN's conversion (scale 1, seed 0)\n")
    print("| target | ANN | 8 steps | 32 steps | 128 steps |")
    print("|---|---|---|---|---|")
    torch.manual_seed(0)
    ann = build_ann()
    rs.training.fit(ann, (x, y), epochs=10, batch_size=64, seed=0, progress=False)
    ann.eval()
    for target in args.targets:
        snn = convert(ann, x[:256], target=target, calibration_steps=20)
        row = [accuracy(rs.SpikingClassifier(snn, t), x_test, y_test) for t in (8, 32, 128)]
        print(
            f"| {target} | {accuracy(ann, x_test, y_test):.3f} | "
            + " | ".join(f"{a:.3f}" for a in row)
            + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
