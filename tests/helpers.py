"""Model builders shared by the tests: real snnTorch and SpikingJelly networks, no mocks."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import snntorch as snn
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

import robust_spikes as rs

NUM_STEPS = 4


# ----------------------------------------------------------------------------- snnTorch
def snntorch_conv(output: bool = True, beta: float = 0.9) -> nn.Sequential:
    """Conv SNN for 8x8 digits in the idiomatic snnTorch style (init_hidden=True)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        snn.Leaky(beta=beta, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
        snn.Leaky(beta=beta, init_hidden=True, output=output),
    )


class Nested(nn.Module):
    """A user's wrapper holding the Sequential one level down (utils.reset misses it)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.body = nn.ModuleDict({"net": inner})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body["net"](x)


class Tutorial(nn.Module):
    """snnTorch tutorial 5 style: forward loops over time and returns recordings."""

    def __init__(self, num_steps: int = NUM_STEPS, beta: float = 0.9, both: bool = True) -> None:
        super().__init__()
        self.num_steps, self.both = num_steps, both
        self.fc1, self.lif1 = nn.Linear(64, 32), snn.Leaky(beta=beta)
        self.fc2, self.lif2 = nn.Linear(32, 10), snn.Leaky(beta=beta)

    def forward(self, x: torch.Tensor):
        mem1, mem2 = self.lif1.reset_mem(), self.lif2.reset_mem()
        spk_rec, mem_rec = [], []
        for _ in range(self.num_steps):
            spk1, mem1 = self.lif1(self.fc1(x.flatten(1)), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk_rec.append(spk2)
            mem_rec.append(mem2)
        if self.both:
            return torch.stack(spk_rec), torch.stack(mem_rec)
        return torch.stack(mem_rec)


class ExplicitState(nn.Module):
    """One time step per call, state passed in and out explicitly."""

    def __init__(self, beta: float = 0.9) -> None:
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(64, 32), snn.Synaptic(alpha=0.8, beta=beta)
        self.fc2, self.lif2 = nn.Linear(32, 10), snn.Leaky(beta=beta)

    def forward(self, x, syn1=None, mem1=None, mem2=None):
        spk1, syn1, mem1 = self.lif1(self.fc1(x.flatten(1)), syn1, mem1)
        spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
        return spk2, syn1, mem1, mem2


def snntorch_mlp(kind: str = "leaky", output: bool = True) -> nn.Sequential:
    """Two-layer MLP with a chosen snnTorch neuron type (init_hidden=True)."""

    def make(out: bool) -> nn.Module:
        if kind == "leaky":
            return snn.Leaky(beta=0.9, init_hidden=True, output=out)
        if kind == "synaptic":
            return snn.Synaptic(alpha=0.8, beta=0.9, init_hidden=True, output=out)
        if kind == "alpha":
            return snn.Alpha(alpha=0.9, beta=0.8, init_hidden=True, output=out)
        raise ValueError(kind)

    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), make(False), nn.Linear(32, 10), make(output)
    )


# ------------------------------------------------------------------------- SpikingJelly
def sj_node(kind: str = "lif") -> nn.Module:
    if kind == "if":
        return neuron.IFNode()
    if kind == "lif":
        return neuron.LIFNode(tau=2.0)
    if kind == "plif":
        return neuron.ParametricLIFNode(init_tau=2.0)
    raise ValueError(kind)


def sj_conv(step_mode: str = "m", kind: str = "lif", spiking_output: bool = True) -> nn.Sequential:
    """SpikingJelly conv SNN for 8x8 digits."""
    modules: list[nn.Module] = [
        layer.Conv2d(1, 8, 3, padding=1),
        sj_node(kind),
        layer.MaxPool2d(2),
        layer.Flatten(),
        layer.Linear(8 * 4 * 4, 10),
    ]
    if spiking_output:
        modules.append(sj_node(kind))
    net = nn.Sequential(*modules)
    functional.set_step_mode(net, step_mode)
    return net


def sj_seq_to_ann(kind: str = "lif") -> nn.Sequential:
    """Multi-step network built from SeqToANNContainer blocks (SpikingJelly's CIFAR style)."""
    net = nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8)),
        sj_node(kind),
        layer.SeqToANNContainer(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)),
        sj_node(kind),
    )
    functional.set_step_mode(net, "m")
    return net


