"""torchattacks' AutoAttack against the adaptive ensemble: robust accuracy and wall time.

For each case a model is trained (seeded), then on the same test images, side by side in
one process:

* ``AutoAttack``: torchattacks' AutoAttack, version ``"standard"`` (APGD-CE, APGD-T,
  FAB-T, Square-5000) for deterministic models and ``"rand"`` (APGD-CE and APGD-DLR with
  20 EOT samples) for stochastic ones (torchattacks 3.5.1 builds its APGD members with
  their default 10 steps, not the paper's 100);
* ``ensemble (before)``: :class:`robust_spikes.attacks.AdaptiveEnsemble` with the members
  as they were built before the speed work (torchattacks' Square-5000, EOT by loops; see
  :func:`legacy_members`), without escalation (which never changes the broken set);
* ``ensemble``: the ensemble with today's defaults (escalation included).

Each line gives robust accuracy (a 10-pass vote for stochastic models), wall time, the
time ratio to AutoAttack, and the accuracy difference; ``lost`` counts samples that the
earlier schedule broke and today's did not (it must be 0). Below the table: when the
ensemble reached AutoAttack's accuracy, when its own accuracy was final (the members'
time without the escalation, which changes no number), and its slowest members.

    python benchmarks/vs_autoattack.py [--cases digits mnist5k stochastic] [--num-test 64]
        [--eps 0.1] [--epochs 8] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
import torchattacks
from torch import nn

import robust_spikes as rs
from robust_spikes.app.demo import build_net
from robust_spikes.attacks import AdaptiveEnsemble, Member

NUM_STEPS = 4


def data(name: str, seed: int) -> tuple[Any, Any]:
    if name == "mnist5k":
        return rs.data.mnist5k("train", seed=seed), rs.data.mnist5k("test", seed=seed)
    return rs.data.digits("train", seed=seed), rs.data.digits("test", seed=seed)


def tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if hasattr(dataset, "images"):
        return dataset.images, dataset.labels
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    return torch.stack(xs), torch.tensor(ys)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2 if x.shape[-1] == 8 else 2e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(128):
            loss = F.cross_entropy(model(x[idx].to(_device(model))), y[idx].to(_device(model)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def case(
    name: str, args: argparse.Namespace
) -> tuple[rs.SpikingClassifier, torch.Tensor, torch.Tensor]:
    torch.manual_seed(args.seed)
    train_set, test_set = data("mnist5k" if name == "mnist5k" else "digits", args.seed)
    x, y = tensors(train_set)
    side = x.shape[-1]
    encoder = rs.encoders.Poisson() if name == "stochastic" else None
    model = rs.SpikingClassifier(build_net(side), NUM_STEPS, encoder=encoder).to(args.device)
    train(model, x, y, args.epochs, args.seed)
    xt, yt = tensors(test_set)
    return model, xt[: args.num_test].to(args.device), yt[: args.num_test].to(args.device)


def _legacy_fgsm(model: nn.Module, eps: float, eot: int) -> Any:
    if eot > 1:
        return torchattacks.EOTPGD(
            model, eps=eps, alpha=eps, steps=1, eot_iter=eot, random_start=False
        )
    return torchattacks.FGSM(model, eps=eps)


def _legacy_pgd(model: nn.Module, eps: float, eot: int) -> Any:
    if eot > 1:
        return torchattacks.EOTPGD(model, eps=eps, alpha=eps / 8, steps=20, eot_iter=eot)
    return torchattacks.PGD(model, eps=eps, alpha=eps / 8, steps=20, random_start=True)


def _legacy_apgd(loss: str) -> Callable[[nn.Module, float, int], Any]:
    def build(model: nn.Module, eps: float, eot: int) -> Any:
        return torchattacks.APGD(model, eps=eps, steps=20, loss=loss, eot_iter=eot, seed=0)

    return build


def _legacy_square(model: nn.Module, eps: float, eot: int) -> Any:
    return torchattacks.Square(model, eps=eps, n_queries=5000, seed=0)


def legacy_members(model: Any) -> list[Member]:
    """The schedule before this benchmark's issue (robust-spikes at 96be3ca): the default
    members in their order, built as they were then (torchattacks' Square-5000 with one
    window per batch, EOT by ``eot_iter`` loops)."""
    from robust_spikes.gradients import Exponential, Rectangular, StraightThrough, Triangle

    members = [Member("FGSM", _legacy_fgsm), Member("PGD-20", _legacy_pgd)]
    for surrogate, label in (
        (Triangle(gamma=1.0), "triangle(1)"),
        (Rectangular(gamma=1.0), "rectangular(1)"),
        (Exponential(gamma=1.0), "exponential(1)"),
        (StraightThrough(), "straight-through"),
    ):
        members.append(Member(f"PGD-20/{label}", _legacy_pgd, "bptt", surrogate))
    for mode in ("pdsg", "bptr", "rga"):
        members.append(Member(f"PGD-20/{mode}", _legacy_pgd, mode))
    members.append(Member("APGD-CE", _legacy_apgd("ce")))
    members.append(Member("APGD-DLR", _legacy_apgd("dlr")))
    members.append(Member("PGD-20/ann", _legacy_pgd, "ann"))
    members.append(Member("Square-5000", _legacy_square))
    return members


def robust(model: Any, x_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        if model.is_stochastic:
            torch.manual_seed(1)
            return model.predict(x_adv, num_samples=10) == y
        return model(x_adv).argmax(1) == y


def timed(run: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = run(*args)
    return out, time.perf_counter() - start


def _time_to_reach(attack: AdaptiveEnsemble, robust_count: int) -> tuple[str, float] | None:
    """The first member after which the cascade's robust count is at most ``robust_count``,
    and the members' summed time up to it (the clean pass excluded)."""
    remaining = sum(b != "clean" for b in attack.broken_by)
    elapsed = 0.0
    for name, seconds in attack.seconds.items():
        if name == "escalation":
            break
        elapsed += seconds
        remaining -= sum(b == name for b in attack.broken_by)
        if remaining <= robust_count:
            return name, elapsed
    return None


