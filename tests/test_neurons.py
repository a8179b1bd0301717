"""Robust neurons: TA-LIF and stochastic gates on real snnTorch and SpikingJelly neurons."""

from __future__ import annotations

import copy
import functools
import io

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from helpers import NUM_STEPS, sj_conv, snntorch_conv, snntorch_mlp
from spikingjelly.activation_based import functional, neuron, surrogate
from torch import nn

import robust_spikes as rs
from robust_spikes import SpikingClassifier
from robust_spikes._adapters import NeuronAdapter
from robust_spikes.neurons import StochasticGate, ThresholdAdaptation
from robust_spikes.neurons.functional import concrete_gate, relaxed_gate

DOUBLE = torch.float64


def host_layer(kind: str) -> tuple[nn.Module, str]:
    """A single neuron layer of each supported kind, and its framework."""
    makers = {
        "leaky": lambda: snn.Leaky(beta=0.75, init_hidden=True, output=True),
        "leaky-zero-now": lambda: snn.Leaky(
            beta=0.75, init_hidden=True, output=True, reset_mechanism="zero", reset_delay=False
        ),
        "leaky-explicit": lambda: snn.Leaky(beta=0.75),
        "synaptic": lambda: snn.Synaptic(alpha=0.5, beta=0.75, init_hidden=True, output=True),
        "synaptic-zero": lambda: snn.Synaptic(
            alpha=0.5, beta=0.75, init_hidden=True, output=True, reset_mechanism="zero"
        ),
        "if": lambda: neuron.IFNode(),
        "lif": lambda: neuron.LIFNode(tau=2.0),
        "lif-soft-nodecay": lambda: neuron.LIFNode(tau=4.0, decay_input=False, v_reset=None),
        "plif": lambda: neuron.ParametricLIFNode(init_tau=2.0),
        "lif-detach-reset": lambda: neuron.LIFNode(tau=2.0, detach_reset=True),
    }
    module = makers[kind]()
    return module, ("snntorch" if isinstance(module, snn.SpikingNeuron) else "spikingjelly")


HOSTS = [
    "leaky",
    "leaky-zero-now",
    "leaky-explicit",
    "synaptic",
    "synaptic-zero",
    "if",
    "lif",
    "lif-soft-nodecay",
    "plif",
    "lif-detach-reset",
]


def run_layer(layer: nn.Module, x_seq: torch.Tensor, mode: str = "s") -> torch.Tensor:
    """Spikes of one neuron layer over a [T, N, F] input, state reset before."""
    for m in layer.modules():
        if callable(getattr(m, "reset_mem", None)):
            m.reset_mem()
    functional.reset_net(layer)
    if mode == "m":
        return layer(x_seq)
    outs = []
    state = None
    for x in x_seq:
        if isinstance(layer, snn.Leaky | ThresholdAdaptation) and not _init_hidden(layer):
            out = layer(x, state)
            state = out[1]
        else:
            out = layer(x)
        outs.append(out[0] if isinstance(out, tuple) else out)
    return torch.stack(outs)


def _init_hidden(layer: nn.Module) -> bool:
    host = layer.base_host() if isinstance(layer, NeuronAdapter) else layer
    return bool(getattr(host, "init_hidden", True))


def with_signature(adapter: ThresholdAdaptation, steps: int, features: tuple[int, ...]):
    adapter._materialize(features)
    adapter.signature.data = torch.randn(steps, *features, dtype=adapter.theta_v.dtype)
    return adapter


# --------------------------------------------------------------- equivalence when off
@pytest.mark.parametrize(
    ("kind", "mode"),
    [(k, "s") for k in HOSTS] + [(k, "m") for k in HOSTS if host_layer(k)[1] == "spikingjelly"],
)
def test_adaptation_off_equals_the_host_exactly(kind: str, mode: str) -> None:
    host, framework = host_layer(kind)
    if framework == "spikingjelly":
        host.step_mode = mode
    x_seq = 2.5 * torch.rand(8, 4, 6, generator=torch.Generator().manual_seed(0))
    expected = run_layer(host, x_seq, mode)
    adapter = with_signature(ThresholdAdaptation(host), 8, (6,))
    with torch.no_grad():
        adapter.theta_v.zero_()
    got = run_layer(adapter, x_seq, mode)
    assert 0 < expected.sum() < expected.numel()  # the case has spikes and silences
    assert torch.equal(got, expected)
    gate = StochasticGate(host)  # rho = 1: p = 1, every spike passes
    assert torch.equal(run_layer(gate, x_seq, mode), expected)


