"""Rate gradient modes (BPTR, RGA) and the ANN twin: forward, backward formulas, restoration."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from helpers import NUM_STEPS, Tutorial, digits_tensors, sj_seq_to_ann, trained
from spikingjelly.activation_based import neuron
from torch import nn

from robust_spikes import SpikingClassifier
from robust_spikes.gradients import MODES, Triangle
from robust_spikes.gradients._rate import leak_and_scale, rga_derivative

RATE_MODES = ["bptr", "rga"]
MODELS = ["snntorch", "spikingjelly"]


def build(name: str) -> SpikingClassifier:
    if name == "snntorch":
        return SpikingClassifier(trained("snntorch_conv"), NUM_STEPS)
    net = trained("sj_conv_m", readout="count", epochs=8)
    return SpikingClassifier(net, NUM_STEPS, readout="count")


def batch(start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    _, _, x, y = digits_tensors()
    return x[start : start + 16].clone(), y[start : start + 16].clone()


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    xg = x.clone().requires_grad_()
    logits = model(xg)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), xg)
    return logits.detach(), grad


def hooks(model: SpikingClassifier) -> int:
    return sum(len(m._forward_hooks) for m in model.net.modules())


def test_modes_are_registered() -> None:
    assert {"bptt", "pdsg", "bptr", "rga", "ann"} <= set(MODES)


# ----------------------------------------------------------------------------- BPTR, RGA
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("mode", RATE_MODES)
def test_rate_modes_keep_the_forward_and_change_the_gradient(mode: str, name: str) -> None:
    model = build(name)
    x, y = batch()
    plain_logits, plain_grad = input_gradient(model, x, y)
    with model.gradient(mode):
        logits, grad = input_gradient(model, x, y)
    assert torch.equal(logits, plain_logits)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert not torch.allclose(grad, plain_grad)
    assert hooks(model) == 0 and model._call_hook is None
    assert torch.equal(input_gradient(model, x, y)[1], plain_grad)


def lif_rates(current: torch.Tensor, beta: float, threshold: float, steps: int) -> torch.Tensor:
    """Firing rate of snnTorch's Leaky (subtract reset, fires on u > Vth) for a constant input."""
    u, spk, total = torch.zeros_like(current), torch.zeros_like(current), torch.zeros_like(current)
    for _ in range(steps):
        u = beta * u + current - spk * threshold
        spk = (u > threshold).to(current.dtype)
        total += spk
    return total / steps


def rga_reference(xbar: torch.Tensor, tau: float, gamma: float = 0.2) -> torch.Tensor:
    out = torch.zeros_like(xbar)
    for i, v in enumerate(xbar.flatten().tolist()):
        if 0 <= v <= 1 - tau:
            out.view(-1)[i] = gamma
        elif 1 - tau < v <= 2:
            out.view(-1)[i] = (1 - gamma + gamma * tau) / (tau + 1)
    return out


