"""How often each masking flag fires on models without masking and on models built to mask.

Models without gradient masking (the false-positive side): linear SNNs, whose output
neurons never reach their threshold, so the whole network is an affine map of the image
and its exact L-inf robust accuracy is computed in closed form (per class pair, the
minimum of an affine function over the eps-box intersected with [0, 1]); three
architectures (snnTorch MLP, snnTorch conv + pooling, SpikingJelly multi-step MLP) x
``--seeds`` training seeds. The table also prints the adaptive worst case against the
exact value, which no sound attack can go below.

Models built to mask (the true-positive side), each around a trained snnTorch conv SNN
per seed: quantised input (``round(4 x) / 4``: zero gradient, piecewise constant),
saturated logits (membrane readout x 1000: the cross-entropy gradient underflows), a
zero-gradient encoder (``x > 0.5`` binarisation), undeclared randomness (Gaussian noise
from the global RNG in ``forward``, ``is_stochastic`` false), plus one misread model: the
frozen rate-trained SpikingJelly network of ``tests/data`` read with ``readout="membrane"``.

Prints, per flag, the false-positive rate (fires on a linear SNN) and the rate on each
kind of masking model (a true positive where the flag is meant to catch that kind).

    python benchmarks/flag_rates.py [--seeds 2] [--num-test 32] [--square-queries 300]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path

import snntorch as snn
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

import robust_spikes as rs
from robust_spikes.evaluation import MASKING_CODES
from robust_spikes.evaluation._report import format_eps

NUM_STEPS = 4
EPS = [8 / 255, 0.1]
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------- models
def linear_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 10),
        snn.Leaky(beta=0.9, threshold=1e4, init_hidden=True, output=True),
    )


def linear_conv() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10),
        snn.Leaky(beta=0.9, threshold=1e4, init_hidden=True, output=True),
    )


def linear_sj() -> nn.Module:
    net = nn.Sequential(
        layer.Flatten(), layer.Linear(64, 10), neuron.LIFNode(tau=2.0, v_threshold=1e4)
    )
    functional.set_step_mode(net, "m")
    return net


def conv_snn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
        snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )


class InputMask(nn.Module):
    """A stateless first layer that changes the input the way a masking model does."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "quantised input":
            return torch.round(4 * x) / 4
        if self.kind == "zero-gradient encoder":
            return (x > 0.5).to(x.dtype) + 0 * x
        if self.kind == "undeclared randomness":
            return x + 0.3 * torch.randn_like(x)
        return x


def saturated(spikes: torch.Tensor | None, membrane: torch.Tensor | None) -> torch.Tensor:
    assert membrane is not None
    return 1000 * membrane.mean(0)


