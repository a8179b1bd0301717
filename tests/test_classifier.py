"""SpikingClassifier: shapes, golden trajectories, state reset, modes, errors, fast paths."""

from __future__ import annotations

import copy
import gc
import weakref

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from helpers import (
    NUM_STEPS,
    ExplicitState,
    Nested,
    Tutorial,
    sj_conv,
    sj_seq_to_ann,
    snntorch_conv,
    snntorch_mlp,
)
from snntorch import utils as snn_utils
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from robust_spikes import SpikingClassifier
from robust_spikes.encoders import Encoder, Poisson

BUILDERS = {
    "snntorch-seq-output": lambda: snntorch_conv(output=True),
    "snntorch-seq-spikes-only": lambda: snntorch_conv(output=False),
    "snntorch-nested": lambda: Nested(snntorch_conv()),
    "snntorch-tutorial-tuple": lambda: Tutorial(both=True),
    "snntorch-tutorial-mem": lambda: Tutorial(both=False),
    "snntorch-explicit-state": ExplicitState,
    "snntorch-leaky": lambda: snntorch_mlp("leaky"),
    "snntorch-synaptic": lambda: snntorch_mlp("synaptic"),
    "snntorch-synaptic-spikes-only": lambda: snntorch_mlp("synaptic", output=False),
    "snntorch-alpha": lambda: snntorch_mlp("alpha"),
    "sj-s-if": lambda: sj_conv("s", "if"),
    "sj-s-lif": lambda: sj_conv("s", "lif"),
    "sj-s-plif": lambda: sj_conv("s", "plif"),
    "sj-m-if": lambda: sj_conv("m", "if"),
    "sj-m-lif": lambda: sj_conv("m", "lif"),
    "sj-m-plif": lambda: sj_conv("m", "plif"),
    "sj-m-linear-output": lambda: sj_conv("m", "lif", spiking_output=False),
    "sj-s-linear-output": lambda: sj_conv("s", "lif", spiking_output=False),
    "sj-m-seq-to-ann": sj_seq_to_ann,
}


def build(name: str, gain: float = 3.0) -> nn.Module:
    """A fresh network with weights scaled up so that every layer spikes."""
    torch.manual_seed(0)
    net = BUILDERS[name]()
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                p.mul_(gain)
    return net


def states(net: nn.Module) -> list[object]:
    """Every state tensor of the network's neurons (snnTorch buffers, SJ memories)."""
    out: list[object] = []
    for m in net.modules():
        if isinstance(m, snn.SpikingNeuron):
            out += [m.mem] + ([m.syn] if hasattr(m, "syn") else [])
        if hasattr(m, "_memories"):
            out += list(m._memories.values())
    return out


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))


# --------------------------------------------------------------------------- shape, grads
@pytest.mark.parametrize("name", BUILDERS)
def test_every_model_kind_gives_logits_and_an_input_gradient(name: str, x: torch.Tensor) -> None:
    model = SpikingClassifier(build(name), NUM_STEPS)
    x = x.clone().requires_grad_()
    logits = model(x)
    assert logits.shape == (6, 10) and logits.dtype == torch.float32
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, torch.arange(6)), x)
    assert grad.abs().sum() > 0, "an attack would get no gradient"
    for s in states(model.net):  # reset after the call: no graph survives
        assert not isinstance(s, torch.Tensor) or s.grad_fn is None


@pytest.mark.parametrize("name", BUILDERS)
def test_two_calls_are_bitwise_identical(name: str, x: torch.Tensor) -> None:
    model = SpikingClassifier(build(name), NUM_STEPS)
    first = model(x)
    model(torch.rand(3, 1, 8, 8))  # another batch size in between
    assert torch.equal(model(x), first)


@pytest.mark.parametrize("name", [n for n in BUILDERS if "output" not in n and "-mem" not in n])
def test_count_readout_sums_output_spikes(name: str, x: torch.Tensor) -> None:
    gain = 10.0 if "alpha" in name else 3.0  # Alpha neurons integrate slowly
    counts = SpikingClassifier(build(name, gain), NUM_STEPS, readout="count")(x)
    assert torch.equal(counts, counts.round()) and counts.min() >= 0 and counts.max() <= NUM_STEPS
    assert counts.sum() > 0


