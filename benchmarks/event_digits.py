"""Train a small event SNN on the embedded event digits, then attack it (cheap settings).

Prints the clean accuracy and rs.evaluate's robust accuracy (protocol "paper": FGSM and
PGD-7) on binary event frames, for SpikingJelly multi-step and snnTorch step-by-step
versions of the same architecture. Usage: python benchmarks/event_digits.py [epochs]
"""

from __future__ import annotations

import sys
import time

import snntorch as snn
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import nn

import robust_spikes as rs
from robust_spikes.encoders import Frames

NUM_STEPS = 6


def spikingjelly_net() -> nn.Module:
    def lif() -> nn.Module:
        return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan())

    net = nn.Sequential(
        layer.Conv2d(2, 8, 3, padding=1), lif(), layer.MaxPool2d(2),
        layer.Conv2d(8, 16, 3, padding=1), lif(), layer.MaxPool2d(2),
        layer.Flatten(), layer.Linear(16 * 4 * 4, 10),
    )  # fmt: skip
    functional.set_step_mode(net, "m")
    return net


def snntorch_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1), snn.Leaky(beta=0.5, init_hidden=True), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), snn.Leaky(beta=0.5, init_hidden=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    )  # fmt: skip


def main(epochs: int = 10) -> None:
    torch.manual_seed(0)
    train = rs.data.event_digits("train", num_steps=NUM_STEPS, binary=True)
    test = rs.data.event_digits("test", num_steps=NUM_STEPS, binary=True)
    x, y = test.frames[:200], test.labels[:200]
    for name, build in (("spikingjelly", spikingjelly_net), ("snntorch", snntorch_net)):
        torch.manual_seed(0)
        net = build()
        model = rs.SpikingClassifier(net, num_steps=NUM_STEPS, encoder=Frames())
        optimizer = torch.optim.Adam(net.parameters(), lr=5e-3)
        start = time.perf_counter()
        net.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(train)).split(64):
                loss = F.cross_entropy(model(train.frames[idx]), train.labels[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        net.eval()
        trained = time.perf_counter() - start
        report = rs.evaluate(model, (x, y), eps=[0.05, 0.1], protocol="paper", progress=False)
        robust = {eps: r["worst"] for eps, r in report.robust_accuracy.items()}
        print(
            f"{name}: trained {epochs} epochs in {trained:.0f} s; clean "
            f"{report.clean_accuracy:.1%} on {report.num_samples} test digits; robust "
            + ", ".join(f"{acc:.1%} at eps={eps}" for eps, acc in robust.items())
            + " (worst of FGSM, PGD-7)"
            + f" ({time.perf_counter() - start - trained:.0f} s)"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