@pytest.mark.parametrize("threshold", [1.0, 2.0])
@pytest.mark.parametrize("mode", RATE_MODES)
def test_rate_gradients_match_a_float64_reference_of_the_formulas(
    mode: str, threshold: float
) -> None:
    # Linear(4, 3) -> Leaky -> Linear(3, 2), membrane readout of the final Linear: the
    # gradient crosses exactly one spiking layer, with a static input current.
    beta, steps = 0.5, 5
    w1 = torch.tensor(
        [[1.0, 0.0, 0.0, 0.5], [0.0, 1.0, 0.0, -0.5], [0.0, 0.0, 1.0, 0.25]], dtype=torch.float64
    )
    w2 = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.7, -1.0]], dtype=torch.float64)
    lin1, lin2 = nn.Linear(4, 3), nn.Linear(3, 2)  # snnTorch spikes are float32
    with torch.no_grad():
        lin1.weight.copy_(w1), lin1.bias.zero_(), lin2.weight.copy_(w2), lin2.bias.fill_(0.1)
    lif = snn.Leaky(beta=beta, threshold=threshold, init_hidden=True)
    net = nn.Sequential(lin1, lif, lin2)
    model = SpikingClassifier(net, steps, input_range=None)
    x = (
        torch.tensor(
            [[-0.3, 0.3, 1.2, 0.0], [0.8, 2.5, 0.05, 0.0], [3.0, 1.1, 4.4, 0.0]],
            dtype=torch.float64,
        )
        * threshold
    )
    c = torch.tensor([[1.0, -1.0], [0.5, 2.0], [-1.0, 1.0]], dtype=torch.float64)
    xg = x.float().requires_grad_()
    with model.gradient(mode):
        (grad,) = torch.autograd.grad((model(xg) * c.float()).sum(), xg)
    current = x @ w1.T
    if mode == "bptr":
        factor = (lif_rates(current, beta, threshold, steps) > 0).double()
        assert 0 < factor.sum() < factor.numel()  # both cases occur
    else:
        factor = rga_reference(current / threshold, beta) / threshold
        assert {0.0, 0.2, 0.6} <= {round(v * threshold, 6) for v in factor.flatten().tolist()}
    # dL/dspk_t = W2^T c / T at every step; sum over T steps of the same static current.
    expected = ((c @ w2) * factor) @ w1
    torch.testing.assert_close(grad.double(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", RATE_MODES)
def test_each_forward_gets_its_own_rates(mode: str) -> None:
    """EOT-style: two forward passes, one backward of their sum."""
    model = build("snntorch")
    (xa, _), (xb, _) = batch(0), batch(16)
    with model.gradient(mode):
        ga = torch.autograd.grad(model(xa.requires_grad_()).sum(), xa)[0]
        gb = torch.autograd.grad(model(xb.requires_grad_()).sum(), xb)[0]
        xa2, xb2 = xa.detach().requires_grad_(), xb.detach().requires_grad_()
        ja, jb = torch.autograd.grad(model(xa2).sum() + model(xb2).sum(), (xa2, xb2))
        xs = xa.detach().requires_grad_()
        (twice,) = torch.autograd.grad(model(xs).sum() + model(xs).sum(), xs)
    torch.testing.assert_close(ja, ga)
    torch.testing.assert_close(jb, gb)
    torch.testing.assert_close(twice, 2 * ga)


def test_rga_derivative_regions() -> None:
    x = torch.tensor([-0.1, 0.0, 0.3, 0.5, 0.51, 2.0, 2.01])
    want = torch.tensor([0.0, 0.2, 0.2, 0.2, 0.6, 0.6, 0.0])
    torch.testing.assert_close(rga_derivative(x, 0.5), want)
    torch.testing.assert_close(
        rga_derivative(x, 1.0), torch.tensor([0, 0.2, 0.5, 0.5, 0.5, 0.5, 0])
    )


@pytest.mark.parametrize(
    ("node", "tau", "scale"),
    [
        (lambda: snn.Leaky(beta=1.3, threshold=2.0), 1.0, 0.5),
        (lambda: snn.Leaky(beta=0.8), 0.8, 1.0),
        (lambda: neuron.IFNode(v_threshold=0.5), 1.0, 2.0),
        (lambda: neuron.LIFNode(tau=4.0, decay_input=False), 0.75, 1.0),
        (lambda: neuron.LIFNode(tau=4.0, decay_input=True), 0.75, 0.25),
        (lambda: neuron.ParametricLIFNode(init_tau=2.0, decay_input=False), 0.5, 1.0),
    ],
)
def test_leak_factor_and_input_scale_per_neuron(node, tau: float, scale: float) -> None:
    got_tau, got_scale = leak_and_scale(node())
    assert got_tau.item() == pytest.approx(tau) and got_scale.item() == pytest.approx(scale)


def test_rga_refuses_a_neuron_without_leak_factor_and_changes_nothing() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), neuron.QIFNode())
    model = SpikingClassifier(net, NUM_STEPS, readout="count")
    with pytest.raises(TypeError, match="no leak factor for SpikingJelly neuron QIFNode"):
        model.gradient("rga").__enter__()
    assert hooks(model) == 0 and model._call_hook is None
    with model.gradient("bptr"):  # not locked by the failed attempt
        pass


# ----------------------------------------------------------------------------- ANN twin
def test_ann_twin_of_snntorch_equals_a_hand_built_relu_network() -> None:
    net = trained("snntorch_conv")
    model = SpikingClassifier(net, NUM_STEPS)
    x, y = batch()
    plain = model(x)
    relu_net = nn.Sequential(net[0], nn.ReLU(), net[2], net[3], net[4])
    with model.gradient("ann"):
        logits, grad = input_gradient(model, x, y)
    assert torch.equal(logits, relu_net(x))
    assert (logits < 0).any()  # the output neuron is the identity: signed logits
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert torch.equal(model(x), plain)
    assert model._call_hook is None