def test_framework_detection() -> None:
    assert SpikingClassifier(build("snntorch-leaky"), 2).framework == "snntorch"
    assert SpikingClassifier(build("sj-m-lif"), 2).framework == "spikingjelly"
    assert (
        SpikingClassifier(build("sj-m-lif"), 2, framework="spikingjelly").framework
        == "spikingjelly"
    )


# ----------------------------------------------------------------- golden trajectories
def test_golden_trajectory_snntorch_leaky_float64() -> None:
    """Hand-computed Leaky dynamics (subtract reset, delayed by one step, strict >)."""
    beta, thr, steps = 0.75, 1.0, 7  # binary fractions: snnTorch stores beta in float32
    fc = nn.Linear(3, 2).double()
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[0.9, -0.2, 0.4], [0.1, 0.3, -0.5]]))
        fc.bias.copy_(torch.tensor([0.05, 0.2]))
    net = nn.Sequential(fc, snn.Leaky(beta=beta, threshold=thr, init_hidden=True, output=True))
    net.double()  # snnTorch keeps beta and threshold as float32 buffers
    x = torch.tensor([[0.7, 0.1, 0.9], [0.2, 1.0, 0.0]], dtype=torch.float64)
    current = (x @ fc.weight.detach().T + fc.bias.detach()).tolist()
    mem_ref, spk_ref = [], []
    for n in range(2):
        mem, mems, spks = [0.0, 0.0], [], []
        for _ in range(steps):
            reset = [1.0 if m > thr else 0.0 for m in mem]
            mem = [beta * m + i - r * thr for m, i, r in zip(mem, current[n], reset, strict=True)]
            mems.append(mem)
            spks.append([1.0 if m > thr else 0.0 for m in mem])
        mem_ref.append(mems)
        spk_ref.append(spks)
    mem_ref_t = torch.tensor(mem_ref, dtype=torch.float64).transpose(0, 1)  # [T, N, K]
    spk_ref_t = torch.tensor(spk_ref, dtype=torch.float64).transpose(0, 1)
    assert spk_ref_t.sum() > 0 and (spk_ref_t == 0).any()  # the case exercises resets
    logits = SpikingClassifier(net, steps)(x)
    torch.testing.assert_close(logits, mem_ref_t.mean(0), rtol=0, atol=1e-12)
    counts = SpikingClassifier(net, steps, readout="count")(x)  # snnTorch spikes are float32
    torch.testing.assert_close(counts.double(), spk_ref_t.sum(0), rtol=0, atol=0)


def test_golden_trajectory_spikingjelly_lif_float64() -> None:
    """LIFNode, decay_input, hard reset to 0, spike when H >= threshold; 's' and 'm' agree."""
    tau, thr, steps = 2.0, 1.0, 6
    x = torch.tensor([[0.9, 1.6, 2.5], [3.0, 0.4, 1.99]], dtype=torch.float64)
    v_ref, s_ref = [], []
    v = torch.zeros_like(x)
    for _ in range(steps):
        h = v + (x - v) / tau
        s = (h >= thr).double()
        v = h * (1 - s)
        v_ref.append(v)
        s_ref.append(s)
    for mode in ("s", "m"):
        net = nn.Sequential(neuron.LIFNode(tau=tau, v_threshold=thr))
        functional.set_step_mode(net, mode)
        net.double()
        membrane = SpikingClassifier(net, steps, readout="membrane", input_range=None)(x)
        torch.testing.assert_close(membrane, torch.stack(v_ref).mean(0), rtol=0, atol=1e-12)
        model = SpikingClassifier(net, steps, input_range=None)  # SpikingJelly's default: count
        torch.testing.assert_close(model(x), torch.stack(s_ref).sum(0), rtol=0, atol=0)
        assert model.readout_used == "count"


# --------------------------------------------------------------- host-idiom equivalence
def test_equals_the_idiomatic_snntorch_loop(x: torch.Tensor) -> None:
    net = build("snntorch-seq-output")
    snn_utils.reset(net)
    mem_rec = []
    for _ in range(NUM_STEPS):
        _, mem = net(x)
        mem_rec.append(mem)
    expected = torch.stack(mem_rec).mean(0)
    assert torch.equal(SpikingClassifier(net, NUM_STEPS, time_batched=False)(x), expected)
    torch.testing.assert_close(SpikingClassifier(net, NUM_STEPS)(x), expected)