@pytest.mark.parametrize("builder", ["snntorch", "sj-s", "sj-m"])
def test_adapted_model_with_adaptation_off_equals_the_original(builder: str) -> None:
    torch.manual_seed(0)
    net = {"snntorch": snntorch_conv, "sj-s": lambda: sj_conv("s"), "sj-m": lambda: sj_conv("m")}[
        builder
    ]()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3)
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    plain = SpikingClassifier(net, NUM_STEPS)(x)
    adapted = rs.adapt(net, ["ta-lif", "stochastic-gate"])
    model = SpikingClassifier(adapted, NUM_STEPS)
    rs.neurons.record_signature(model, [x])
    for m in adapted.modules():
        if isinstance(m, ThresholdAdaptation):
            with torch.no_grad():
                m.theta_v.zero_()
    assert torch.equal(model(x), plain)
    for m in adapted.modules():
        if isinstance(m, ThresholdAdaptation):
            with torch.no_grad():
                m.theta_v.fill_(0.5)
    assert not torch.equal(model(x), plain)


# ------------------------------------------------------------------ golden trajectories
def talif_reference(current, theta_0, theta_v, signature, tau_m):
    """METHODS.md section 5 in float64: hard reset, spike when u > Vth."""
    steps, width = len(current), len(current[0])
    u, vth = [0.0] * width, [theta_0] * width
    spikes, thresholds, potentials = [], [], []
    for t in range(steps):
        u = [(1 - 1 / tau_m) * u[i] + current[t][i] for i in range(width)]
        vth = [vth[i] + max(theta_v[i], 0.0) * (u[i] - signature[t][i]) for i in range(width)]
        # snnTorch fires on u > Vth, SpikingJelly on u >= Vth: the case must have no ties
        assert all(abs(u[i] - vth[i]) > 1e-9 for i in range(width))
        s = [1.0 if u[i] > vth[i] else 0.0 for i in range(width)]
        u = [u[i] * (1 - s[i]) for i in range(width)]
        spikes.append(s)
        thresholds.append(vth)
        potentials.append(u)
    return (torch.tensor(v, dtype=DOUBLE) for v in (spikes, thresholds, potentials))


CURRENT = [
    [0.625, 1.5, 0.25],
    [0.75, 0.125, 0.5],
    [0.875, 1.25, 0.5],
    [0.25, 0.375, 1.25],
    [1.125, 0.5, 0.0],
    [0.5, 1.75, 0.625],
    [0.375, 0.25, 1.5],
    [1.5, 0.625, 0.75],
    [0.125, 1.0, 0.375],
]
THETA_V = [0.5, -0.25, 0.25]  # the negative one is clamped to 0
SIGNATURE = [[0.5, 0.75, 0.25 * (t % 3)] for t in range(len(CURRENT))]


