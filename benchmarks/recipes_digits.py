"""PGD robust accuracy bought by each training recipe on the digits, against plain training.

The robustness claims of the recipes live here, not in the tests (accuracy after
training differs from one CPU to another; tests/test_training.py and
tests/test_recipes.py check the recipes' mechanics). Settings: the conv SNN of
tests/helpers.py (Conv(1->8)-Leaky-MaxPool-Linear(128->10)-Leaky, snnTorch, T=4), Adam 5e-3,
batch 64; every recipe and its plain baseline train from the same initial weights for the
same number of epochs. Robust accuracy: torchattacks PGD-10 (step eps/4, random start,
global seed 0) at ``--eps`` on the 450 test digits. Prints one Markdown row per seed and
recipe with the gain over plain training.

    python benchmarks/recipes_digits.py [--seeds 0 1 2 3] [--eps 0.1]
        [--recipes fgsm pgd trades hire] [--epochs 10] [--hire-epochs 20]
"""

from __future__ import annotations

import argparse
import time

import snntorch as snn
import torch
import torchattacks
from torch import nn

import robust_spikes as rs
from robust_spikes.training import FGSM, PGD, TRADES, fit, hire

NUM_STEPS = 4


def build(seed: int) -> rs.SpikingClassifier:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), snn.Leaky(beta=0.9, init_hidden=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )  # fmt: skip
    return rs.SpikingClassifier(net, NUM_STEPS)


def train(recipe: str, seed: int, epochs: int, eps: float) -> rs.SpikingClassifier:
    model = build(seed)
    x, y = rs.data.digits("train").images, rs.data.digits("train").labels
    kwargs = {
        "epochs": epochs,
        "optimizer": torch.optim.Adam(model.parameters(), lr=5e-3),
        "batch_size": 64,
        "seed": seed,
        "progress": False,
    }
    if recipe == "plain":
        fit(model, (x, y), **kwargs)
    elif recipe == "fgsm":
        fit(model, (x, y), adversary=FGSM(eps), **kwargs)
    elif recipe == "pgd":
        fit(model, (x, y), adversary=PGD(eps, alpha=eps / 2, steps=3), **kwargs)
    elif recipe == "trades":
        fit(model, (x, y), adversary=TRADES(eps, steps=3), **kwargs)
    elif recipe == "hire":
        hire(model, (x, y), periods=2, noise_eps=2 * eps, **kwargs)
    else:
        raise ValueError(f"unknown recipe {recipe!r}")
    return model.eval()


def scores(model: rs.SpikingClassifier, eps: float) -> tuple[float, float]:
    test = rs.data.digits("test")
    torch.manual_seed(0)
    x_adv = torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=10)(test.images, test.labels)
    with torch.no_grad():
        clean = (model(test.images).argmax(1) == test.labels).float().mean().item()
        robust = (model(x_adv).argmax(1) == test.labels).float().mean().item()
    return clean, robust


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--recipes", nargs="+", default=["fgsm", "pgd", "trades", "hire"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hire-epochs", type=int, default=20)
    args = parser.parse_args()
    print(f"PGD-10 at eps {args.eps:g} on the 450 test digits, T={NUM_STEPS}\n")
    print(
        "| seed | recipe | epochs | plain clean | plain robust | clean | robust | gain | train s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for seed in args.seeds:
        baselines: dict[int, tuple[float, float]] = {}
        for recipe in args.recipes:
            epochs = args.hire_epochs if recipe == "hire" else args.epochs
            if epochs not in baselines:
                baselines[epochs] = scores(train("plain", seed, epochs, args.eps), args.eps)
            start = time.perf_counter()
            model = train(recipe, seed, epochs, args.eps)
            seconds = time.perf_counter() - start
            clean, robust = scores(model, args.eps)
            plain_clean, plain_robust = baselines[epochs]
            print(
                f"| {seed} | {recipe} | {epochs} | {plain_clean:.3f} | {plain_robust:.3f} | "
                f"{clean:.3f} | {robust:.3f} | {robust - plain_robust:+.3f} | {seconds:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