def test_equals_the_idiomatic_spikingjelly_multistep_call(x: torch.Tensor) -> None:
    net = build("sj-m-lif")
    model = SpikingClassifier(net, NUM_STEPS, readout="count")
    functional.reset_net(net)
    expected = net(x.unsqueeze(0).repeat(NUM_STEPS, 1, 1, 1, 1)).sum(0)
    assert torch.equal(model(x), expected)


def test_single_and_multi_step_spikingjelly_agree(x: torch.Tensor) -> None:
    net = build("sj-m-lif")
    multi = SpikingClassifier(net, NUM_STEPS, readout="membrane")(x)
    functional.set_step_mode(net, "s")
    single = SpikingClassifier(net, NUM_STEPS, readout="membrane")(x)
    torch.testing.assert_close(single, multi, rtol=1e-6, atol=1e-6)


# -------------------------------------------------------------------------- state reset
def test_resets_nested_neurons_that_snntorch_utils_reset_misses(x: torch.Tensor) -> None:
    wrapper = Nested(build("snntorch-seq-output"))

    def naive() -> torch.Tensor:  # the tutorial's reset on the outer module: a no-op here
        snn_utils.reset(wrapper)
        return torch.stack([wrapper(x)[1] for _ in range(NUM_STEPS)]).mean(0)

    assert not torch.equal(naive(), naive()), "the pitfall this test guards against vanished"
    model = SpikingClassifier(wrapper, NUM_STEPS)
    assert torch.equal(model(x), model(x))


def test_finds_neurons_swapped_in_after_spikingjelly_cached_its_reset_list(
    x: torch.Tensor,
) -> None:
    net = build("sj-m-lif")
    model = SpikingClassifier(net, NUM_STEPS)
    functional.reset_net(net)  # SpikingJelly caches the module list of `net` here
    before = model(x)
    net[1] = neuron.IFNode(step_mode="m")  # the user swaps a neuron
    after = model(x)
    assert not torch.equal(before, after)
    assert torch.equal(model(x), after)
    assert model._plan is not None and model._plan.final is net[5]


def test_state_passed_explicitly_matches_internal_state(x: torch.Tensor) -> None:
    torch.manual_seed(0)
    explicit = ExplicitState()
    logits = SpikingClassifier(explicit, NUM_STEPS)(x)
    syn1 = mem1 = mem2 = None
    mem_rec = []
    for m in explicit.modules():
        if isinstance(m, snn.SpikingNeuron):
            m.reset_mem()
    for _ in range(NUM_STEPS):
        _, syn1, mem1, mem2 = explicit(x, syn1, mem1, mem2)
        mem_rec.append(mem2)
    torch.testing.assert_close(logits, torch.stack(mem_rec).mean(0), rtol=0, atol=0)


# ------------------------------------------------------------------------------- modes
@pytest.mark.parametrize("training", [True, False])
def test_forward_leaves_every_module_mode_as_it_was(training: bool, x: torch.Tensor) -> None:
    net = build("sj-m-seq-to-ann")
    net.train(training)
    net[0][1].eval()  # a mixed configuration that a blanket train()/eval() would destroy
    modes = {m: m.training for m in net.modules()}
    SpikingClassifier(net, NUM_STEPS)(x)
    assert {m: m.training for m in net.modules()} == modes


def test_discovery_probe_does_not_touch_batchnorm_statistics(x: torch.Tensor) -> None:
    net = build("sj-m-seq-to-ann").train()
    reference = copy.deepcopy(net)
    SpikingClassifier(net, NUM_STEPS)(x)  # first call: probe + one real forward
    functional.reset_net(reference)
    reference(x.unsqueeze(0).repeat(NUM_STEPS, 1, 1, 1, 1))
    bn, bn_ref = net[0][1], reference[0][1]
    assert bn.num_batches_tracked == bn_ref.num_batches_tracked == 1
    torch.testing.assert_close(bn.running_mean, bn_ref.running_mean, rtol=0, atol=0)


# ----------------------------------------------------------------------- configuration
class _Noisy(Encoder):
    is_stochastic = True

    def forward(self, x, num_steps, *, generator=None):
        noise = torch.rand((num_steps, *x.shape), generator=generator)
        return x.unsqueeze(0) + 0.1 * noise


