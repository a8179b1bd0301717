"""Gradient modes and the surrogate catalogue: exact forward, chosen backward, restoration."""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Callable

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from helpers import NUM_STEPS, digits_tensors, sj_conv, snntorch_conv, trained
from spikingjelly.activation_based import neuron, surrogate
from torch import nn

import robust_spikes as rs
from robust_spikes import SpikingClassifier
from robust_spikes.gradients import (
    MODES,
    PDSG,
    SURROGATES,
    Exponential,
    ExponentialD,
    Rectangular,
    StraightThrough,
    Surrogate,
    Triangle,
    ensemble,
)
from robust_spikes.gradients._modes import GradientContext
from robust_spikes.gradients._surrogates import SpikeFunction, Tie

CATALOGUE = [*ensemble(), PDSG()]
MODELS = ["snntorch", "spikingjelly", "snntorch-ta-lif", "spikingjelly-ta-lif"]


def build(name: str) -> SpikingClassifier:
    """A fresh classifier with trained weights (TA-LIF: signature recorded on clean data)."""
    if name.startswith("snntorch"):
        net, readout = trained("snntorch_conv"), "membrane"
    else:
        net, readout = trained("sj_conv_m", readout="count", epochs=8), "count"
    if name.endswith("ta-lif"):
        net = rs.adapt(net, "ta-lif")
    model = SpikingClassifier(net, NUM_STEPS, readout=readout)  # type: ignore[arg-type]
    if name.endswith("ta-lif"):
        rs.neurons.record_signature(model, [digits_tensors()[0][:256]])
    return model


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    _, _, x, y = digits_tensors()
    return x[:32].clone(), y[:32].clone()


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    xg = x.clone().requires_grad_()
    logits = model(xg)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), xg)
    return logits.detach(), grad


def spike_functions(model: SpikingClassifier) -> list[object]:
    """The object each neuron of the model fires through (under adapters: the host's)."""
    host = model._host
    return [getattr(*host.spike_slot(m)[:2]) for m in host.neurons(model.net)]


Snapshot = tuple[list[int], list[tuple[str, type, bool]], dict[str, torch.Tensor]]