# ---------------------------------------------------------------------- converted ANNs
def ann_conv(channels: int = 8, hidden: int = 32, dropout: bool = True) -> nn.Sequential:
    """A small VGG-style ReLU network for 8x8 digits (conv, batch norm, pooling, dropout)."""
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(channels * 16, hidden),
        nn.ReLU(),
        *([nn.Dropout(0.1)] if dropout else []),
        nn.Linear(hidden, 10),
    )


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: one ReLU module used twice."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 16, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.pool(x), 1))


@functools.cache
def _converted(target: str) -> nn.Module:
    x, _, _, _ = digits_tensors()
    return rs.conversion.convert(trained_ann("conv"), x[:256], target=target, calibration_steps=20)


def converted(target: str) -> nn.Module:
    """A fresh copy of the frozen trained ANN converted to ``target`` (cached)."""
    import copy

    return copy.deepcopy(_converted(target))


# -------------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=1)
def digits_tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    train, test = rs.data.digits("train"), rs.data.digits("test")
    return train.images, train.labels, test.images, test.labels


# ------------------------------------------------------------------------ frozen weights
# Trained models are not trained during the test run: floating-point results after
# training differ across CPUs (other SIMD kernels), so a threshold on a model trained in
# the session can fail on another machine. tests/data/make_fixtures.py trained each one
# once; the tests load its state_dict. Evaluating a frozen model is still float arithmetic,
# so assertions on it keep wide margins (measured, stated where they are made).
DATA = Path(__file__).resolve().parent / "data"

BUILDERS: dict[str, Callable[[], nn.Module]] = {
    "snntorch_conv": snntorch_conv,
    "sj_conv_m": lambda: sj_conv("m"),
}

ANNS: dict[str, Callable[[], nn.Module]] = {
    "conv": ann_conv,  # 8 epochs of plain training
    "adv": lambda: ann_conv(16, 64, dropout=False),  # PGD-AT at eps 0.1, 10 epochs
    "resnet": TinyResNet,  # 6 epochs of plain training
}


def fixture_name(
    builder_name: str, readout: str = "membrane", epochs: int = 3, seed: int = 0
) -> str:
    """The file (in tests/data/) holding the weights that ``trained`` returns."""
    return f"{builder_name}-{readout}-{epochs}ep-seed{seed}.pt"


@functools.cache
def frozen(filename: str) -> dict[str, torch.Tensor]:
    """A state_dict stored under tests/data/ (written by tests/data/make_fixtures.py)."""
    path = DATA / filename
    if not path.exists():
        raise FileNotFoundError(
            f"frozen test weights {path} are missing: run "
            f"`python tests/data/make_fixtures.py` and commit tests/data/*.pt"
        )
    return torch.load(path, weights_only=True)


def trained(
    builder_name: str, readout: str = "membrane", epochs: int = 3, seed: int = 0
) -> nn.Module:
    """A fresh network of the named builder with frozen weights trained on the digits.

    Trained once by tests/data/make_fixtures.py: Adam 5e-3, batch 64, ``epochs`` epochs,
    loss on ``SpikingClassifier(net, NUM_STEPS, readout=readout)``, init and shuffling
    seeded with ``seed``.
    """
    net = BUILDERS[builder_name]()
    net.load_state_dict(frozen(fixture_name(builder_name, readout, epochs, seed)))
    return net


def trained_ann(name: str) -> nn.Module:
    """A fresh ANN (``ANNS``) with frozen weights trained on the digits, in eval mode."""
    net = ANNS[name]()
    net.load_state_dict(frozen(f"ann-{name}.pt"))
    return net.eval()


class RateInside(nn.Module):
    """An snnTorch net that rate-codes its input inside forward (snntorch.spikegen.rate):
    randomness the model does not declare."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)
        self.lif = snn.Leaky(beta=0.9, init_hidden=True, output=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from snntorch import spikegen

        return self.lif(self.fc(spikegen.rate(x.flatten(1), num_steps=1)[0]))