def test_is_stochastic_and_generator_ownership(x: torch.Tensor) -> None:
    assert not SpikingClassifier(build("snntorch-leaky"), 2).is_stochastic
    model = SpikingClassifier(
        build("snntorch-leaky"), 2, encoder=_Noisy(), generator=torch.Generator().manual_seed(5)
    )
    assert model.is_stochastic
    a = model(x)
    model.generator.manual_seed(5)
    torch.manual_seed(123)  # the global RNG (re-seeded by torchattacks) plays no part
    assert torch.equal(model(x), a)
    assert not torch.equal(model(x), a)


def test_normalize_is_applied_inside_the_model(x: torch.Tensor) -> None:
    net = build("snntorch-seq-output")
    mean, std = 0.3, 0.2
    plain = SpikingClassifier(net, NUM_STEPS, input_range=None)((x - mean) / std)
    normalized = SpikingClassifier(net, NUM_STEPS, normalize=([mean], [std]))(x)
    torch.testing.assert_close(normalized, plain, rtol=1e-6, atol=1e-6)


def test_callable_readout_receives_spikes_and_membrane(x: torch.Tensor) -> None:
    seen = {}

    def readout(spikes, membrane):
        seen["shapes"] = (tuple(spikes.shape), tuple(membrane.shape))
        return membrane.amax(0)

    logits = SpikingClassifier(build("snntorch-seq-output"), NUM_STEPS, readout=readout)(x)
    assert seen["shapes"] == ((NUM_STEPS, 6, 10), (NUM_STEPS, 6, 10)) and logits.shape == (6, 10)


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (
            torch.rand(6, 8, 8),
            ValueError,
            r"shape \[N, F\] or \[N, C, H, W\], got shape \(6, 8, 8\)",
        ),
        (torch.rand(2, 1, 1, 8, 8), ValueError, "got shape"),
        (torch.full((2, 1, 8, 8), 1.5), ValueError, r"values in \[0, 1\].*max 1.5"),
        (torch.full((2, 1, 8, 8), -0.25), ValueError, "min -0.25"),
        (torch.full((2, 1, 8, 8), float("nan")), ValueError, "finite, got 128 NaN"),
        (torch.full((2, 1, 8, 8), float("inf")), ValueError, "finite"),
        (torch.ones(2, 1, 8, 8, dtype=torch.uint8), TypeError, "floating-point.*uint8"),
        ([[0.5]], TypeError, "torch.Tensor, got list"),
        (torch.rand(0, 1, 8, 8), ValueError, "non-empty"),
    ],
)
def test_bad_inputs_raise_and_leave_state_intact(bad, error, match, x: torch.Tensor) -> None:
    model = SpikingClassifier(build("snntorch-seq-output"), NUM_STEPS)
    before = model(x)
    with pytest.raises(error, match=match):
        model(bad)
    assert torch.equal(model(x), before)


def test_rounding_beyond_the_unit_interval_is_accepted(x: torch.Tensor) -> None:
    model = SpikingClassifier(build("snntorch-seq-output"), NUM_STEPS)
    assert model(x.clamp(0, 1) + 5e-7).shape == (6, 10)
    assert SpikingClassifier(build("snntorch-leaky"), 2, input_range=None)(x * 20).shape == (6, 10)
    wide = SpikingClassifier(build("snntorch-leaky"), 2, input_range=(0, 255))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        wide(x * 300)