@pytest.mark.parametrize("framework", ["snntorch", "spikingjelly"])
def test_golden_trajectory_of_ta_lif(framework: str) -> None:
    tau_m = 4.0
    if framework == "snntorch":  # zero reset applied in the same step == hard reset
        host = snn.Leaky(
            beta=1 - 1 / tau_m,
            init_hidden=True,
            output=True,
            reset_mechanism="zero",
            reset_delay=False,
        )
    else:
        host = neuron.LIFNode(tau=tau_m, decay_input=False, v_reset=0.0)
    adapter = ThresholdAdaptation(host, shape=(3,)).double()
    with torch.no_grad():
        adapter.theta_v.copy_(torch.tensor(THETA_V))
    adapter.signature.data = torch.tensor(SIGNATURE, dtype=DOUBLE)
    spikes_ref, vth_ref, u_ref = talif_reference(CURRENT, 1.0, THETA_V, SIGNATURE, tau_m)
    spikes, vth, u = [], [], []
    for current in torch.tensor(CURRENT, dtype=DOUBLE):
        out = adapter(current[None])
        spikes.append((out[0] if isinstance(out, tuple) else out)[0])
        vth.append(adapter.vth[0].clone())
        u.append((adapter.mem if framework == "snntorch" else adapter.v)[0].clone())
    assert 5 <= spikes_ref.sum() <= 20  # thresholds move both ways and spikes happen
    torch.testing.assert_close(torch.stack(spikes).double(), spikes_ref, rtol=0, atol=0)
    torch.testing.assert_close(torch.stack(vth), vth_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.stack(u), u_ref, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- gradients
def test_gradcheck_of_the_gate_relaxation() -> None:
    uniform = torch.rand(5, 4, dtype=DOUBLE, generator=torch.Generator().manual_seed(0))
    p = torch.tensor([0.2, 0.5, 0.7, 0.9], dtype=DOUBLE, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q: relaxed_gate(q, uniform, 0.5), (p,))
    # the hard mask carries exactly the relaxation's gradient
    (hard_grad,) = torch.autograd.grad(concrete_gate(p, uniform).sum(), p)
    (soft_grad,) = torch.autograd.grad(relaxed_gate(p, uniform).sum(), p)
    torch.testing.assert_close(hard_grad, soft_grad, rtol=0, atol=0)
    assert torch.equal(concrete_gate(p, uniform).detach(), (uniform < p).double())


def smooth_lif(**kwargs) -> nn.Module:
    """A LIF node whose surrogate runs its smooth primitive forward (so gradcheck applies)."""
    sg = surrogate.Sigmoid(alpha=2.0)
    sg.set_spiking_mode(False)
    return neuron.LIFNode(tau=2.0, surrogate_function=sg, **kwargs)


@pytest.mark.parametrize("v_reset", [0.0, None])
def test_gradcheck_through_the_threshold_dynamics(v_reset) -> None:
    adapter = ThresholdAdaptation(smooth_lif(v_reset=v_reset), shape=(3,)).double()
    adapter.step_mode = "m"
    adapter.signature.data = torch.full((6, 3), 0.3, dtype=DOUBLE)
    theta = torch.tensor([0.4, 0.1, 0.7], dtype=DOUBLE, requires_grad=True)
    with torch.no_grad():
        adapter.theta_v.copy_(theta)
    x = 2 * torch.rand(6, 2, 3, dtype=DOUBLE, generator=torch.Generator().manual_seed(0))

    def through_input(x_seq: torch.Tensor) -> torch.Tensor:
        adapter.reset()
        return adapter(x_seq)

    def through_theta(theta_v: torch.Tensor) -> torch.Tensor:
        adapter.reset()
        return torch.func.functional_call(adapter, {"theta_v": theta_v}, (x,))

    assert torch.autograd.gradcheck(through_input, (x.clone().requires_grad_(),))
    assert torch.autograd.gradcheck(through_theta, (theta,))


def test_detached_threshold_ignores_the_threshold_dynamics() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), snn.Leaky(beta=0.8, init_hidden=True))
    net.append(nn.Linear(5, 3)).append(snn.Leaky(beta=0.8, init_hidden=True, output=True))
    with torch.no_grad():
        net[0].weight.mul_(4)
    adapted = rs.adapt(net, "ta-lif")
    model = SpikingClassifier(adapted, 6, input_range=None)
    x = torch.rand(16, 6, generator=torch.Generator().manual_seed(2))
    rs.neurons.record_signature(model, [x])
    ta = adapted[1]
    with torch.no_grad():
        ta.theta_v.fill_(0.5)
    grads = {}
    for detach in (False, True):
        ta.detach_threshold = detach
        xg = x.clone().requires_grad_()
        logits = model(xg)
        loss = F.cross_entropy(logits, torch.zeros(16).long())
        gx, gtheta = torch.autograd.grad(loss, (xg, ta.theta_v), allow_unused=True)
        grads[detach] = (logits.detach(), gx, gtheta)
    assert torch.equal(grads[False][0], grads[True][0])  # the same forward pass
    assert grads[False][2].abs().sum() > 0  # the adaptive gradient reaches theta_v...
    assert grads[True][2] is None  # ...this one does not: Vth is outside the graph
    assert not torch.allclose(grads[False][1], grads[True][1])


# ------------------------------------------------------------------------------- gates
def test_gate_keeps_a_fraction_p_within_four_standard_deviations() -> None:
    gate = StochasticGate(snn.Leaky(beta=0.5, init_hidden=True), shape=(4,))
    p = torch.tensor([0.1, 0.3, 0.6, 0.95])
    with torch.no_grad():
        gate.rho.copy_(torch.tensor([0.02, 0.3, 0.6, 0.95]))  # 0.02 is clamped to p_min
    draws = 20000
    kept = gate(torch.full((draws, 4), 5.0)).detach().mean(0)  # every neuron spikes
    bound = 4 * torch.sqrt(p * (1 - p) / draws)
    assert ((kept - p).abs() <= bound).all(), (kept, p)


