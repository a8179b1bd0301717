"""Tests of the training recipes: HIRE-SNN, StoG's gate penalty, SNN-RAT's retraction, and
the robustness each adversarial recipe buys on the digits."""

from __future__ import annotations

import copy

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from helpers import NUM_STEPS, ExplicitState, Tutorial, digits_tensors, sj_conv, snntorch_conv
from torch import nn

import robust_spikes as rs
from robust_spikes.training import (
    PGD,
    TRADES,
    GatePenalty,
    OrthogonalRetraction,
    fit,
    hire,
)
from robust_spikes.training._regularizers import retract


def _model(seed: int = 0, net: nn.Module | None = None, num_steps: int = NUM_STEPS):
    torch.manual_seed(seed)
    net = net if net is not None else snntorch_conv()
    return rs.SpikingClassifier(net, num_steps, readout="membrane")  # as the margins were measured


def _small_data(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, _, _ = digits_tensors()
    return x[:n], y[:n]


# ------------------------------------------------------------------ carrying state
STREAM_NETS = {
    "snntorch_step": lambda: snntorch_conv(),
    "snntorch_explicit_state": lambda: ExplicitState(),
    "spikingjelly_single_step": lambda: sj_conv("s"),
    "spikingjelly_multi_step": lambda: sj_conv("m"),
}


@pytest.mark.parametrize("name", list(STREAM_NETS))
@pytest.mark.parametrize("time_batched", [None, False])
def test_stream_spans_continue_one_run(name: str, time_batched: bool | None) -> None:
    """Spans of 3 + 2 + 1 steps read the same membrane as one 6-step run."""
    torch.manual_seed(0)
    model = rs.SpikingClassifier(
        STREAM_NETS[name](), 6, readout="membrane", time_batched=time_batched
    )
    x = _small_data(8)[0]
    with torch.no_grad():
        expected = model(x)
        with model._stream() as span:
            parts = [steps * span(x, steps) for steps in (3, 2, 1)]
    torch.testing.assert_close(sum(parts) / 6, expected, rtol=1e-5, atol=1e-6)


def test_stream_detaches_between_spans_and_resets_after() -> None:
    model = _model()
    x = _small_data(4)[0].requires_grad_(True)
    with model._stream() as span:
        first = span(x, 2)
        second = span(x, 2)
        (grad,) = torch.autograd.grad(second.sum(), x)
        # the second span's graph stops at the state the first one left
        assert torch.autograd.grad(second.sum(), first, allow_unused=True) == (None,)
    assert grad.abs().sum() > 0
    assert all(
        m.mem.numel() == 0 or not m.mem.requires_grad for m in model.net if hasattr(m, "mem")
    )
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))


def test_stream_rejects_networks_with_their_own_time_loop() -> None:
    model = rs.SpikingClassifier(Tutorial(), NUM_STEPS)
    with model._stream() as span, pytest.raises(TypeError, match="own time loop"):
        span(_small_data(2)[0], 2)


# --------------------------------------------------------------------------------- HIRE
def test_hire_with_one_period_is_plain_training() -> None:
    data = _small_data(96)
    plain, crafted = _model(), _model()
    kwargs = {"epochs": 2, "batch_size": 32, "progress": False}
    expected = fit(plain, data, optimizer=torch.optim.SGD(plain.parameters(), lr=0.1), **kwargs)
    history = hire(
        crafted, data, periods=1, optimizer=torch.optim.SGD(crafted.parameters(), lr=0.1), **kwargs
    )
    assert history == expected
    for key, value in plain.state_dict().items():
        assert torch.equal(value, crafted.state_dict()[key]), key


def _neuron_work(model: rs.SpikingClassifier, train) -> tuple[int, int]:
    """Neuron steps run forward, and gradients received by their outputs, during ``train``."""
    counts = [0, 0]
    with torch.no_grad():
        model(_small_data(1)[0])  # the one-time probe that finds how to drive the network

    def backward(grad: torch.Tensor) -> None:
        counts[1] += 1

    def forward(module: nn.Module, args: object, out: object) -> None:
        counts[0] += 1
        for t in out if isinstance(out, tuple) else (out,):
            if isinstance(t, torch.Tensor) and t.requires_grad:
                t.register_hook(backward)

    neurons = [m for m in model.modules() if isinstance(m, snn.SpikingNeuron)]
    handles = [m.register_forward_hook(forward) for m in neurons]
    try:
        train(model)
    finally:
        for h in handles:
            h.remove()
    return counts[0], counts[1]