def train(model: nn.Module, epochs: int, seed: int) -> None:
    data = rs.data.digits("train")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(data), generator=generator).split(64):
            loss = F.cross_entropy(model(data.images[idx]), data.labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()


def exact_robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> float:
    """Exact L-inf robust accuracy of an affine ``model`` on the box ``[x-eps, x+eps] & [0,1]``."""
    with torch.no_grad():
        b = model(torch.zeros_like(x[:1])).double()[0]
    jac = torch.autograd.functional.jacobian(lambda v: model(v)[0], x[:1]).double()
    w = jac.reshape(jac.shape[0], -1)  # [K, D]
    lo = (x - eps).clamp(0, 1).flatten(1).double()
    hi = (x + eps).clamp(0, 1).flatten(1).double()
    robust = 0
    for i in range(len(y)):
        d = w[y[i]] - w  # [K, D]: margin of class y over each class, as an affine map
        worst = torch.where(d > 0, d * lo[i], d * hi[i]).sum(1) + (b[y[i]] - b)
        worst[y[i]] = 1.0
        robust += bool((worst > 0).all())
    return robust / len(y)


# ---------------------------------------------------------------------- the run
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace, name: str
) -> rs.evaluation.RobustnessReport:
    start = time.process_time()
    report = rs.evaluate(
        model,
        (x, y),
        eps=EPS,
        square_queries=args.square_queries,
        convergence_steps=args.convergence_steps,
        escalation_steps=args.escalation_steps,
        eot=args.eot,
        num_samples=None,
        progress=False,
    )
    codes = ", ".join(sorted({f["code"] for f in report.flags})) or "-"
    print(f"{name}: {time.process_time() - start:.0f} s CPU; {codes}", file=sys.stderr, flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--num-test", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--square-queries", type=int, default=300)
    parser.add_argument("--convergence-steps", type=int, default=30)
    parser.add_argument("--escalation-steps", type=int, default=20)
    parser.add_argument("--eot", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(2)
    test = rs.data.digits("test")
    x, y = test.images[: args.num_test], test.labels[: args.num_test]
    start = time.perf_counter()
    fired: dict[str, list[set[str]]] = {}
    notes: list[str] = []

    linear: dict[str, Callable[[], nn.Module]] = {
        "snnTorch MLP": linear_mlp,
        "snnTorch conv": linear_conv,
        "SpikingJelly MLP": linear_sj,
    }
    for seed in range(args.seeds):
        for name, build in linear.items():
            torch.manual_seed(seed)
            # the membrane: the output neurons never fire (SpikingJelly's default readout,
            # the spike count, would be constant)
            model = rs.SpikingClassifier(build(), NUM_STEPS, readout="membrane")
            train(model, args.epochs, seed)
            report = evaluate(model, x, y, args, f"{name} {seed}")
            fired.setdefault("linear SNN (no masking)", []).append(
                {f["code"] for f in report.flags}
            )
            worst = [report.robust_accuracy[e]["worst"] for e in EPS]
            exact = [exact_robust_accuracy(model, x, y, e) for e in EPS]
            notes.append(
                f"  {name}, seed {seed}: worst case "
                + ", ".join(f"{w:.3f}" for w in worst)
                + " vs exact "
                + ", ".join(f"{e:.3f}" for e in exact)
                + f" at eps {', '.join(format_eps(e) for e in EPS)}"
            )

    kinds = [
        "quantised input",
        "saturated logits",
        "zero-gradient encoder",
        "undeclared randomness",
    ]
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        net = conv_snn()
        train(rs.SpikingClassifier(net, NUM_STEPS), args.epochs, seed)
        for kind in kinds:
            if kind == "saturated logits":
                model = rs.SpikingClassifier(net, NUM_STEPS, readout=saturated)
            else:
                model = rs.SpikingClassifier(nn.Sequential(InputMask(kind), net), NUM_STEPS)
            report = evaluate(model, x, y, args, f"{kind} {seed}")
            fired.setdefault(kind, []).append({f["code"] for f in report.flags})
            black = [f["message"] for f in report.flags if f["code"] == "black-box-beats-white-box"]
            if black:
                notes.append(f"  {kind}, seed {seed}: {black[0].split('. ')[0]}")

    spec = importlib.util.spec_from_file_location(
        "make_sj", ROOT / "tests/data/make_rate_trained_sj.py"
    )
    assert spec is not None and spec.loader is not None
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    sj = make.build()
    sj.load_state_dict(torch.load(make.PATH, weights_only=True))
    misread = rs.SpikingClassifier(sj.eval(), make.T, readout="membrane")
    report = evaluate(misread, x, y, args, "misread readout")
    fired["misread readout"] = [{f["code"] for f in report.flags}]

    columns = list(fired)
    radii = ", ".join(format_eps(e) for e in EPS)
    print(
        f"digits, {args.num_test} test images, eps {radii}, {args.seeds} seeds, "
        f"Square-{args.square_queries}, convergence PGD-{args.convergence_steps}, "
        f"escalation PGD-{args.escalation_steps}, EOT {args.eot}; "
        f"{time.perf_counter() - start:.0f} s"
    )
    header = ["flag", *[f"{c} ({len(fired[c])})" for c in columns]]
    rows = [
        [code, *[f"{sum(code in s for s in fired[c])}/{len(fired[c])}" for c in columns]]
        for code in MASKING_CODES
    ]
    rows.append(
        ["any flag", *[f"{sum(bool(s) for s in fired[c])}/{len(fired[c])}" for c in columns]]
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    print("\nlinear SNNs, adaptive worst case vs exact robust accuracy; escalation outcomes:")
    print("\n".join(notes))


if __name__ == "__main__":
    main()