def test_same_generator_seed_gives_the_same_masks() -> None:
    torch.manual_seed(0)
    net = rs.adapt(snntorch_mlp("leaky"), functools.partial(StochasticGate, shape=(32,)))
    with torch.no_grad():
        net[1].weight.mul_(4)  # the hidden layer spikes
        net[2].rho.fill_(0.5)
    model = SpikingClassifier(net, NUM_STEPS, generator=torch.Generator().manual_seed(3))
    assert model.is_stochastic
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    first = model(x)
    second = model(x)
    model.generator.manual_seed(3)
    torch.manual_seed(99)  # the global RNG plays no part
    assert torch.equal(model(x), first)
    assert not torch.equal(second, first)
    net[2].mode = "mean"
    assert not model.is_stochastic
    assert torch.equal(model(x), model(x))


# ------------------------------------------------------------------------------- adapt
def test_adapt_keeps_weights_skips_the_output_layer_and_copies() -> None:
    net = snntorch_conv()
    adapted = rs.adapt(net, "ta-lif")
    assert isinstance(adapted[1], ThresholdAdaptation) and isinstance(adapted[5], snn.Leaky)
    assert isinstance(net[1], snn.Leaky), "the original was modified"
    for (name, p), q in zip(
        net.named_parameters(), rs.neurons.unwrap(adapted).parameters(), strict=True
    ):
        assert torch.equal(p, q), name
    assert adapted[1].host is not net[1]
    inplace = rs.adapt(net, "stochastic-gate", inplace=True)
    assert inplace is net and isinstance(net[1], StochasticGate)


