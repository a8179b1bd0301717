"""TA-LIF under the full and the detached attack gradient: how much does the gradient matter?

HoSNN (Geng & Li, "HoSNN: Adversarially-Robust Homeostatic Spiking Neural Networks with
Adaptive Firing Thresholds", TMLR 2025) replaces LIF neurons by TA-LIF neurons whose
threshold follows the membrane's deviation from a neural dynamic signature recorded on
clean data, and fine-tunes with FGSM adversarial training at 2/255. Its published code
attacks with a gradient that ignores the threshold dynamics (the surrogate at
``u - theta_0``, nothing through ``Vth``). robust-spikes differentiates through ``Vth``
by default (the adaptive attack) and reproduces the published gradient with
``detach_threshold=True``. This script measures the gap on the 8x8 digits:

1. train a plain conv LIF SNN (snnTorch, ``beta = 1 - 1/tau_m`` with ``tau_m = 5``, T = 5);
2. adapt a copy to TA-LIF (``tau_v = 1.5``, HoSNN's value for MNIST-like data; the
   output layer stays plain), record its signature on the clean training images;
3. fine-tune the plain net and the TA-LIF net alike: FGSM adversarial training at 2/255;
4. attack both on the test set with torchattacks' PGD-10 (and FGSM); the TA-LIF net is
   attacked once with the full gradient and once with the detached one. Both sets of
   adversarial images are scored on the same model: the forward pass is identical, only
   the gradient used to craft them differs.

An image counts as robust when it is classified correctly both clean and attacked. The
"worst of both" row counts an image as robust only if neither attack on TA-LIF broke it.

    python benchmarks/ta_lif_gradient.py [--epochs 8] [--finetune-epochs EPOCHS] [--num-steps 5]
        [--eps 4/255 8/255 16/255 32/255] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import sys
import time
from collections.abc import Iterator, Sequence

import snntorch as snn
import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

import robust_spikes as rs
from robust_spikes.evaluation._report import format_eps

BATCH_SIZE = 128
LEARNING_RATE = 1e-2
TAU_M = 5.0  # HoSNN's membrane time constant: beta = 1 - 1/tau_m = 0.8
TAU_V = 1.5  # HoSNN's threshold time constant for MNIST-like data
AT_EPS = 2 / 255  # HoSNN's FGSM adversarial fine-tuning radius
PGD_STEPS = 10
ATTACKS = ("PGD", "FGSM")

LIF, TA_FULL, TA_DETACHED, TA_WORST = (
    "LIF (surrogate BPTT)",
    "TA-LIF, full gradient (adaptive attack)",
    "TA-LIF, detached threshold (published code's gradient)",
    "TA-LIF, worst of both",
)


# ----------------------------------------------------------------------------- models
def build_net(beta: float) -> nn.Sequential:
    """The demo's conv SNN for ``[N, 1, 8, 8]`` images, idiomatic snnTorch, with HoSNN's
    hard reset (``reset_mechanism="zero"``, applied in the step of the spike)."""

    def lif(**kwargs: bool) -> nn.Module:
        return snn.Leaky(
            beta=beta, init_hidden=True, reset_mechanism="zero", reset_delay=False, **kwargs
        )

    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        lif(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        lif(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 2 * 2, 10),
        lif(output=True),
    )


def adapters(model: nn.Module) -> list[rs.neurons.ThresholdAdaptation]:
    return [m for m in model.modules() if isinstance(m, rs.neurons.ThresholdAdaptation)]


@contextlib.contextmanager
def detached_threshold(model: nn.Module) -> Iterator[None]:
    """Give every TA-LIF neuron of ``model`` the published code's gradient meanwhile."""
    modules = adapters(model)
    before = [m.detach_threshold for m in modules]
    for m in modules:
        m.detach_threshold = True
    try:
        yield
    finally:
        for m, flag in zip(modules, before, strict=True):
            m.detach_threshold = flag


