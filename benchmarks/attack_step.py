"""One attack step (forward + input gradient, as torchattacks does), timed side by side.

Conv(1->16,3)-LIF-MaxPool-Conv(16->32,3)-LIF-MaxPool-Linear(800->10)-LIF on 1x28x28 inputs,
batch 64, T=8. Variants run round-robin in one process (so machine load drifts affect
all alike) and the script prints medians and ratios to the idiomatic snnTorch loop and
to T x the ANN twin's step. Runs on the GPU too when one is present (``--device cuda``).

    python benchmarks/attack_step.py [--iters 30] [--device auto|cpu|cuda] [--no-compile]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # no busy compile workers

import snntorch as snn
import torch
import torch.nn.functional as F
from snntorch import utils as snn_utils
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

import robust_spikes as rs

T, N, BETA = 8, 64, 0.9


def snntorch_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3),
        snn.Leaky(beta=BETA, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3),
        snn.Leaky(beta=BETA, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(800, 10),
        snn.Leaky(beta=BETA, init_hidden=True, output=True),
    )


def spikingjelly_net() -> nn.Sequential:
    # tau=1/(1-beta), decay_input=False, soft reset: the same dynamics family as snn.Leaky.
    def lif() -> nn.Module:
        return neuron.LIFNode(tau=1 / (1 - BETA), decay_input=False, v_reset=None)

    net = nn.Sequential(
        layer.Conv2d(1, 16, 3), lif(), layer.MaxPool2d(2),
        layer.Conv2d(16, 32, 3), lif(), layer.MaxPool2d(2),
        layer.Flatten(), layer.Linear(800, 10), lif(),
    )  # fmt: skip
    functional.set_step_mode(net, "m")
    return net


def ann_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(800, 10),
    )  # fmt: skip


class _SequenceDirect(rs.encoders.Encoder):
    """Direct input presented as a [T, N, ...] sequence, as a random encoder would be:
    the time-batched path then cannot run the first convolution once for all steps."""

    def forward(
        self, x: torch.Tensor, num_steps: int, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return rs.encoders.direct(x, num_steps)


def variants(
    device: torch.device, with_compile: bool
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    torch.manual_seed(0)
    net = snntorch_net().to(device)

    def idiomatic(x: torch.Tensor) -> torch.Tensor:  # the snnTorch tutorial loop
        snn_utils.reset(net)
        mem_rec = []
        for _ in range(T):
            _spk, mem = net(x)
            mem_rec.append(mem)
        return torch.stack(mem_rec).mean(0)

    sj = spikingjelly_net().to(device)

    def sj_multistep(x: torch.Tensor) -> torch.Tensor:  # the SpikingJelly idiom
        functional.reset_net(sj)
        return sj(x.unsqueeze(0).repeat(T, 1, 1, 1, 1)).mean(0)

    out: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "snnTorch idiomatic loop": idiomatic,
        "SpikingClassifier plain loop (time_batched=False)": rs.SpikingClassifier(
            net, T, time_batched=False
        ),
        "SpikingClassifier default (time-batched)": rs.SpikingClassifier(net, T),
        "time-batched, sequence input (no hoisting)": rs.SpikingClassifier(
            net, T, encoder=_SequenceDirect()
        ),
    }
    if with_compile:
        out["SpikingClassifier compile=True"] = rs.SpikingClassifier(net, T, compile=True)
    out["SpikingJelly multi-step"] = sj_multistep
    out["SpikingClassifier(SpikingJelly 'm')"] = rs.SpikingClassifier(sj, T, readout="count")
    out["ANN twin (ReLU), one pass"] = ann_net().to(device)
    return out


def attack_step(
    f: Callable[[torch.Tensor], torch.Tensor], x0: torch.Tensor, y: torch.Tensor
) -> float:
    x = x0.clone().requires_grad_()
    if x.is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    loss = F.cross_entropy(f(x), y)
    torch.autograd.grad(loss, x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled path")
    args = parser.parse_args()
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    torch.set_num_threads(args.threads)
    fns = variants(device, with_compile=not args.no_compile)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(N, 1, 28, 28, generator=g).to(device)
    y = torch.randint(0, 10, (N,), generator=g).to(device)

    for name, f in fns.items():  # warm-up, and the one-off compile
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            attack_step(f, x0, y)
        print(f"warm-up {name:52s} {time.perf_counter() - t0:7.1f} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(args.iters):  # round-robin so drifts hit all variants alike
        for name, f in fns.items():
            times[name].append(attack_step(f, x0, y))

    med = {name: statistics.median(ts) for name, ts in times.items()}
    base, ann = med["snnTorch idiomatic loop"], med["ANN twin (ReLU), one pass"]
    print(
        f"\ntorch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"T={T}, batch {N}, {args.iters} round-robin iterations"
    )
    print("| variant | median ms | vs idiomatic loop | vs T x ANN step |\n|---|---:|---:|---:|")
    for name, m in med.items():
        print(f"| {name} | {m:.2f} | {m / base:.2f}x | {m / (T * ann):.2f}x |")


if __name__ == "__main__":
    main()