def test_hire_does_the_neuron_work_of_one_plain_pass() -> None:
    """HIRE's cost claim, counted rather than timed: per batch, each of the T steps of every
    neuron runs forward once and gets one gradient, as in plain training; FGSM-AT doubles it."""
    data, kwargs = _small_data(64), {"epochs": 1, "batch_size": 32, "progress": False}
    plain = _neuron_work(_model(), lambda m: fit(m, data, **kwargs))
    layers = 2  # snntorch_conv: one hidden and one output Leaky
    assert plain == (2 * NUM_STEPS * layers,) * 2  # 2 batches; one gradient per step
    for periods in (2, NUM_STEPS):
        work = _neuron_work(_model(), lambda m, p=periods: hire(m, data, periods=p, **kwargs))
        assert work == plain, periods
    fgsm = _neuron_work(_model(), lambda m: fit(m, data, adversary=rs.training.FGSM(0.1), **kwargs))
    assert fgsm == (2 * plain[0], 2 * plain[1])


def test_hire_matches_a_hand_written_reference() -> None:
    """One batch, T = 6 in periods of 2: three updates, noise crafted from each backward pass.

    The reference drives the snnTorch network directly: state carried over and detached
    at the period boundaries, x_{n+1} = clip(x + eps * sign(grad_x L_n), 0, 1).
    """
    x, y = _small_data(16)
    eps, lr = 0.1, 0.5
    model = _model(num_steps=6)
    reference = copy.deepcopy(model.net)
    hire(
        model,
        (x, y),
        epochs=1,
        periods=3,
        noise_eps=eps,
        optimizer=torch.optim.SGD(model.parameters(), lr=lr),
        batch_size=16,
        progress=False,
    )

    optimizer = torch.optim.SGD(reference.parameters(), lr=lr)
    neurons = [m for m in reference if isinstance(m, snn.Leaky)]
    for m in neurons:
        m.reset_mem()
    order = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    x_n = x
    for _ in range(3):
        x_in = x_n.clone().requires_grad_(True)
        for m in neurons:
            m.mem = m.mem.detach()
        logits = torch.stack([reference(x_in)[1] for _ in range(2)]).mean(0)
        optimizer.zero_grad()
        F.cross_entropy(logits, y).backward()
        optimizer.step()
        x_n = (x + eps * x_in.grad.sign()).clamp(0, 1)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.net.state_dict()[key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["snntorch_explicit_state", "spikingjelly_multi_step"])
def test_hire_trains_other_host_layouts(name: str) -> None:
    model = _model(net=STREAM_NETS[name]())
    x, y = _small_data(128)
    before = copy.deepcopy(model.state_dict())
    history = hire(model, (x, y), epochs=3, periods=2, batch_size=32, progress=False)
    # Measured (seeds 0-1), first -> last epoch: explicit state 2.36 -> 2.17, 2.41 -> 2.24;
    # SpikingJelly 2.3014 -> 2.3001, 2.3035 -> 2.3022: small, but every epoch lower, and
    # 1000x the float noise of a loss averaged over 128 digits.
    assert history.loss[-1] < history.loss[0]
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_hire_resume_equals_uninterrupted(tmp_path) -> None:
    data = _small_data(96)
    kwargs = {"periods": 2, "noise_eps": 0.1, "batch_size": 32, "progress": False}
    reference = _model()
    expected = hire(reference, data, epochs=3, **kwargs)
    hire(_model(), data, epochs=1, checkpoint_dir=tmp_path, **kwargs)
    resumed = _model(seed=5)
    assert hire(resumed, data, epochs=3, checkpoint_dir=tmp_path, **kwargs) == expected
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    with pytest.raises(ValueError, match="periods"):
        hire(_model(), data, epochs=3, checkpoint_dir=tmp_path, **{**kwargs, "periods": 4})