def snapshot(model: SpikingClassifier) -> Snapshot:
    """Everything a gradient context must leave as it was."""
    return (
        [id(f) for f in spike_functions(model)],
        [(name, type(m), m.training) for name, m in model.named_modules()],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def assert_same(before: Snapshot, after: Snapshot) -> None:
    ids, modules, state = before
    ids2, modules2, state2 = after
    assert ids == ids2, "spike functions not restored"
    assert modules == modules2, "module tree or train/eval modes changed"
    assert state.keys() == state2.keys()
    for k in state:
        assert torch.equal(state[k], state2[k]), k


# ------------------------------------------------------------------- forward and backward
@pytest.mark.parametrize("name", MODELS)
def test_every_surrogate_keeps_the_forward_and_gives_its_own_gradient(name: str) -> None:
    model = build(name)
    x, y = batch()
    plain_logits, plain_grad = input_gradient(model, x, y)
    grads = []
    for member in CATALOGUE:
        with model.gradient("bptt", surrogate=member) as entered:
            assert entered is model
            logits, grad = input_gradient(model, x, y)
        assert torch.equal(logits, plain_logits), member
        assert grad.isfinite().all(), member
        assert grad.abs().sum() > 0, member
        grads.append(grad)
    for (i, a), (j, b) in itertools.combinations(enumerate(grads), 2):
        assert not torch.equal(a, b), (CATALOGUE[i], CATALOGUE[j])
    assert not any(torch.equal(plain_grad, g) for g in grads)
    with model.gradient("bptt"):  # surrogate=None: the host's own, a no-op
        logits, grad = input_gradient(model, x, y)
    assert torch.equal(logits, plain_logits) and torch.equal(grad, plain_grad)
    with model.gradient("pdsg"):
        assert torch.equal(input_gradient(model, x, y)[1], grads[-1])


@pytest.mark.parametrize("name", ["snntorch", "spikingjelly-ta-lif"])
def test_inside_the_context_neurons_fire_through_the_surrogate_in_the_host_tie(name: str) -> None:
    model = build(name)
    member = Triangle(gamma=0.5)
    with model.gradient("bptt", surrogate=member):
        inside = spike_functions(model)
    assert len(inside) == 2
    tie = ">" if name.startswith("snntorch") else ">="
    for f in inside:
        assert isinstance(f, SpikeFunction) and f.surrogate == member and f.tie == tie
    assert not any(isinstance(f, SpikeFunction) for f in spike_functions(model))


def test_gates_and_threshold_adaptation_together_with_the_same_generator_seed() -> None:
    net = rs.adapt(trained("snntorch_conv"), ["ta-lif", "stochastic-gate"])
    model = SpikingClassifier(net, NUM_STEPS)
    rs.neurons.record_signature(model, [digits_tensors()[0][:256]])
    with torch.no_grad():
        net[1].rho.fill_(0.7)
    x, y = batch()
    model.generator.manual_seed(5)
    plain_logits, plain_grad = input_gradient(model, x, y)
    model.generator.manual_seed(5)
    with model.gradient("pdsg"):
        logits, grad = input_gradient(model, x, y)
    assert torch.equal(logits, plain_logits)
    assert grad.isfinite().all() and grad.abs().sum() > 0 and not torch.equal(grad, plain_grad)


# ------------------------------------------------------------------------- restoration
@pytest.mark.parametrize("name", MODELS)
def test_originals_restored_after_the_context_and_after_an_exception(name: str) -> None:
    model = build(name)
    model.net[0].train(False)  # a mixed train/eval tree must stay mixed
    before = snapshot(model)
    with model.gradient("bptt", surrogate=Exponential(gamma=2.0)):
        _, modules, state = snapshot(model)
        # state_dict and modes untouched; only SpikingJelly's surrogate modules differ in type
        assert [(n, t) for n, _, t in modules] == [(n, t) for n, _, t in before[1]]
        assert_same(before, (before[0], before[1], state))
    assert_same(before, snapshot(model))
    with pytest.raises(KeyError, match="inside"), model.gradient("pdsg"):
        raise KeyError("inside")
    assert_same(before, snapshot(model))
    with model.gradient("pdsg"):  # the locks were released: the model can be entered again
        pass
    assert_same(before, snapshot(model))


def test_spikingjelly_surrogate_modules_are_replaced_in_place() -> None:
    model = build("spikingjelly")
    node = model.net[1]
    original = node.surrogate_function
    order = list(node._modules)
    with model.gradient("bptt", surrogate=StraightThrough()):
        assert list(node._modules) == order
        assert isinstance(node._modules["surrogate_function"], SpikeFunction)
    assert node._modules["surrogate_function"] is original and list(node._modules) == order


# ------------------------------------------------------------------------ the surrogates
FORMULAS: dict[type[Surrogate], Callable[[torch.Tensor, float], torch.Tensor]] = {
    Triangle: lambda x, g: torch.clamp(g - x.abs(), min=0) / g**2,
    Rectangular: lambda x, g: (x.abs() < g / 2).double() / g,
    Exponential: lambda x, g: torch.exp(-g * x.abs()),
    ExponentialD: lambda x, g: 0.3 * torch.exp(-g * x.abs()),
    StraightThrough: lambda x, g: torch.ones_like(x),
}


def grid(gamma: float) -> torch.Tensor:
    """x = u - Vth in float64, with 0, +-gamma/2 and +-gamma exactly on it."""
    points = torch.linspace(-3, 3, 121, dtype=torch.float64)
    edges = torch.tensor([0.0, -0.0, gamma / 2, -gamma / 2, gamma, -gamma], dtype=torch.float64)
    return torch.cat([points, edges])


@pytest.mark.parametrize("tie", [">", ">="])
@pytest.mark.parametrize("member", ensemble(), ids=repr)
def test_backward_equals_the_formula_and_forward_the_host_tie(member: Surrogate, tie: Tie) -> None:
    gamma = getattr(member, "gamma", 1.0)
    x = grid(gamma).requires_grad_()
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    spikes = member.spike_function(tie)(x)
    fires = x.detach() >= 0 if tie == ">=" else x.detach() > 0
    assert spikes.dtype == torch.float64 and torch.equal(spikes, fires.double())
    assert (spikes[x.detach() == 0] == (1.0 if tie == ">=" else 0.0)).all()
    (grad,) = torch.autograd.grad(spikes, x, g)
    torch.testing.assert_close(grad, g * FORMULAS[type(member)](x.detach(), gamma))


@pytest.mark.parametrize("tie", [">", ">="])
def test_pdsg_backward_is_the_normal_density_at_the_layer_std(tie: Tie) -> None:
    x = (torch.linspace(-2, 3, 50, dtype=torch.float64) ** 3).requires_grad_()
    (grad,) = torch.autograd.grad(PDSG().spike_function(tie)(x).sum(), x)
    values = x.detach()
    sigma = math.sqrt(((values - values.mean()) ** 2).mean().item())
    density = torch.exp(-((values - sigma / 2) ** 2) / (2 * sigma**2)) / (
        sigma * math.sqrt(2 * math.pi)
    )
    torch.testing.assert_close(grad, density)
    flat = torch.full((4,), 0.25, dtype=torch.float64, requires_grad=True)  # std 0 -> sigma 1
    (grad,) = torch.autograd.grad(PDSG().spike_function(tie)(flat).sum(), flat)
    expected = math.exp(-0.5 * 0.25**2) / math.sqrt(2 * math.pi)  # N(0.5, 1) at 0.25
    torch.testing.assert_close(grad, torch.full_like(flat, expected))


def test_forward_equals_the_frameworks_own_spike_functions_in_float32() -> None:
    x = torch.tensor([-1.0, -1e-40, -0.0, 0.0, 1e-40, 1.0])
    ours = Triangle().spike_function(">")(x)
    assert torch.equal(ours, snn.surrogate.atan()(x)) and ours[3] == 0  # snnTorch: x > 0
    ours = Triangle().spike_function(">=")(x)
    assert torch.equal(ours, surrogate.Sigmoid()(x)) and ours[3] == 1  # SpikingJelly: x >= 0
    assert ours.dtype == torch.float32


def test_catalogue_and_ensemble() -> None:
    assert set(SURROGATES) == {
        "triangle", "rectangular", "exponential", "exponential-d", "straight-through", "pdsg"
    }  # fmt: skip
    members = ensemble()
    assert len(members) == 17 and len(set(members)) == 17
    by_kind: dict[str, list[float]] = {}
    for m in members:
        by_kind.setdefault(m.name, []).append(getattr(m, "gamma", math.nan))
    assert by_kind["triangle"] == [0.25, 0.5, 1.0, 2.0, 3.0]
    assert by_kind["rectangular"] == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert by_kind["exponential"] == by_kind["exponential-d"] == [0.5, 1.0, 2.0]
    assert len(by_kind["straight-through"]) == 1
    assert Triangle(2) == Triangle(gamma=2.0) and repr(Triangle(2)) == "Triangle(gamma=2.0)"
    assert set(MODES) >= {"bptt", "pdsg"}


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("gamma", [0, -1.0, math.nan, math.inf, True, "1"])
@pytest.mark.parametrize("cls", [Triangle, Rectangular, Exponential, ExponentialD])
def test_bad_gamma_is_named(cls: type, gamma: object) -> None:
    with pytest.raises(ValueError, match="gamma must be a positive finite number"):
        cls(gamma)


def test_argument_errors_name_the_argument() -> None:
    model = SpikingClassifier(snntorch_conv(), NUM_STEPS)
    with pytest.raises(ValueError, match=r"mode must be one of \['bptt', 'pdsg'.*got 'bpt'"):
        model.gradient("bpt")
    with pytest.raises(TypeError, match=r"surrogate must be a robust_spikes\.gradients\.Surrogate"):
        model.gradient("bptt", surrogate=snn.surrogate.atan())
    with pytest.raises(ValueError, match=r"mode 'pdsg' uses PDSG.*surrogate=Triangle"):
        model.gradient("pdsg", surrogate=Triangle())
    with pytest.raises(ValueError, match="tie must be one of"):
        Triangle().spike_function("=>")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="surrogate must be"):
        SpikeFunction(lambda x: x, ">")  # type: ignore[arg-type]