@pytest.mark.parametrize("num_steps", [0, -3, 2.5, True, "8", None])
def test_bad_num_steps(num_steps) -> None:
    with pytest.raises(ValueError, match=f"num_steps must be a positive int, got {num_steps!r}"):
        SpikingClassifier(build("snntorch-leaky"), num_steps)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"readout": "mean"}, ValueError, "readout must be None .*one of .*'mean'"),
        ({"framework": "norse"}, ValueError, "framework must be .*'norse'"),
        ({"normalize": ([0.5], [0.0])}, ValueError, "std > 0"),
        ({"normalize": 0.5}, ValueError, "normalize must be None or"),
        ({"input_range": (1, 0)}, ValueError, "input_range"),
        ({"generator": 3}, TypeError, "generator must be a torch.Generator, got int"),
    ],
)
def test_bad_arguments(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        SpikingClassifier(build("snntorch-leaky"), 2, **kwargs)


def test_network_without_spiking_neurons() -> None:
    ann = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU())
    with pytest.raises(ValueError, match=r"no spiking neurons.*Linear"):
        SpikingClassifier(ann, 4)
    with pytest.raises(TypeError, match=r"must be a torch\.nn\.Module, got function"):
        SpikingClassifier(lambda x: x, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no spikingjelly spiking neurons"):
        SpikingClassifier(snntorch_mlp(), 4, framework="spikingjelly")


def test_unsupported_neuron_types() -> None:
    sltt = nn.Sequential(layer.Flatten(), layer.Linear(64, 10), neuron.SLTTLIFNode())
    with pytest.raises(TypeError, match="unsupported SpikingJelly neuron SLTTLIFNode"):
        SpikingClassifier(sltt, 4)


def test_readout_that_is_not_n_by_k(x: torch.Tensor) -> None:
    model = SpikingClassifier(build("snntorch-leaky"), 2, readout=lambda s, m: m.mean((0, 2)))
    with pytest.raises(ValueError, match=r"logits \[N=6, K\], got \(6,\)"):
        model(x)
    with pytest.raises(ValueError, match="readout='count' needs output spikes"):
        SpikingClassifier(build("sj-m-linear-output"), 2, readout="count")(x)


def test_tutorial_model_with_a_different_num_steps(x: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"num_steps=8.*num_steps must match"):
        SpikingClassifier(Tutorial(num_steps=5), 8)(x)


def test_mixed_spikingjelly_step_modes(x: torch.Tensor) -> None:
    net = build("sj-s-lif")
    net[1].step_mode = "m"
    with pytest.raises(ValueError, match="mixes SpikingJelly step modes"):
        SpikingClassifier(net, 2)(x)


# -------------------------------------------------------------------------- fast paths
SEQUENTIAL = [
    "snntorch-seq-output",
    "snntorch-seq-spikes-only",
    "snntorch-leaky",
    "snntorch-synaptic",
    "snntorch-synaptic-spikes-only",
    "snntorch-alpha",
    "sj-s-if",
    "sj-s-lif",
    "sj-s-plif",
    "sj-s-linear-output",
]


@pytest.mark.parametrize(
    ("name", "readout"),
    [(n, "membrane") for n in SEQUENTIAL] + [(n, "count") for n in SEQUENTIAL if "linear" not in n],
)
def test_time_batched_path_equals_the_plain_loop(name: str, readout: str, x: torch.Tensor) -> None:
    net = build(name)
    plain = SpikingClassifier(net, NUM_STEPS, readout=readout, time_batched=False)
    batched = SpikingClassifier(net, NUM_STEPS, readout=readout, time_batched=True)
    assert batched._use_time_batched(batched._plan_for(batched._host.neurons(net), x), x)
    results = []
    for model in (plain, batched):
        xg = x.clone().requires_grad_()
        logits = model(xg)
        (grad,) = torch.autograd.grad(logits.square().sum(), xg)
        results.append((logits, grad))
    assert_equal_up_to_reassociation(results[1], results[0])


def assert_equal_up_to_reassociation(got, expected) -> None:
    """Logits and input gradients equal within 1e-5 of their scale (sums reordered)."""
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.detach().abs().max()))


def test_time_batched_needs_a_sequential_and_falls_back_for_batchnorm_training(
    x: torch.Tensor,
) -> None:
    with pytest.raises(
        ValueError, match=r"time_batched=True needs a network that is an nn\.Sequential"
    ):
        SpikingClassifier(Tutorial(), NUM_STEPS, time_batched=True)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), snn.Leaky(0.9, init_hidden=True))
    net.append(nn.Flatten()).append(nn.Linear(144, 10)).append(snn.Leaky(0.9, init_hidden=True))
    for time_batched in (True, None):
        model = SpikingClassifier(net.train(), NUM_STEPS, time_batched=time_batched)
        plan = model._plan_for(model._host.neurons(net), x)
        assert not model._use_time_batched(plan, x)  # batch statistics over T*N would differ
        net.eval()
        assert model._use_time_batched(plan, x)
    assert not SpikingClassifier(net, NUM_STEPS, time_batched=False)._use_time_batched(plan, x)


@pytest.mark.compile
def test_compiled_path_equals_the_plain_loop(x: torch.Tensor) -> None:
    net = build("snntorch-seq-output")
    plain = SpikingClassifier(net, NUM_STEPS)
    compiled = SpikingClassifier(net, NUM_STEPS, compile=True)
    for _ in range(2):  # the second call reuses the compiled graph
        results = []
        for model in (plain, compiled):
            xg = x.clone().requires_grad_()
            logits = model(xg)
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, torch.arange(6)), xg)
            results.append((logits, grad))
        assert_equal_up_to_reassociation(results[1], results[0])