@pytest.mark.parametrize(
    ("model", "kwargs", "error", "match"),
    [
        (nn.Linear(64, 10), {}, TypeError, "SpikingClassifier"),
        (None, {"periods": 0}, ValueError, "periods"),
        (None, {"periods": NUM_STEPS + 1}, ValueError, "periods"),
        (None, {"periods": 1.5}, ValueError, "periods"),
        (None, {"noise_eps": -0.1}, ValueError, "noise_eps"),
        (None, {"noise_eps": [0.1, 0.2]}, ValueError, "noise_eps"),
        (None, {"noise_eps": "big"}, ValueError, "noise_eps"),
        (None, {"regularizers": [3]}, TypeError, "regularizers"),
        (None, {"epochs": 0}, ValueError, "epochs"),
    ],
)
def test_hire_errors(model, kwargs, error, match: str) -> None:
    model = _model() if model is None else model
    with pytest.raises(error, match=match):
        hire(model, _small_data(8), **{"epochs": 1, "progress": False, **kwargs})


# --------------------------------------------------------------------------- StoG penalty
def _gated(seed: int = 0) -> rs.SpikingClassifier:
    torch.manual_seed(seed)
    return rs.SpikingClassifier(rs.adapt(snntorch_conv(), "stochastic-gate"), NUM_STEPS)


def _rhos(model: nn.Module) -> torch.Tensor:
    return torch.cat([m.rho.detach().flatten() for m in model.modules() if hasattr(m, "rho")])


def test_gate_penalty_value_and_gradient() -> None:
    model = _gated()
    with torch.no_grad():
        model(_small_data(2)[0])  # materialise rho
        for m in model.modules():
            if hasattr(m, "rho"):
                m.rho.uniform_(0.2, 1.0)
    rhos = [m.rho for m in model.modules() if hasattr(m, "rho")]
    penalty = GatePenalty(gamma=0.3)(model)
    expected = 0.15 * sum(float(r.detach().double().square().sum()) for r in rhos)
    assert abs(float(penalty.detach()) - expected) < 1e-5 * expected
    grads = torch.autograd.grad(penalty, rhos)
    for r, g in zip(rhos, grads, strict=True):
        torch.testing.assert_close(g, 0.3 * r.detach())  # d/d rho gamma/2 ||rho||^2


def test_gate_penalty_shrinks_rho_and_freezing_stops_it() -> None:
    data = _small_data(128)
    kwargs = {"epochs": 4, "batch_size": 32, "progress": False}
    means: dict[str, float] = {}
    for name, penalty in (("none", None), ("penalty", GatePenalty(gamma=0.05))):
        model = _gated()
        fit(model, data, regularizers=[penalty] if penalty else [], **kwargs)
        means[name] = float(_rhos(model).mean())
    # Measured (seeds 0-2): rho stays at its clamp 1.0 without the penalty, 0.9841-0.9842
    # with it: the penalty, not training noise, sets the gap.
    assert means["penalty"] < means["none"] - 0.01, means

    model = _gated()
    snapshots: list[torch.Tensor] = []
    fit(
        model,
        data,
        regularizers=[GatePenalty(gamma=0.05, freeze_after=2)],
        callbacks=[lambda epoch, history: snapshots.append(_rhos(model))],
        **kwargs,
    )
    assert not torch.equal(snapshots[0], snapshots[1])  # trained in epochs 1 and 2
    assert torch.equal(snapshots[1], snapshots[2]) and torch.equal(snapshots[2], snapshots[3])
    assert all(p.requires_grad for p in model.parameters())  # restored after fit


def test_gate_penalty_errors() -> None:
    with pytest.raises(ValueError, match="gamma"):
        GatePenalty(gamma=-1.0)
    with pytest.raises(ValueError, match="freeze_after"):
        GatePenalty(freeze_after=-2)
    with pytest.raises(ValueError, match="stochastic gates"):
        GatePenalty()(_model())


# --------------------------------------------------------------------- SNN-RAT retraction
def _gram_error(model: nn.Module) -> float:
    """Mean over Linear/Conv layers of ||W W^T - I||_F / ||I||_F."""
    errors = []
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            w = m.weight.detach().flatten(1).double()
            eye = torch.eye(w.shape[0], dtype=w.dtype)
            errors.append(float((w @ w.T - eye).norm() / eye.norm()))
    return sum(errors) / len(errors)