def test_nested_or_concurrent_contexts_raise_and_leave_the_outer_one_intact() -> None:
    net = snntorch_conv()
    model, twin = SpikingClassifier(net, NUM_STEPS), SpikingClassifier(net, NUM_STEPS)
    before = snapshot(model)
    outer = model.gradient("bptt")  # even a no-op holds the network
    with outer:
        with pytest.raises(RuntimeError, match="cannot be nested or used concurrently"):
            model.gradient("pdsg").__enter__()
        with pytest.raises(RuntimeError, match="cannot be nested"), twin.gradient("pdsg"):
            pass  # a second classifier over the same network
        with pytest.raises(RuntimeError, match="cannot be entered twice"):
            outer.__enter__()
        assert outer.active
    assert not outer.active
    assert_same(before, snapshot(model))
    with twin.gradient("pdsg"):
        clone = copy.deepcopy(net)  # a copy made inside is not held by the context
        with SpikingClassifier(clone, NUM_STEPS).gradient("bptt", surrogate=Triangle()):
            pass
    assert_same(before, snapshot(model))


def test_a_spike_function_that_is_not_the_heaviside_is_refused_and_nothing_changes() -> None:
    net = sj_conv("m")
    smooth = surrogate.Sigmoid(spiking=False)  # forward: the sigmoid itself, not spikes
    net[5].surrogate_function = smooth
    model = SpikingClassifier(net, NUM_STEPS)
    before = snapshot(model)
    with (
        pytest.raises(TypeError, match=r"not the Heaviside step 1\[x >= 0\]"),
        model.gradient("bptt", surrogate=Triangle()),
    ):
        pass
    assert_same(before, snapshot(model))
    smooth.set_spiking_mode(True)
    with model.gradient("bptt", surrogate=Triangle()):  # no lock was left behind
        assert isinstance(net[5].surrogate_function, SpikeFunction)
    assert net[5].surrogate_function is smooth


