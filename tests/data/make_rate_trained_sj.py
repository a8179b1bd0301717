"""Train the frozen SpikingJelly network of ``tests/test_flags.py`` (run once, commit the .pt).

The network and the loop follow SpikingJelly's own Fashion-MNIST tutorial
(``spikingjelly/activation_based/examples/conv_fashion_mnist.py``): a multi-step CSNN of
conv, batch norm and IF neurons with the ATan surrogate, the static image repeated over
``T`` steps, the loss the MSE between the output layer's firing rate and the one-hot
label, and ``functional.reset_net`` after every batch. Such a network is read by its
firing rate (``readout="count"``); its output membrane means nothing.

    python tests/data/make_rate_trained_sj.py   # writes tests/data/sj_rate_digits.pt
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import nn

T = 4
PATH = Path(__file__).with_name("sj_rate_digits.pt")


def build() -> nn.Sequential:
    """The tutorial's CSNN, shrunk to the 8x8 digits."""
    net = nn.Sequential(
        layer.Conv2d(1, 8, kernel_size=3, padding=1, bias=False),
        layer.BatchNorm2d(8),
        neuron.IFNode(surrogate_function=surrogate.ATan()),
        layer.MaxPool2d(2, 2),
        layer.Flatten(),
        layer.Linear(8 * 4 * 4, 10, bias=False),
        neuron.IFNode(surrogate_function=surrogate.ATan()),
    )
    functional.set_step_mode(net, "m")
    return net


def firing_rate(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """SpikingJelly's own decision: the output layer's firing rate over ``T`` steps."""
    x_seq = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    fr = net(x_seq).mean(0)
    functional.reset_net(net)
    return fr


def main() -> None:
    import robust_spikes as rs

    torch.manual_seed(0)
    train, test = rs.data.digits("train"), rs.data.digits("test")
    net = build()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(15):
        net.train()
        for idx in torch.randperm(len(train), generator=generator).split(64):
            fr = firing_rate(net, train.images[idx])
            loss = F.mse_loss(fr, F.one_hot(train.labels[idx], 10).float())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        accuracy = (firing_rate(net, test.images).argmax(1) == test.labels).float().mean()
    print(f"test accuracy by firing rate: {float(accuracy):.3f}")
    torch.save(net.state_dict(), PATH)
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
