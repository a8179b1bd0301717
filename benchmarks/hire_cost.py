"""The cost of one training epoch: plain, HIRE-SNN and FGSM adversarial training, side by side.

HIRE-SNN (Kundu et al., ICCV 2021) claims robustness at no extra training cost: its
periods split one T-step pass, so an epoch should cost about what a plain epoch costs,
while FGSM-AT runs an extra forward and backward pass per batch (about 2x). One epoch of
each variant on the digits' training split (1347 images, batch 64, T=8, Adam), built
fresh from the same seed, runs round-robin in one process (so machine load drifts affect
all alike); the script prints median epoch times and ratios to the plain epoch.

``--size 8`` trains the demo network (robust_spikes.app.demo.build_net) on the 8x8 digits;
``--size 28`` the Conv(1->16)-Conv(16->32)-Linear(800->10) SNN of attack_step.py on the
digits resized to 28x28, where the convolutions rather than per-batch overheads dominate.

    python benchmarks/hire_cost.py [--size 8|28] [--repeats N] [--device auto|cpu|cuda]
        [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn

import robust_spikes as rs
from robust_spikes.app.demo import build_net
from robust_spikes.training import FGSM, fit, hire

T, BATCH, EPS = 8, 64, 2 / 255


def net_28() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3), snn.Leaky(beta=0.9, init_hidden=True), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3), snn.Leaky(beta=0.9, init_hidden=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(800, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )  # fmt: skip


def variants() -> dict[str, Callable[[rs.SpikingClassifier, tuple[torch.Tensor, ...]], object]]:
    kwargs = {"epochs": 1, "batch_size": BATCH, "progress": False}
    return {
        "plain (fit)": lambda m, d: fit(m, d, **kwargs),
        "HIRE, 2 periods": lambda m, d: hire(m, d, periods=2, noise_eps=8 / 255, **kwargs),
        "HIRE, 4 periods": lambda m, d: hire(m, d, periods=4, noise_eps=8 / 255, **kwargs),
        "FGSM-AT (fit)": lambda m, d: fit(m, d, adversary=FGSM(EPS), **kwargs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, choices=(8, 28), default=8)
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="round-robin repeats (default: 15 for --size 8, whose 0.3 s epochs are noisy; 5 "
        "for --size 28)",
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.repeats is None:
        args.repeats = 15 if args.size == 8 else 5
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    train = rs.data.digits("train")
    x, y = train.images, train.labels
    if args.size == 28:
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    data = (x.to(device), y.to(device))
    builder = build_net if args.size == 8 else net_28

    def model() -> rs.SpikingClassifier:
        torch.manual_seed(0)
        return rs.SpikingClassifier(builder(), T).to(device)

    runs = variants()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up: plan discovery, allocator, kernels
        run(model(), (data[0][:BATCH], data[1][:BATCH]))
    for _ in range(args.repeats):
        for name, run in runs.items():
            m = model()
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            run(m, data)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)

    base = statistics.median(times["plain (fit)"])
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"{args.size}x{args.size} digits, {len(x)} images, batch {BATCH}, T={T}, "
        f"{args.repeats} round-robin repeats"
    )
    print("| variant | median epoch s | vs plain epoch |")
    print("|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
