"""Masking checks: each flag fires on a model built to trigger it, none on a sound model."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from helpers import NUM_STEPS, digits_tensors, trained
from torch import nn

import robust_spikes as rs
from robust_spikes.evaluation import MASKING_CODES

N = 48  # test digits per evaluation


def data(n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    _, _, x, y = digits_tensors()
    return x[:n], y[:n]


def codes(report: rs.evaluation.RobustnessReport) -> set[str]:
    flags = report.flags
    assert all(set(f) == {"code", "message"} and f["code"] in MASKING_CODES for f in flags)
    assert all(len(f["message"]) > 80 and "Try: " in f["message"] for f in flags)
    return {f["code"] for f in flags}


def run(model: nn.Module, eps: list[float], attacks: list[str] | None, **kwargs) -> set[str]:
    kwargs.setdefault("convergence_steps", None)
    kwargs.setdefault("sanity_eps", 0)
    kwargs.setdefault("escalation_steps", 20)
    report = rs.evaluate(
        model, data(), eps=eps, attacks=attacks, progress=False, square_queries=200, **kwargs
    )
    return codes(report)


# --------------------------------------------------------------------------- models
class Wrapped(nn.Module):
    """A user's module around a trained snnTorch network, changing its input first."""

    def __init__(self, net: nn.Module, kind: str) -> None:
        super().__init__()
        self.net, self.kind = net, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "detached":  # preprocessing without a gradient
            x = x.detach() + 0 * x
        elif self.kind == "snap":  # amplify small perturbations, undo large ones
            grid = torch.round(x * 16) / 16  # the digits have 17 grey levels: clean x == grid
            amplified = grid + 5 * (x - grid)
            large = (x - grid).abs().flatten(1).amax(1) > 0.02
            x = torch.where(large[:, None, None, None], grid, amplified)
        elif self.kind == "noisy":  # a gradient drowned in noise
            x = _NoisyGradient.apply(x)
        return self.net(x)


class _NoisyGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        scale = grad.flatten(1).abs().mean(1).view(-1, *[1] * (grad.dim() - 1))
        return grad + 4 * scale * torch.randn_like(grad)


class _ZeroSurrogate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.zeros_like(grad)


def sound_model() -> rs.SpikingClassifier:
    """No spikes ever reach the readout: the model is exactly linear, its gradient exact."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 10),
        snn.Leaky(beta=0.9, threshold=1e4, init_hidden=True, output=True),
    )
    model = rs.SpikingClassifier(net, NUM_STEPS)
    x, y, _, _ = digits_tensors()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def plain(kind: str | None = None) -> rs.SpikingClassifier:
    net = trained("snntorch_conv")
    return rs.SpikingClassifier(net if kind is None else Wrapped(net, kind), NUM_STEPS)


# ---------------------------------------------------------------------------- tests
def test_a_sound_model_raises_no_flag() -> None:
    model = sound_model()
    found = run(
        model,
        [0.05, 0.2],
        ["FGSM", "PGD-20", "PGD-20/triangle(1)", "Square-200"],
        convergence_steps=60,
        sanity_eps=None,
    )
    assert found == set()


def test_a_gradient_free_preprocessing_raises_three_flags() -> None:
    found = run(plain("detached"), [0.1], ["FGSM", "PGD-20", "Square-200"], sanity_eps=None)
    assert {"zero-gradients", "no-zero-at-large-eps", "black-box-beats-white-box"} <= found


def test_accuracy_rising_with_eps_is_flagged() -> None:
    found = run(plain("snap"), [0.019, 0.03], ["FGSM", "PGD-20"])
    assert "non-monotone" in found


def test_a_useless_own_surrogate_is_flagged() -> None:
    net = trained("snntorch_conv")
    net[1].spike_grad = _ZeroSurrogate.apply
    model = rs.SpikingClassifier(net, NUM_STEPS)
    found = run(model, [0.1], ["FGSM", "PGD-20", "PGD-20/triangle(1)"])
    assert "gradient-modes-disagree" in found


def test_an_attack_that_has_not_converged_is_flagged() -> None:
    found = run(plain("noisy"), [0.1], ["PGD-20"], convergence_steps=100)
    assert "not-converged" in found


@pytest.mark.parametrize("protocol", ["paper", "adaptive"])
def test_stochastic_model_without_eot_is_flagged(protocol: str) -> None:
    net = rs.adapt(trained("snntorch_conv"), "stochastic-gate")
    model = rs.SpikingClassifier(net, NUM_STEPS)
    model(data()[0][:2])
    with torch.no_grad():
        net[1].rho.fill_(0.5)
    attacks = ["FGSM"] if protocol == "adaptive" else None
    found = run(model, [0.1], attacks, protocol=protocol, eot=2, num_samples=3)
    assert ("stochastic-without-eot" in found) == (protocol == "paper")
    plain_found = run(plain(), [0.1], attacks, protocol=protocol)
    assert "stochastic-without-eot" not in plain_found