@pytest.mark.compile
@pytest.mark.parametrize("name", ["snntorch-seq-output", "sj-m-lif"])
def test_compiled_inference_equals_eager_for_every_batch_size(name: str) -> None:
    """One graph for every batch size (small batches padded), logits as eager; calls with
    gradients inside run as outside, and the network's state and modes are kept."""
    net = build(name)
    model = SpikingClassifier(net, NUM_STEPS)
    batches = [
        torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(n)) for n in (6, 1, 17, 3)
    ]
    with torch.no_grad():
        expected = [model(b) for b in batches]
    modes = [m.training for m in net.modules()]
    torch._dynamo.reset()  # dynamo's cache is per function: another model's graph is a recompile
    with model.compiled_inference(), torch._dynamo.config.patch(error_on_recompile=True):
        with torch.no_grad():
            got = [model(b) for b in batches]
        xg = batches[0].clone().requires_grad_()
        (grad,) = torch.autograd.grad(model(xg).sum(), xg)  # eager, as outside
    graph = model._inference_graph
    assert graph is not None and graph.checked and graph.usable
    for a, b in zip(got, expected, strict=True):
        assert_equal_up_to_reassociation((a,), (b,))
    assert grad.abs().sum() > 0 and model._inference is None
    assert [m.training for m in net.modules()] == modes


def test_inference_graph_check_falls_back_to_eager_when_logits_differ() -> None:
    from robust_spikes._loops import InferenceGraph

    graph, generator = InferenceGraph(), torch.Generator().manual_seed(0)
    drawn = []

    def call(g: object) -> torch.Tensor:  # a "compiled" result off by 0.1
        drawn.append(torch.rand(1, generator=generator))
        return torch.ones(2, 3) + (0.1 if g is not None else 0.0)

    with pytest.warns(RuntimeWarning, match=r"differ from the eager ones by up to 0\.1"):
        out = graph.check(call, generator)
    assert torch.equal(out, torch.ones(2, 3)) and graph.checked and not graph.usable
    assert torch.equal(drawn[0], drawn[1])  # both from the same generator state
    same = InferenceGraph()
    assert torch.equal(same.check(lambda g: torch.ones(2, 3), generator), torch.ones(2, 3))
    assert same.usable

    def no_compiler(g: object) -> torch.Tensor:
        if g is not None:
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")
        return torch.ones(2, 3)

    failing = InferenceGraph()
    with pytest.warns(RuntimeWarning, match=r"compiling failed \(RuntimeError: InvalidCxx"):
        assert torch.equal(failing.check(no_compiler, generator), torch.ones(2, 3))
    assert failing.checked and not failing.usable


# ------------------------------------------------------------------------------ memory
@pytest.mark.parametrize("name", ["snntorch-seq-output", "sj-m-lif"])
def test_no_graph_survives_a_call(name: str, x: torch.Tensor) -> None:
    psutil = pytest.importorskip("psutil")
    model = SpikingClassifier(build(name), NUM_STEPS)
    y = torch.arange(6)

    def attack_call() -> weakref.ref:
        xg = x.clone().requires_grad_()
        torch.autograd.grad(F.cross_entropy(model(xg), y), xg)
        return weakref.ref(xg)

    for _ in range(10):
        attack_call()
    gc.collect()
    rss = psutil.Process().memory_info().rss
    refs = [attack_call() for _ in range(50)]
    gc.collect()
    assert all(r() is None for r in refs), "an input (and its graph) is still referenced"
    assert psutil.Process().memory_info().rss - rss < 8 * 2**20


def test_a_bare_neuron_with_explicit_state() -> None:
    """``snn.Leaky(beta)`` alone: ``forward(input_, mem=None) -> (spk, mem)``."""
    lif = snn.Leaky(beta=0.5)
    x = torch.tensor([[0.6, 0.2, 1.5]])
    logits = SpikingClassifier(lif, 3, input_range=None)(x)
    # by hand: subtract reset, applied one step after the spike (snnTorch reset_delay)
    expected = []
    for i in x[0].tolist():
        mem, mems = 0.0, []
        for _ in range(3):
            reset = 1.0 if mem > 1.0 else 0.0
            mem = 0.5 * mem + i - reset
            mems.append(mem)
        expected.append(sum(mems) / 3)
    torch.testing.assert_close(logits, torch.tensor([expected]), rtol=1e-6, atol=1e-6)