def test_retract_maps_singular_values_exactly() -> None:
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, dtype=torch.float64) * 0.3
    beta = 0.05
    out = retract(w, beta)
    s = torch.linalg.svdvals(w.flatten(1))
    torch.testing.assert_close(torch.linalg.svdvals(out.flatten(1)), (1 + beta) * s - beta * s**3)
    torch.testing.assert_close(
        retract(w, beta),
        (1 + beta) * w
        - beta
        * torch.einsum("ij,kj,kl->il", w.flatten(1), w.flatten(1), w.flatten(1)).reshape(w.shape),
    )


def test_retraction_samples_rows_of_large_linear_layers() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(5, 40)
    before = layer.weight.detach().clone()
    OrthogonalRetraction(beta=0.1, max_rows=10, row_fraction=0.25).after_step(layer)
    changed = (layer.weight != before).any(1)
    assert int(changed.sum()) == 10  # ceil(0.25 * 40) rows, retracted as one sub-matrix
    torch.testing.assert_close(layer.weight[changed], retract(before[changed], 0.1))


def test_retraction_brings_w_wt_closer_to_identity_during_training() -> None:
    data = _small_data(256)
    errors = {}
    for name, regs in (("plain", []), ("retraction", [OrthogonalRetraction(beta=0.05)])):
        model = _model()
        fit(model, data, epochs=4, batch_size=32, regularizers=regs, progress=False)
        errors[name] = _gram_error(model)
    # Measured (seeds 0-2): plain 0.672-0.695, retraction 0.170-0.225 (ratio 0.25-0.33).
    assert errors["retraction"] < 0.7 * errors["plain"], errors


def test_retraction_errors() -> None:
    with pytest.raises(ValueError, match="beta"):
        OrthogonalRetraction(beta=0.0)
    with pytest.raises(ValueError, match="row_fraction"):
        OrthogonalRetraction(row_fraction=1.5)
    with pytest.raises(ValueError, match="max_rows"):
        OrthogonalRetraction(max_rows=0)
    with pytest.raises(TypeError, match="layers"):
        OrthogonalRetraction(layers=[nn.ReLU()])


# ------------------------------------------------------------- the recipes train
EPS = 0.1


@pytest.mark.parametrize("recipe", ["pgd", "trades", "hire"])
def test_recipe_lowers_its_own_training_loss(recipe: str) -> None:
    """Each recipe's objective falls over 4 epochs on 256 digits, and the weights move.

    Measured (Adam 5e-3, batch 64, seeds 0-2), first -> last epoch: PGD-AT 2.34-2.38 ->
    2.09-2.19 (drop 0.18-0.29), TRADES 2.26-2.28 -> 1.81-1.87 (0.39-0.47), HIRE 2.28-2.31
    -> 1.71-1.85 (0.45-0.56); the test asserts a drop of 0.1.

    The robustness each recipe buys (PGD-10 robust accuracy at eps 0.1 on the 450 test
    digits, plain training 0.57: PGD-AT 0.73, TRADES 0.74, HIRE 0.72 after 20 epochs) is
    measured by benchmarks/recipes_digits.py over seeds, not asserted here: accuracy after
    training differs from one CPU to another. The mechanics are tested exactly:
    tests/test_training.py (fit with each adversary against a hand-written loop) and
    test_hire_matches_a_hand_written_reference above.
    """
    model = _model()
    x, y = _small_data(256)
    before = copy.deepcopy(model.state_dict())
    kwargs = {
        "epochs": 4,
        "optimizer": torch.optim.Adam(model.parameters(), lr=5e-3),
        "batch_size": 64,
        "progress": False,
    }
    if recipe == "pgd":
        history = fit(model, (x, y), adversary=PGD(EPS, alpha=EPS / 2, steps=3), **kwargs)
    elif recipe == "trades":
        history = fit(model, (x, y), adversary=TRADES(EPS, steps=3), **kwargs)
    else:
        history = hire(model, (x, y), periods=2, noise_eps=2 * EPS, **kwargs)
    assert len(history) == 4
    assert history.loss[-1] < history.loss[0] - 0.1, history.loss
    assert all(not torch.equal(before[k], v) for k, v in model.state_dict().items() if "net.0" in k)