# ----------------------------------------------------------------------------- training
def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """``clamp(x + eps * sign(grad_x CE), 0, 1)``, crafted in eval mode."""
    model.eval()
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return (x + eps * grad.sign()).clamp(0, 1).detach()


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    seed: int,
    at_eps: float | None = None,
) -> None:
    """Adam + cross-entropy; on FGSM examples at ``at_eps`` when given (FGSM-AT)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(BATCH_SIZE):
            xb, yb = x[idx], y[idx]
            if at_eps is not None:
                xb = fgsm(model, xb, yb, at_eps)
            model.train()
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()


# ----------------------------------------------------------------------------- evaluation
def make_attack(name: str, model: nn.Module, eps: float) -> torchattacks.Attack:
    if name == "FGSM":
        return torchattacks.FGSM(model, eps=eps)
    return torchattacks.PGD(model, eps=eps, alpha=eps / 4, steps=PGD_STEPS, random_start=True)


def correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) == y


def robust_masks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    radii: Sequence[float],
    seed: int,
    *,
    detach: bool = False,
) -> dict[str, torch.Tensor]:
    """Per-image correctness, clean and under each attack; attacks crafted with the
    detached gradient when ``detach``, always scored with the model's own forward pass."""
    model.eval()
    clean = correct(model, x, y)
    masks = {"clean": clean}
    for name in ATTACKS:
        for eps in radii:
            torch.manual_seed(seed)
            with detached_threshold(model) if detach else contextlib.nullcontext():
                x_adv = make_attack(name, model, eps)(x, y)
            masks[column(name, eps)] = clean & correct(model, x_adv, y)
    return masks


def check_same_forward(model: nn.Module, x: torch.Tensor) -> None:
    """The detached gradient must leave the forward pass unchanged."""
    with torch.no_grad():
        full = model(x)
        with detached_threshold(model):
            detached = model(x)
    if not torch.equal(full, detached):
        gap = (full - detached).abs().max().item()
        raise AssertionError(f"detach_threshold changed the logits (max |diff| {gap:.3g})")


# ----------------------------------------------------------------------------- report
def accuracies(masks: dict[str, torch.Tensor]) -> dict[str, float]:
    return {key: mask.float().mean().item() for key, mask in masks.items()}


def column(name: str, eps: float) -> str:
    return f"{name} {format_eps(eps)}"


def table(rows: dict[str, dict[str, float]], columns: Sequence[str]) -> str:
    header = ["model / attack gradient", *columns]
    cells = [[label, *(f"{100 * accs[c]:.1f}%" for c in columns)] for label, accs in rows.items()]
    widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        numbers = (c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))
        padded = [r[0].ljust(widths[0]), *numbers]
        return "| " + " | ".join(padded) + " |"

    rule = "|:" + "-" * (widths[0] + 1) + "|" + "|".join("-" * (w + 1) + ":" for w in widths[1:])
    return "\n".join([line(header), rule + "|", *map(line, cells)])


def reading(rows: dict[str, dict[str, float]], eps: float) -> str:
    """One sentence on the full-vs-detached gap at ``eps``, from the numbers."""
    key = column("PGD", eps)
    full, detached, lif = rows[TA_FULL][key], rows[TA_DETACHED][key], rows[LIF][key]
    gap = 100 * (detached - full)
    if abs(gap) < 0.05:
        verdict = "gives the same PGD robust accuracy as the full gradient"
    else:
        word = "overestimates" if gap > 0 else "underestimates"
        verdict = f"{word} TA-LIF's PGD robust accuracy by {abs(gap):.1f} points"
    vs_lif = 100 * (full - lif)
    side = "above" if vs_lif >= 0 else "below"
    return (
        f"At {format_eps(eps)}, the detached (published code's) gradient {verdict} "
        f"({100 * detached:.1f}% vs {100 * full:.1f}%); against the adaptive attack TA-LIF "
        f"is {abs(vs_lif):.1f} points {side} plain LIF ({100 * lif:.1f}%)."
    )