def test_predict_votes_over_samples_of_a_stochastic_model(x: torch.Tensor) -> None:
    deterministic = SpikingClassifier(build("snntorch-seq-output"), NUM_STEPS)
    assert torch.equal(deterministic.predict(x), deterministic(x).argmax(1))
    model = SpikingClassifier(
        build("snntorch-seq-output"), NUM_STEPS, encoder=_Noisy(), input_range=None
    )
    model.generator.manual_seed(0)
    logits = torch.stack([model(x) for _ in range(10)])  # what predict() will draw
    votes = F.one_hot(logits.argmax(2), 10).sum(0)
    model.generator.manual_seed(0)
    predicted = model.predict(x)  # 10 samples by default for a stochastic model
    assert (votes.gather(1, predicted[:, None]).squeeze(1) == votes.max(1).values).all()
    model.generator.manual_seed(0)
    assert torch.equal(model.predict(x, method="mean"), logits.mean(0).argmax(1))
    model.generator.manual_seed(0)
    assert torch.equal(model.predict(x, num_samples=1), logits[0].argmax(1))
    with pytest.raises(ValueError, match="num_samples must be a positive int, got 0"):
        model.predict(x, num_samples=0)
    with pytest.raises(ValueError, match="method must be 'vote' or 'mean'"):
        model.predict(x, method="median")  # type: ignore[arg-type]


@pytest.mark.compile
def test_compiled_path_with_a_random_encoder_and_normalisation(x: torch.Tensor) -> None:
    """Encoding stays outside the compiled graph; non-leaf inputs raise no warning."""
    from robust_spikes.encoders import Poisson

    net = build("snntorch-seq-output")
    results = []
    for compile_ in (False, True):
        model = SpikingClassifier(
            net, NUM_STEPS, encoder=Poisson(), normalize=([0.5], [0.5]), compile=compile_
        )
        model.generator.manual_seed(0)
        xg = x.clone().requires_grad_()
        logits = model(xg)
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, torch.arange(6)), xg)
        results.append((logits, grad))
    assert_equal_up_to_reassociation(results[1], results[0])


def test_a_random_encoder_on_a_network_with_its_own_time_loop_is_refused() -> None:
    model = SpikingClassifier(Tutorial(), NUM_STEPS, encoder=Poisson())
    with pytest.raises(ValueError, match=r"encoder=.*loops over time inside its own forward"):
        model(torch.rand(2, 1, 8, 8))


def test_a_failing_probe_says_what_it_tried() -> None:
    class IndexesTime(nn.Module):  # expects an encoded [T, N, ...] spike train
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.lif = nn.Linear(64, 10), snn.Leaky(beta=0.9)

        def forward(self, x):
            mem = self.lif.reset_mem()
            return torch.stack([self.lif(self.fc(x[t].flatten(1)), mem)[1] for t in range(4)])

    with pytest.raises(IndexError) as info:
        SpikingClassifier(IndexesTime(), 4)(torch.rand(2, 1, 8, 8))
    assert any(
        "probed IndexesTime with an input of shape (2, 1, 8, 8)" in n for n in info.value.__notes__
    )


# ------------------------------------------------------------------- default readout
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("snntorch-seq-output", "membrane"),  # snnTorch tutorials train on mem
        ("snntorch-seq-spikes-only", "membrane"),
        ("snntorch-tutorial-tuple", "membrane"),  # its own recording: read as returned
        ("sj-s-lif", "count"),  # SpikingJelly tutorials train on the output firing rate
        ("sj-m-lif", "count"),
        ("sj-m-seq-to-ann", "count"),
        ("sj-m-linear-output", "membrane"),  # a non-spiking last layer is read as it is
    ],
)
def test_default_readout_follows_each_frameworks_training_convention(
    name: str, expected: str, x: torch.Tensor
) -> None:
    net = build(name)
    model = SpikingClassifier(net, NUM_STEPS)
    logits = model(x)
    assert model.readout_used == expected
    explicit = SpikingClassifier(net, NUM_STEPS, readout=expected)(x)  # type: ignore[arg-type]
    assert torch.equal(logits, explicit)
    assert f"readout={expected!r}" in repr(model)