def test_adapt_nested_modules_include_exclude_and_combinations() -> None:
    class Inner(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.ModuleDict(
                {"fc": nn.Linear(64, 16), "lif": snn.Leaky(0.9, init_hidden=True)}
            )
            self.head = nn.Sequential(
                nn.Linear(16, 10), snn.Leaky(0.9, init_hidden=True, output=True)
            )

        def forward(self, x):
            return self.head(self.block["lif"](self.block["fc"](x.flatten(1))))

    net = Inner()
    both = rs.adapt(net, ["ta-lif", "stochastic-gate"])
    lif = both.block["lif"]
    assert isinstance(lif, StochasticGate) and isinstance(lif.host, ThresholdAdaptation)
    assert isinstance(both.head[1], snn.Leaky)
    everything = rs.adapt(net, "stochastic-gate", include=["block.lif", "head.1"])
    assert isinstance(everything.head[1], StochasticGate)
    none = rs.adapt(net, "stochastic-gate", exclude=lambda name, m: name == "block.lif")
    assert isinstance(none.block["lif"], snn.Leaky)
    tuned = rs.adapt(net, functools.partial(ThresholdAdaptation, tau_v=1.5))
    assert tuned.block["lif"].tau_v == 1.5
    with pytest.raises(ValueError, match=r"no neurons: \['block.fc'\]"):
        rs.adapt(net, "ta-lif", include=["block.fc"])
    with pytest.raises(ValueError, match="spec must be one of"):
        rs.adapt(net, "ta-alif")
    model = SpikingClassifier(both, NUM_STEPS)
    rs.neurons.record_signature(model, [torch.rand(4, 1, 8, 8)])
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    assert [type(m).__name__ for m in rs.neurons.unwrap(both).modules()] == [
        type(m).__name__ for m in net.modules()
    ]


def test_unsupported_neurons_are_named_with_the_supported_list() -> None:
    net = snntorch_mlp("alpha")  # Alpha is supported (issue 15); SLSTM is not
    net[2] = snn.SLSTM(input_size=32, hidden_size=32, init_hidden=True)
    with pytest.raises(
        TypeError, match=r"supports the snnTorch neurons Leaky, Synaptic.*got SLSTM"
    ):
        rs.adapt(net, "ta-lif")
    assert isinstance(net[2], snn.SLSTM)  # nothing changed
    assert isinstance(rs.adapt(net, "stochastic-gate")[2], StochasticGate)  # gates wrap any


# ------------------------------------------------------------------- state, serialization
@pytest.mark.parametrize("builder", ["snntorch", "sj-m"])
def test_state_is_reset_every_call_and_no_graph_survives(builder: str) -> None:
    net = {"snntorch": snntorch_conv, "sj-m": lambda: sj_conv("m")}[builder]()
    adapted = rs.adapt(net, ["ta-lif", "stochastic-gate"])
    model = SpikingClassifier(adapted, NUM_STEPS)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    rs.neurons.record_signature(model, [x])
    assert torch.equal(model(x), model(x))  # p = 1: deterministic, and state resets
    xg = x.clone().requires_grad_()
    model(xg).sum().backward()
    ta = adapted[1].host
    for state in (ta.vth, ta.mem if builder == "snntorch" else ta.v):
        assert not isinstance(state, torch.Tensor) or state.numel() == 0 or state.grad_fn is None


def test_state_dict_round_trip_through_weights_only_load() -> None:
    torch.manual_seed(0)
    adapted = rs.adapt(snntorch_conv(), ["ta-lif", "stochastic-gate"])
    model = SpikingClassifier(adapted, NUM_STEPS)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    rs.neurons.record_signature(model, [x])
    with torch.no_grad():
        adapted[1].rho.uniform_(0.3, 0.9)
        adapted[1].host.theta_v.uniform_(0.0, 0.5)
    keys = set(model.state_dict())
    assert {"net.1.rho", "net.1.host.theta_v", "net.1.host.signature"} <= keys
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = SpikingClassifier(rs.adapt(snntorch_conv(), ["ta-lif", "stochastic-gate"]), NUM_STEPS)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    model.generator.manual_seed(1)
    fresh.generator.manual_seed(1)
    assert torch.equal(fresh(x), model(x))
    clone = copy.deepcopy(model)
    assert torch.equal(clone(x), model(x))


# ------------------------------------------------------------------------------ errors
def test_errors() -> None:
    with pytest.raises(ValueError, match="tau_v must be a positive number, got -1"):
        ThresholdAdaptation(snn.Leaky(0.9), tau_v=-1)
    with pytest.raises(ValueError, match="shape must be a sequence of positive ints"):
        ThresholdAdaptation(snn.Leaky(0.9), shape=(0, 3))
    with pytest.raises(TypeError, match="got SLSTM"):
        ThresholdAdaptation(snn.SLSTM(input_size=4, hidden_size=4))
    with pytest.raises(ValueError, match="p_min must be in"):
        StochasticGate(snn.Leaky(0.9), p_min=0.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        StochasticGate(snn.Leaky(0.9), mode="always")
    adapted = rs.adapt(snntorch_conv(), "ta-lif")
    model = SpikingClassifier(adapted, NUM_STEPS)
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(RuntimeError, match="no neural dynamic signature yet"):
        model(x)
    rs.neurons.record_signature(model, [x])
    with pytest.raises(RuntimeError, match="covers 4 steps"):
        SpikingClassifier(adapted, NUM_STEPS + 1)(x)
    with pytest.raises(ValueError, match="no ThresholdAdaptation"):
        rs.neurons.record_signature(SpikingClassifier(snntorch_conv(), 2), [x])
    with pytest.raises(ValueError, match="kind must be one of"):
        rs.neurons.record_signature(model, [x], kind="rate")


@pytest.mark.parametrize("builder", ["snntorch", "sj-s"])
def test_adapted_models_take_the_time_batched_path_with_equal_results(builder: str) -> None:
    torch.manual_seed(0)
    net = {"snntorch": snntorch_conv, "sj-s": lambda: sj_conv("s")}[builder]()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(3)
    adapted = rs.adapt(net, ["ta-lif", functools.partial(StochasticGate, shape=(8, 8, 8))])
    with torch.no_grad():
        adapted[1].rho.fill_(0.6)
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    loop = SpikingClassifier(adapted, NUM_STEPS, time_batched=False)
    batched = SpikingClassifier(adapted, NUM_STEPS)
    rs.neurons.record_signature(loop, [x])
    assert batched._use_time_batched(batched._plan_for(batched._host.neurons(adapted), x), x)
    outs = []
    for model in (loop, batched):
        model.generator.manual_seed(0)
        outs.append(model(x))
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6)