# ----------------------------------------------------------------------------- main
def parse_eps(text: str) -> float:
    """``"8/255"`` or ``"0.03"`` as a float in [0, 1]."""
    num, _, den = text.partition("/")
    try:
        value = float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a radius: {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"eps must be in (0, 1], got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8, help="clean training epochs")
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=None,
        help="FGSM-AT (2/255) fine-tuning epochs of both nets (default: --epochs)",
    )
    parser.add_argument("--num-steps", type=int, default=5, help="time steps T")
    parser.add_argument(
        "--eps",
        type=parse_eps,
        nargs="+",
        default=[4 / 255, 8 / 255, 16 / 255, 32 / 255],
        help="radii (8x8 digits have 17 grey levels: 8/255 is half a level)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.finetune_epochs is None:
        args.finetune_epochs = args.epochs
    if min(args.epochs, args.finetune_epochs, args.num_steps) < 1:
        parser.error("--epochs, --finetune-epochs and --num-steps must be positive")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    torch.manual_seed(args.seed)
    train_set = rs.data.digits("train", seed=args.seed)
    test_set = rs.data.digits("test", seed=args.seed)
    x, y = train_set.images, train_set.labels
    steps = args.num_steps

    log(f"training the LIF net ({args.epochs} epochs)")
    net = build_net(beta=1 - 1 / TAU_M)
    train(rs.SpikingClassifier(net, steps), x, y, args.epochs, args.seed)

    log("adapting to TA-LIF and recording the signature")
    ta_net = rs.adapt(net, functools.partial(rs.neurons.ThresholdAdaptation, tau_v=TAU_V))
    ta_model = rs.SpikingClassifier(ta_net, steps)
    rs.neurons.record_signature(ta_model, x.split(BATCH_SIZE))
    lif_model = rs.SpikingClassifier(copy.deepcopy(net), steps)

    for label, model in (("LIF", lif_model), ("TA-LIF", ta_model)):
        log(f"FGSM-AT fine-tuning of {label} ({args.finetune_epochs} epochs)")
        train(model, x, y, args.finetune_epochs, args.seed + 1, at_eps=AT_EPS)

    log("attacking")
    xt, yt = test_set.images, test_set.labels
    check_same_forward(ta_model, xt)
    masks = {
        LIF: robust_masks(lif_model, xt, yt, args.eps, args.seed),
        TA_FULL: robust_masks(ta_model, xt, yt, args.eps, args.seed),
        TA_DETACHED: robust_masks(ta_model, xt, yt, args.eps, args.seed, detach=True),
    }
    masks[TA_WORST] = {k: m & masks[TA_DETACHED][k] for k, m in masks[TA_FULL].items()}
    rows = {label: accuracies(ms) for label, ms in masks.items()}
    elapsed = time.perf_counter() - start

    # The effective theta_v: the module clamps the parameter at 0 in its forward pass.
    theta_v = torch.cat([m.theta_v.detach().flatten() for m in adapters(ta_net)]).clamp(min=0)
    print(
        f"TA-LIF gradient benchmark on the 8x8 digits: epochs={args.epochs} + "
        f"{args.finetune_epochs} FGSM-AT ({format_eps(AT_EPS)}), T={steps}, tau_m={TAU_M:g}, "
        f"tau_v={TAU_V:g}, seed={args.seed}, {len(yt)} test images, time {elapsed:.0f} s "
        f"(theta_v after fine-tuning: mean {theta_v.mean():.3f}, "
        f"{100 * (theta_v == 0).float().mean():.1f}% of neurons clamped at 0)"
    )
    print()
    pgd = ["clean", *(column("PGD", e) for e in args.eps)]
    print(
        f"Accuracy, clean and under PGD-{PGD_STEPS} (alpha = eps/4, random start); an image "
        "counts as robust if correct both clean and attacked:"
    )
    print()
    print(table(rows, pgd))
    print()
    print("Accuracy under FGSM:")
    print()
    print(table(rows, [column("FGSM", e) for e in args.eps]))
    print()
    print(reading(rows, max(args.eps)))


if __name__ == "__main__":
    main()
