"""The attack suite of :func:`robust_spikes.evaluate`: the paper protocol's members, the
adaptive protocol's members chosen by name, and how each is described in the records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torchattacks
from torch import nn

from robust_spikes.attacks._ensemble import Member, _pgd, default_members, member_kind

__all__ = [
    "PAPER_PREFIX",
    "PAPER_STEPS",
    "PAPER_STEP_SIZE",
    "adaptive_members",
    "describe",
    "paper_members",
    "pgd_member",
]

PAPER_STEPS = 7
PAPER_STEP_SIZE = 0.01
# The paper protocol's attacks as they appear among the adaptive members: the adaptive
# worst case contains them, so it is never above the paper protocol's.
PAPER_PREFIX = "paper:"


def pgd_member(name: str, steps: int, alpha_steps: int, norm: str, mode: str | None = None) -> Any:
    """A PGD member with ``steps`` steps of size ``2.5 * eps / alpha_steps`` (EOT aware)."""
    return Member(name, _pgd(steps, norm, alpha_steps), mode)  # type: ignore[arg-type]


def paper_members(norm: str) -> list[Any]:
    """The literature's protocol: FGSM and PGD-7 (step 0.01, random start), own surrogate."""

    def pgd(model: nn.Module, eps: float, eot: int) -> Any:
        if norm == "L2":
            return torchattacks.PGDL2(model, eps=eps, alpha=eps / 4, steps=PAPER_STEPS)
        return torchattacks.PGD(
            model, eps=eps, alpha=PAPER_STEP_SIZE, steps=PAPER_STEPS, random_start=True
        )

    def fgsm(model: nn.Module, eps: float, eot: int) -> Any:
        return torchattacks.FGSM(model, eps=eps)

    members = [Member("FGSM", fgsm)] if norm == "Linf" else []
    return [*members, Member(f"PGD-{PAPER_STEPS}", pgd)]


def adaptive_members(
    model: nn.Module, attacks: Any, norm: str, square_queries: int, convergence_steps: int | None
) -> tuple[list[Any], str | None]:
    """White-box members first (in the given order), the convergence check, then transfer
    and black-box members; and the convergence member's name."""
    every = default_members(model, norm=norm, square_queries=square_queries)  # type: ignore[arg-type]
    if attacks is None:
        chosen = every
    else:
        if isinstance(attacks, str | Member) or not isinstance(attacks, Sequence):
            raise TypeError(
                "attacks must be a sequence of robust_spikes.attacks.Member or member names, "
                f"got {attacks!r}"
            )
        by_name = {m.name: m for m in every}
        chosen = []
        for item in attacks:
            if isinstance(item, Member):
                chosen.append(item)
            elif isinstance(item, str) and item in by_name:
                chosen.append(by_name[item])
            elif isinstance(item, str) and (queries := _square_queries(item)) is not None:
                square = default_members(model, norm=norm, square_queries=queries)  # type: ignore[arg-type]
                chosen += [m for m in square if m.name == item]
            else:
                raise ValueError(
                    f"attacks: unknown member {item!r}; give a Member, one of "
                    f"{sorted(by_name)} or Square-N (N queries, N >= 1)"
                )
        if not chosen:
            raise ValueError("attacks must hold at least one member, got an empty sequence")
    names = [m.name for m in chosen]
    if len(set(names)) != len(names):
        raise ValueError(f"attacks: member names must be unique, got {names}")
    white = [m for m in chosen if member_kind(m) == "white-box"]
    rest = [m for m in chosen if member_kind(m) == "transfer"]
    rest += [m for m in chosen if member_kind(m) == "black-box"]
    check = None
    if convergence_steps is not None:
        check = f"PGD-{convergence_steps}"
        if check in names:
            check += "/convergence"
        white.append(pgd_member(check, convergence_steps, 20, norm))
    return white + rest, check


def _square_queries(name: str) -> int | None:
    """``N`` of a member name ``Square-N`` (N a positive int written plainly), else None."""
    prefix, _, count = name.partition("-")
    if prefix != "Square" or not count.isdigit() or count != str(int(count)) or int(count) < 1:
        return None
    return int(count)


def describe(member: Any) -> dict[str, Any]:
    return {"name": member.name, "kind": member_kind(member), "mode": member.mode}