def test_ann_twin_of_spikingjelly_multi_step_networks() -> None:
    net = trained("sj_conv_m", readout="count", epochs=8)
    model = SpikingClassifier(net, NUM_STEPS, readout="count")
    x, _ = batch()
    conv, lin = net[0], net[4]
    want = F.relu(F.conv2d(x, conv.weight, conv.bias, padding=1))
    want = F.linear(F.max_pool2d(want, 2).flatten(1), lin.weight, lin.bias)
    with model.gradient("ann"):
        torch.testing.assert_close(model(x), want)
    seq = sj_seq_to_ann().eval()
    model = SpikingClassifier(seq, NUM_STEPS)
    (conv, bn), (pool, flat, fc) = seq[0], seq[2]  # SeqToANNContainer blocks, unwrapped
    with model.gradient("ann"):
        torch.testing.assert_close(model(x), fc(flat(pool(F.relu(bn(conv(x)))))))


def test_ann_twin_refuses_networks_it_cannot_build() -> None:
    model = SpikingClassifier(Tutorial(), NUM_STEPS)
    with pytest.raises(ValueError, match=r"mode 'ann' builds the ReLU twin of an nn.Sequential"):
        model.gradient("ann").__enter__()
    assert model._call_hook is None


# ----------------------------------------------------------------------------- restoration
@pytest.mark.parametrize("mode", [*RATE_MODES, "ann"])
def test_everything_restored_after_an_exception(mode: str) -> None:
    model = build("snntorch")
    x, _ = batch()
    plain = model(x)
    functions = [id(m.spike_grad) for m in model._host.neurons(model.net)]
    with pytest.raises(KeyError, match="inside"), model.gradient(mode):
        model(x)
        raise KeyError("inside")
    assert hooks(model) == 0 and model._call_hook is None
    assert [id(m.spike_grad) for m in model._host.neurons(model.net)] == functions
    assert torch.equal(model(x), plain)
    with model.gradient(mode):  # the neurons are free again
        pass


@pytest.mark.parametrize("mode", [*RATE_MODES, "ann"])
def test_argument_errors(mode: str) -> None:
    model = build("snntorch")
    with pytest.raises(ValueError, match=f"mode '{mode}' takes no surrogate"):
        model.gradient(mode, surrogate=Triangle(gamma=1.0))
    outer, inner = model.gradient(mode), model.gradient("bptr")
    with pytest.raises(RuntimeError, match="cannot be nested"), outer, inner:
        pass
    assert hooks(model) == 0 and model._call_hook is None


@pytest.mark.parametrize("mode", RATE_MODES)
def test_rate_modes_refuse_compiled_classifiers(mode: str) -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), snn.Leaky(beta=0.9, init_hidden=True))
    model = SpikingClassifier(net, NUM_STEPS, compile=True)
    with pytest.raises(ValueError, match="compile=True"):
        model.gradient(mode).__enter__()
    assert hooks(model) == 0


@pytest.mark.parametrize("framework", ["snntorch", "spikingjelly"])
@pytest.mark.parametrize("mode", [*RATE_MODES, "ann"])
def test_modes_on_adapted_neurons(mode: str, framework: str) -> None:
    """TA-LIF and gated neurons: the rate modes keep the forward, every mode has a gradient."""
    import robust_spikes as rs

    if framework == "snntorch":
        net, readout = trained("snntorch_conv"), "membrane"
    else:
        net, readout = trained("sj_conv_m", readout="count", epochs=8), "count"
    adapted = rs.adapt(net, ["ta-lif", "stochastic-gate"])
    model = SpikingClassifier(adapted, NUM_STEPS, readout=readout)
    _, _, x, y = digits_tensors()
    x, y = x[:16], y[:16]
    rs.neurons.record_signature(model, [x])
    plain = model(x)
    xg = x.clone().requires_grad_()
    with model.gradient(mode):
        logits = model(xg)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), xg)
    if mode != "ann":
        assert torch.equal(logits.detach(), plain.detach())
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
