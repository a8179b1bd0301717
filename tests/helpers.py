"""Model builders shared by the tests: real snnTorch and SpikingJelly networks, no mocks."""

from __future__ import annotations

import functools
import os

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
def ann_conv() -> nn.Sequential:
    """A small VGG-style ReLU network for 8x8 digits (conv, batch norm, pooling, dropout)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 32),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(32, 10),
    )


@functools.cache
def _converted(target: str) -> nn.Module:
    torch.manual_seed(0)
    ann = ann_conv()
    x, y, _, _ = digits_tensors()
    rs.training.fit(ann, (x, y), epochs=5, batch_size=64, progress=False)
    return rs.conversion.convert(ann.eval(), x[:256], target=target, calibration_steps=20)


def converted(target: str) -> nn.Module:
    """A fresh copy of a trained ANN converted to ``target`` (the conversion is cached)."""
    import copy

    return copy.deepcopy(_converted(target))


# -------------------------------------------------------------------------------- data
@functools.lru_cache(maxsize=1)
def digits_tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    train, test = rs.data.digits("train"), rs.data.digits("test")
    return train.images, train.labels, test.images, test.labels


@functools.cache
def _trained_state(builder_name: str, readout: str, epochs: int) -> dict[str, torch.Tensor]:
    builder = BUILDERS[builder_name]
    torch.manual_seed(0)
    net = builder()
    model = rs.SpikingClassifier(net, NUM_STEPS, readout=readout)  # type: ignore[arg-type]
    x, y, _, _ = digits_tensors()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: v.clone() for k, v in net.state_dict().items()}


BUILDERS = {
    "snntorch_conv": snntorch_conv,
    "sj_conv_m": lambda: sj_conv("m"),
}


def trained(builder_name: str, readout: str = "membrane", epochs: int = 3) -> nn.Module:
    """A fresh network of the named builder with weights trained on the digits (cached)."""
    net = BUILDERS[builder_name]()
    net.load_state_dict(_trained_state(builder_name, readout, epochs))
    return net