def run_case(name: str, args: argparse.Namespace) -> None:
    model, x, y = case(name, args)
    version = "rand" if model.is_stochastic else "standard"
    autoattack = torchattacks.AutoAttack(model, eps=args.eps, version=version, seed=0)
    aa_adv, aa_s = timed(autoattack, x, y)
    aa = robust(model, aa_adv, y)
    rows: list[tuple[str, torch.Tensor, float, Any]] = [(f"AutoAttack {version}", aa, aa_s, None)]
    old_broken = None
    if not args.skip_legacy:
        old = AdaptiveEnsemble(
            model, args.eps, members=legacy_members(model), seed=0, escalate_steps=None
        )
        _, old_s = timed(old, x, y)
        old_broken = torch.tensor([b is not None for b in old.broken_by])
        rows.append(("ensemble (before, no escalation)", ~old_broken, old_s, old))
    new = AdaptiveEnsemble(model, args.eps, seed=0)
    _, new_s = timed(new, x, y)
    new_broken = torch.tensor([b is not None for b in new.broken_by])
    rows.append(("ensemble", ~new_broken, new_s, new))
    aa_acc = aa.float().mean().item()
    for label, ok, seconds, attack in rows:
        acc = ok.float().mean().item()
        lost = ""
        if attack is new and old_broken is not None:
            missed = (old_broken & ~new_broken).nonzero().flatten().tolist()
            lost = str(len(missed))
            if missed:
                lost += " (" + ", ".join(f"#{i} by {old.broken_by[i]}" for i in missed) + ")"
        print(
            f"| {name} | {label} | {100 * acc:.1f}% | {seconds:.1f} | "
            f"{seconds / aa_s:.2f}x | {100 * (acc - aa_acc):+.1f} | {lost} |"
        )
    reached = _time_to_reach(new, int(aa.sum()))
    if reached is not None:
        member, seconds = reached
        print(
            f"|  | ensemble: AutoAttack's accuracy reached after {member}, at {seconds:.1f} s "
            f"({seconds / aa_s:.2f}x) | | | | | |"
        )
    escalation = new.seconds.get("escalation", 0.0)
    final = sum(new.seconds.values()) - escalation
    print(
        f"|  | ensemble: its robust accuracy final after its last member, at {final:.1f} s "
        f"({final / aa_s:.2f}x); then the escalation (it explains the masking flag, changes "
        f"no number) {escalation:.1f} s | | | | | |"
    )
    for label, _, _, attack in rows[1:]:
        slow = [(k, round(v, 1)) for k, v in sorted(attack.seconds.items(), key=lambda kv: -kv[1])]
        escalated = [e for e in attack.escalated if e is not None]
        fell = f"; escalation broke {sum(escalated)} of {len(escalated)}" if escalated else ""
        print(f"|  | {label}: slowest members {slow[:4]}{fell} | | | | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["digits", "mnist5k", "stochastic"])
    parser.add_argument("--num-test", type=int, default=64)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-legacy", action="store_true", help="no run of the earlier schedule")
    args = parser.parse_args()
    print(
        f"eps {args.eps:g} (Linf, [0, 1] scale), {args.num_test} test images, T={NUM_STEPS}, "
        f"{torch.get_num_threads()} threads, device {args.device}\n"
    )
    print("| case | attack | robust acc | seconds | time / AutoAttack | acc - AutoAttack | lost |")
    print("|:--|:--|--:|--:|--:|--:|--:|")
    for name in args.cases:
        run_case(name, args)


if __name__ == "__main__":
    main()