def test_gradient_returns_a_context_that_reports_its_mode() -> None:
    model = SpikingClassifier(nn.Sequential(nn.Flatten(), nn.Linear(64, 10), neuron.IFNode()), 2)
    context = model.gradient("bptt", surrogate=Rectangular(gamma=0.5))
    assert isinstance(context, GradientContext) and not context.active
    assert repr(context) == "GradientContext(mode='bptt', surrogate=Rectangular(gamma=0.5))"


# ------------------------------------------------------------------------ special cases
def test_non_finite_potentials_fire_as_the_host_and_infinite_ones_get_no_gradient() -> None:
    x = torch.tensor([-math.inf, math.inf, math.nan, 0.0], requires_grad=True)
    for tie, host in ((">", snn.surrogate.atan()), (">=", surrogate.Sigmoid())):
        out = Triangle().spike_function(tie)(x)  # type: ignore[arg-type]
        assert torch.equal(out.detach(), host(x.detach()))
        (grad,) = torch.autograd.grad(out.sum(), x)
        assert torch.equal(grad[[0, 1, 3]], torch.tensor([0.0, 0.0, 1.0]))


def test_a_neuron_trained_without_surrogate_gets_a_gradient_inside_the_context() -> None:
    net = snntorch_conv()
    net[1] = snn.Leaky(beta=0.9, init_hidden=True, surrogate_disable=True)
    model = SpikingClassifier(net, NUM_STEPS)
    x, y = batch()
    xg = x.clone().requires_grad_()
    logits = model(xg)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), xg, allow_unused=True)
    assert grad is None  # surrogate_disable=True: the input is cut off the graph
    logits = logits.detach()
    with model.gradient("bptt", surrogate=StraightThrough()):
        logits_inside, grad_inside = input_gradient(model, x, y)
    assert torch.equal(logits_inside, logits) and grad_inside.abs().sum() > 0


@pytest.mark.compile
def test_compiled_model_follows_the_swapped_surrogates() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), snn.Leaky(0.9, init_hidden=True))
    with torch.no_grad():
        net[1].weight.mul_(4)  # the layer spikes
    plain = SpikingClassifier(net, 2, readout="count")
    compiled = SpikingClassifier(net, 2, readout="count", compile=True)
    x, y = batch()
    for member in (Triangle(gamma=1.0), Triangle(gamma=2.0)):  # a new gamma recompiles
        results = []
        for model in (plain, compiled):
            with model.gradient("bptt", surrogate=member):
                results.append(input_gradient(model, x, y))
        assert torch.equal(results[1][0], results[0][0])
        torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-4, atol=1e-6)
