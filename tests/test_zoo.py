"""Every network a snnTorch or SpikingJelly user has, driven as the framework drives it.

The SpikingJelly model zoos (2.0 models that run their own time loop and return
``[N, K]``, classic ones in multi-step mode), every SpikingJelly 2.0 neuron family, and
snnTorch's tutorial networks as their docs write them: logits and input gradients equal
the framework's own loop, a PGD step stays within eps, and every refusal says why.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
import torchattacks
from snntorch import surrogate
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based import model as zoo
from spikingjelly.activation_based import surrogate as sj_surrogate
from torch import nn

import robust_spikes as rs

T = 2


def excite(net: nn.Module, gain: float = 3.0) -> nn.Module:
    """Scale the weights up so that the layers spike (a test on silent layers is void)."""
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                p.mul_(gain)
    return net.eval()


def images(n: int = 3, size: int = 32, channels: int = 3) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(0))


def grad_of(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    xr = x.clone().requires_grad_()
    out = fn(xr)
    (g,) = torch.autograd.grad(F.cross_entropy(out, torch.arange(len(x)) % out.shape[1]), xr)
    return out.detach(), g


def check_equal_to(
    model: rs.SpikingClassifier, reference: Callable[[torch.Tensor], torch.Tensor], x
) -> None:
    """Logits and input gradients equal the framework's loop; gradients are not all zero."""
    out, g = grad_of(model, x)
    ref, g_ref = grad_of(reference, x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-6)
    assert g.abs().sum() > 0, "no input gradient: the test would hold for any model"


def check_pgd_step(model: rs.SpikingClassifier, x: torch.Tensor, eps: float = 8 / 255) -> None:
    y = model(x).argmax(1)
    adv = torchattacks.PGD(model, eps=eps, alpha=eps, steps=1, random_start=False)(x, y)
    assert (adv - x).abs().max() <= eps + 1e-6
    assert (adv - x).abs().max() > 0  # the step moved the input
    assert adv.min() >= 0 and adv.max() <= 1


def sj_reset(net: nn.Module) -> None:
    for m in net.modules():
        if hasattr(m, "reset") and hasattr(m, "_memories"):
            m.reset()


def own_loop(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """SpikingJelly 2.0's zoo: forward runs the T steps and returns [N, K] logits."""

    def run(x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(net)
        out = net(x)
        functional.reset_net(net)
        return out.mean(0) if out.dim() == 3 else out

    return run


def multi_step(net: nn.Module, steps: int = T) -> Callable[[torch.Tensor], torch.Tensor]:
    """SpikingJelly's tutorials: repeat the image T times, one multi-step call, mean."""

    def run(x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(net)
        out = net(x.unsqueeze(0).repeat(steps, *[1] * x.dim()))
        functional.reset_net(net)
        out = torch.stack(out) if isinstance(out, list) else out
        return out.mean(0) if out.dim() == 3 else out

    return run


def single_step(net: nn.Module, steps: int = T) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(net)
        out = torch.stack([net(x) for _ in range(steps)]).mean(0)
        functional.reset_net(net)
        return out

    return run


# ------------------------------------------------------------------ SpikingJelly 2.0 zoo
ZOO_2 = {
    # ms_resnet18's default Rect surrogate has no gradient outside a window around the
    # threshold, where this untrained net's output neurons all sit: ATan keeps one.
    "ms_resnet18": lambda: zoo.ms_resnet18(
        T=T, num_classes=5, base_channels=8, surrogate_function=sj_surrogate.ATan()
    ),
    "att_ms_resnet18": lambda: zoo.att_ms_resnet18(T=T, num_classes=5, base_channels=8),
    "SpikeDrivenTransformer": lambda: zoo.SpikeDrivenTransformer(
        T=T, num_classes=5, embed_dims=16, num_heads=2, depths=1, mlp_ratio=1.0
    ),
    "QKFormer": lambda: zoo.QKFormer(
        T=T, num_classes=5, embed_dims=16, num_heads=(1, 1, 1), depths=(1, 1, 1), mlp_ratio=1.0
    ),
    "MaxFormer": lambda: zoo.MaxFormer(
        T=T, num_classes=5, embed_dims=24, depths=(1, 1, 1), mlp_ratio=1.0, cifar=True
    ),
}


@pytest.mark.parametrize("name", list(ZOO_2))
def test_spikingjelly_2_zoo_models_that_return_logits(name: str) -> None:
    torch.manual_seed(0)
    net = excite(ZOO_2[name](), gain=2.0)
    model = rs.SpikingClassifier(net, num_steps=T)
    x = images()
    check_equal_to(model, own_loop(net), x)
    assert model._plan is not None and model._plan.output == "logits"
    check_pgd_step(model, x)


def test_zoo_logits_with_a_batch_as_large_as_num_steps() -> None:
    torch.manual_seed(0)
    net = excite(ZOO_2["ms_resnet18"](), gain=2.0)
    check_equal_to(rs.SpikingClassifier(net, num_steps=T), own_loop(net), images(n=T))


@pytest.mark.slow
def test_max_resnet18() -> None:
    torch.manual_seed(0)
    net = excite(zoo.max_resnet18(T=T, num_classes=5), gain=2.0)
    model = rs.SpikingClassifier(net, num_steps=T)
    check_equal_to(model, own_loop(net), images(size=16))


@pytest.mark.slow
def test_spikformer_cifar10_returns_a_recording() -> None:
    torch.manual_seed(0)
    net = excite(zoo.spikformer_cifar10(T=T, num_classes=5), gain=2.0)
    model = rs.SpikingClassifier(net, num_steps=T)
    check_equal_to(model, own_loop(net), images())
    assert model._plan is not None and model._plan.output == "value"


def test_zoo_model_built_for_another_t_is_refused() -> None:
    net = zoo.ms_resnet18(T=4, num_classes=5, base_channels=8)
    with pytest.raises(
        ValueError,
        match=r"num_steps=2, but the network's MSResNet was built for T=4.*pass num_steps=4",
    ):
        rs.SpikingClassifier(net, num_steps=2)


def test_zoo_logits_have_no_spike_count() -> None:
    net = excite(ZOO_2["ms_resnet18"]())
    model = rs.SpikingClassifier(net, num_steps=T, readout="count")
    with pytest.raises(ValueError, match=r"averaged over time itself; use readout='membrane'"):
        model(images())


# --------------------------------------------------------------- classic zoo (torchvision)
@pytest.fixture
def classic_zoo(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.SimpleNamespace]:
    """SpikingJelly's classic zoo imports torchvision only for load_state_dict_from_url.

    torchvision cannot be imported with this CPU torch, so a stub stands in for it while
    the zoo modules are imported (the package itself never imports torchvision).
    """
    stub = types.ModuleType("torchvision.models.utils")
    stub.load_state_dict_from_url = None  # type: ignore[attr-defined]
    for name, module in [
        ("torchvision", types.ModuleType("torchvision")),
        ("torchvision.models", types.ModuleType("torchvision.models")),
        ("torchvision.models.utils", stub),
    ]:
        monkeypatch.setitem(sys.modules, name, module)
    for name in ("spiking_resnet", "sew_resnet", "spiking_vgg"):
        monkeypatch.delitem(sys.modules, f"spikingjelly.activation_based.model.{name}", False)
    from spikingjelly.activation_based.model import sew_resnet, spiking_resnet, spiking_vgg

    yield types.SimpleNamespace(
        spiking_resnet18=spiking_resnet.spiking_resnet18,
        sew_resnet18=sew_resnet.sew_resnet18,
        spiking_vgg11=spiking_vgg.spiking_vgg11,
        spiking_vgg11_bn=spiking_vgg.spiking_vgg11_bn,
    )


@pytest.mark.parametrize(
    "name",
    [
        "spiking_resnet18",
        "sew_resnet18",
        pytest.param("spiking_vgg11", marks=pytest.mark.slow),
        pytest.param("spiking_vgg11_bn", marks=pytest.mark.slow),
    ],
)
def test_spikingjelly_classic_zoo_in_multi_step_mode(
    classic_zoo: types.SimpleNamespace, name: str
) -> None:
    torch.manual_seed(0)
    kwargs = {"cnf": "ADD"} if name == "sew_resnet18" else {}
    net = getattr(classic_zoo, name)(spiking_neuron=neuron.IFNode, num_classes=5, **kwargs)
    functional.set_step_mode(net, "m")
    net = excite(net, gain=1.5)
    model = rs.SpikingClassifier(net, num_steps=T)
    x = images(size=32 if "vgg" in name else 16)
    check_equal_to(model, multi_step(net), x)
    check_pgd_step(model, x)


# ------------------------------------------------------------ SpikingJelly neuron families
def sj_mlp(node: nn.Module, mode: str, tail: list[nn.Module] | None = None) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(layer.Flatten(), layer.Linear(64, 10), node, *(tail or []))
    functional.set_step_mode(net, mode)
    return excite(net)


FAMILIES: dict[str, Callable[[], nn.Module]] = {
    "SimpleLIFNode": lambda: neuron.SimpleLIFNode(tau=2.0, decay_input=True),
    "SimpleIFNode": lambda: neuron.SimpleIFNode(),
    "SlidingPSN": lambda: neuron.SlidingPSN(k=2),
    "LIFNode": lambda: neuron.LIFNode(),
}


@pytest.mark.parametrize("mode", ["s", "m"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_neuron_families_in_both_step_modes(family: str, mode: str) -> None:
    # Spike counts of the output neuron (SJ's firing-rate readout), then a Linear head.
    x = images(4, 8, 1)
    net = sj_mlp(FAMILIES[family](), mode)
    model = rs.SpikingClassifier(net, num_steps=T, readout="count")
    ref = (multi_step if mode == "m" else single_step)(net)
    out = model(x)
    torch.testing.assert_close(out, ref(x) * T, rtol=0, atol=1e-6)
    assert out.sum() > 0
    headed = sj_mlp(FAMILIES[family](), mode, [layer.Linear(10, 5)])
    model = rs.SpikingClassifier(headed, num_steps=T)
    check_equal_to(model, (multi_step if mode == "m" else single_step)(headed), x)


@pytest.mark.parametrize(
    "node",
    [
        lambda: neuron.PSN(T=T),
        lambda: neuron.MaskedPSN(k=2, T=T),
        lambda: neuron.SlidingPSN(k=2),
    ],
    ids=["PSN", "MaskedPSN", "SlidingPSN"],
)
def test_parallel_spiking_neurons_multi_step(node: Callable[[], nn.Module]) -> None:
    net = sj_mlp(node(), "m", [layer.Linear(10, 5)])
    model = rs.SpikingClassifier(net, num_steps=T)
    x = images(4, 8, 1)
    check_equal_to(model, multi_step(net), x)
    check_pgd_step(model, x)


def test_gated_lif_node() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1),
        neuron.GatedLIFNode(T=T, inplane=4),
        layer.Flatten(),
        layer.Linear(4 * 64, 5),
    )
    functional.set_step_mode(net, "m")
    net = excite(net)
    model = rs.SpikingClassifier(net, num_steps=T)
    check_equal_to(model, multi_step(net), images(4, 8, 1))


def test_neurons_built_for_another_t_are_refused() -> None:
    for node in (neuron.PSN(T=4), neuron.GatedLIFNode(T=4, inplane=10)):
        net = nn.Sequential(layer.Flatten(), layer.Linear(64, 10), node)
        functional.set_step_mode(net, "m")
        kind = type(node).__name__
        with pytest.raises(ValueError, match=rf"network's module '2' \({kind}\) .* T=4 time"):
            rs.SpikingClassifier(net, num_steps=2)


# "last-mem" is no SpikingJelly decode: like None, the layer then returns the list of
# per-step membranes.
@pytest.mark.parametrize(
    "decode", ["mean-mem", "max-mem", "max-abs-mem", "last_mem", "last-mem", None]
)
def test_non_spiking_lif_output_layer(decode: str | None) -> None:
    tail = [layer.Linear(10, 5), neuron.NonSpikingLIFNode(tau=2.0, decode=decode)]
    net = sj_mlp(neuron.LIFNode(), "m", tail)
    model = rs.SpikingClassifier(net, num_steps=T)
    x = images(4, 8, 1)
    check_equal_to(model, multi_step(net), x)
    model(x.requires_grad_())
    # no graph survives in the output layer's membrane (a plain attribute)
    assert net[-1].v.grad_fn is None


def test_neurons_without_a_readable_membrane() -> None:
    x = images(4, 8, 1)
    for node, why in [
        (neuron.PSN(T=T), "PSN keeps no membrane potential"),
        (
            neuron.SimpleLIFNode(tau=2.0, decay_input=True),
            "SimpleLIFNode does not record its membrane potential in multi-step mode",
        ),
    ]:
        net = sj_mlp(node, "m")
        model = rs.SpikingClassifier(net, num_steps=T, readout="membrane")
        with pytest.raises(ValueError, match=f"needs the output layer's membrane, but {why}"):
            model(x)
        # SpikingJelly's own convention, the default, reads the spike count instead
        default = rs.SpikingClassifier(net, num_steps=T)
        assert default(x).shape == (4, 10) and default.readout_used == "count"


def test_complementary_lif_is_refused_because_eval_mode_has_no_gradient() -> None:
    # SpikingJelly itself: in eval mode ComplementaryLIFNode fires through a Heaviside.
    node = neuron.ComplementaryLIFNode().eval()
    assert not node(torch.rand(2, 3, requires_grad=True)).requires_grad
    net = nn.Sequential(layer.Flatten(), layer.Linear(64, 10), neuron.ComplementaryLIFNode())
    with pytest.raises(
        TypeError, match=r"unsupported SpikingJelly neuron ComplementaryLIFNode.*no gradient"
    ):
        rs.SpikingClassifier(net, num_steps=T)


# --------------------------------------------------------------------------- snnTorch
BATCH = 3
BETA = 0.9


class Tutorial5(nn.Module):
    """snnTorch tutorial 5's Net, as written there (flattened input, own time loop)."""

    def __init__(self, num_steps: int = T) -> None:
        super().__init__()
        self.num_steps = num_steps
        self.fc1 = nn.Linear(64, 32)
        self.lif1 = snn.Leaky(beta=BETA)
        self.fc2 = nn.Linear(32, 10)
        self.lif2 = snn.Leaky(beta=BETA)

    def forward(self, x):
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        spk2_rec = []
        mem2_rec = []
        for _step in range(self.num_steps):
            cur1 = self.fc1(x)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


class Tutorial6(nn.Module):
    """snnTorch tutorial 6's convolutional Net: one step per call, a hard-coded batch."""

    def __init__(self) -> None:
        super().__init__()
        spike_grad = surrogate.fast_sigmoid(slope=25)
        self.conv1 = nn.Conv2d(1, 12, 5)
        self.lif1 = snn.Leaky(beta=BETA, spike_grad=spike_grad)
        self.conv2 = nn.Conv2d(12, 64, 5)
        self.lif2 = snn.Leaky(beta=BETA, spike_grad=spike_grad)
        self.fc1 = nn.Linear(64 * 4 * 4, 10)
        self.lif3 = snn.Leaky(beta=BETA, spike_grad=spike_grad)

    def forward(self, x):
        mem1 = self.lif1.init_leaky()
        mem2 = self.lif2.init_leaky()
        mem3 = self.lif3.init_leaky()
        cur1 = F.max_pool2d(self.conv1(x), 2)
        spk1, mem1 = self.lif1(cur1, mem1)
        cur2 = F.max_pool2d(self.conv2(spk1), 2)
        spk2, mem2 = self.lif2(cur2, mem2)
        cur3 = self.fc1(spk2.view(BATCH, -1))
        spk3, mem3 = self.lif3(cur3, mem3)
        return spk3, mem3


class OneStep(nn.Module):
    """Explicit state, passed in and out, with no defaults."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(64, 32), snn.Synaptic(alpha=0.8, beta=BETA)
        self.fc2, self.lif2 = nn.Linear(32, 10), snn.Leaky(beta=BETA)

    def forward(self, x, syn1, mem1, mem2):
        spk1, syn1, mem1 = self.lif1(self.fc1(x), syn1, mem1)
        spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
        return spk2, syn1, mem1, mem2


def snntorch_reset(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, snn.SpikingNeuron) and hasattr(m, "reset_mem"):
            m.reset_mem()


def test_snntorch_tutorial_5() -> None:
    torch.manual_seed(0)
    net = excite(Tutorial5())
    model = rs.SpikingClassifier(net, num_steps=T)

    def loop(x: torch.Tensor) -> torch.Tensor:
        _, mem_rec = net(x)
        return mem_rec.mean(0)

    x = torch.rand(BATCH, 64, generator=torch.Generator().manual_seed(0))
    check_equal_to(model, loop, x)
    check_pgd_step(model, x)


def test_snntorch_tutorial_6_with_its_hard_coded_batch() -> None:
    torch.manual_seed(0)
    net = excite(Tutorial6(), gain=2.0)
    model = rs.SpikingClassifier(net, num_steps=T)

    def loop(x: torch.Tensor) -> torch.Tensor:  # tutorial 6's forward_pass
        snntorch_reset(net)
        mem_rec = [net(x)[1] for _ in range(T)]
        snntorch_reset(net)
        return torch.stack(mem_rec).mean(0)

    x = images(BATCH, 28, 1)
    check_equal_to(model, loop, x)
    check_pgd_step(model, x)


def test_snntorch_explicit_state_without_defaults() -> None:
    torch.manual_seed(0)
    net = excite(OneStep())
    model = rs.SpikingClassifier(net, num_steps=T)

    def loop(x: torch.Tensor) -> torch.Tensor:
        syn1, mem1 = net.lif1.init_synaptic()
        mem2 = net.lif2.init_leaky()
        mem_rec = []
        for _ in range(T):
            _, syn1, mem1, mem2 = net(x, syn1, mem1, mem2)
            mem_rec.append(mem2)
        snntorch_reset(net)
        return torch.stack(mem_rec).mean(0)

    x = torch.rand(BATCH, 64, generator=torch.Generator().manual_seed(0))
    check_equal_to(model, loop, x)


class OwnLoopLogits(nn.Module):
    """Loops over a fixed number of steps itself and returns the mean membrane [N, K]."""

    def __init__(self, num_steps: int) -> None:
        super().__init__()
        self.num_steps = num_steps
        self.fc, self.lif = nn.Linear(64, 10), snn.Leaky(beta=BETA, init_hidden=True, output=True)

    def forward(self, x):
        return torch.stack([self.lif(self.fc(x))[1] for _ in range(self.num_steps)]).mean(0)


def test_snntorch_net_with_its_own_loop_returning_logits() -> None:
    torch.manual_seed(0)
    x = torch.rand(BATCH, 64, generator=torch.Generator().manual_seed(0))
    net = excite(OwnLoopLogits(T))

    def loop(x: torch.Tensor) -> torch.Tensor:
        snntorch_reset(net)
        out = net(x)
        snntorch_reset(net)
        return out

    check_equal_to(rs.SpikingClassifier(net, num_steps=T), loop, x)
    with pytest.raises(ValueError, match=r"runs 5 time steps per call .* pass num_steps=5"):
        rs.SpikingClassifier(OwnLoopLogits(5), num_steps=T)(x)
    # HIRE's spans split the time loop: impossible for a net that runs its own
    model = rs.SpikingClassifier(net, num_steps=T)
    with model._stream() as span, pytest.raises(TypeError, match="own time loop"):
        span(x, 1)


def test_explicit_state_net_must_return_its_state() -> None:
    class ForgetsState(OneStep):
        def forward(self, x, syn1, mem1, mem2):
            return super().forward(x, syn1, mem1, mem2)[0]

    with pytest.raises(ValueError, match=r"takes 3 state argument.*got Tensor"):
        rs.SpikingClassifier(ForgetsState(), num_steps=T)(torch.rand(BATCH, 64))


def test_snntorch_sequence_neurons() -> None:
    torch.manual_seed(0)
    state_leaky = excite(nn.Sequential(nn.Linear(64, 10), snn.StateLeaky(beta=BETA, channels=10)))
    linear_leaky = excite(
        nn.Sequential(snn.LinearLeaky(beta=BETA, in_features=64, out_features=10))
    )
    parallel = excite(nn.Sequential(nn.Linear(64, 16), snn.LeakyParallel(16, 10)))
    x = torch.rand(BATCH, 64, generator=torch.Generator().manual_seed(0))

    def mem_loop(net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: net(x.unsqueeze(0).expand(T, *x.shape))[1].mean(0)

    for net in (state_leaky, linear_leaky):
        check_equal_to(rs.SpikingClassifier(net, num_steps=T), mem_loop(net), x)
    mem_only = nn.Sequential(state_leaky[0], snn.StateLeaky(beta=BETA, channels=10, output=False))
    torch.testing.assert_close(  # output=False returns the membrane: read as such
        rs.SpikingClassifier(mem_only, num_steps=T)(x),
        mem_only(x.unsqueeze(0).expand(T, *x.shape)).mean(0),
    )
    counts = rs.SpikingClassifier(parallel, num_steps=T, readout="count")(x)
    torch.testing.assert_close(counts, parallel(x.unsqueeze(0).expand(T, *x.shape)).sum(0))
    with pytest.raises(ValueError, match="LeakyParallel returns spikes only"):
        rs.SpikingClassifier(parallel, num_steps=T)(x)
    mixed = nn.Sequential(nn.Linear(64, 10), snn.Leaky(BETA, init_hidden=True), parallel[1])
    with pytest.raises(ValueError, match="mixes snnTorch sequence neurons"):
        rs.SpikingClassifier(mixed, num_steps=T)(x)


def test_snntorch_init_hidden_sequential_from_the_tutorials() -> None:
    torch.manual_seed(0)
    spike_grad = surrogate.fast_sigmoid(slope=25)
    net = nn.Sequential(
        nn.Conv2d(1, 12, 5),
        nn.MaxPool2d(2),
        snn.Leaky(beta=BETA, spike_grad=spike_grad, init_hidden=True),
        nn.Conv2d(12, 64, 5),
        nn.MaxPool2d(2),
        snn.Leaky(beta=BETA, spike_grad=spike_grad, init_hidden=True),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 10),
        snn.Leaky(beta=BETA, spike_grad=spike_grad, init_hidden=True, output=True),
    )
    net = excite(net, gain=2.0)

    def loop(x: torch.Tensor) -> torch.Tensor:
        snntorch_reset(net)
        mem_rec = [net(x)[1] for _ in range(T)]
        snntorch_reset(net)
        return torch.stack(mem_rec).mean(0)

    check_equal_to(rs.SpikingClassifier(net, num_steps=T), loop, images(BATCH, 28, 1))


# ------------------------------------------------------------------ batch independence
class TimeMajor(nn.Module):
    """Written for time-major [T, N, ...] input: loops over x.size(0) as time."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 10), snn.Leaky(beta=BETA, init_hidden=True, output=True)
        )

    def forward(self, x):
        mem_rec = [self.net(x[t])[1] for t in range(x.size(0))]
        return torch.stack(mem_rec)


def test_a_time_major_network_fed_a_static_batch_is_refused() -> None:
    torch.manual_seed(0)
    net = excite(TimeMajor())
    x = images(4, 8, 1)
    with pytest.raises(ValueError, match=r"depends on the other samples.*loops over x\.size\(0\)"):
        rs.SpikingClassifier(net, num_steps=4)(x)


def test_the_probe_leaves_the_network_as_it_found_it() -> None:
    torch.manual_seed(0)
    net = excite(ZOO_2["ms_resnet18"]()).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    rng = torch.get_rng_state()
    with torch.no_grad():
        rs.SpikingClassifier(net, num_steps=T)(images())
    assert [m.training for m in net.modules()] == modes
    # The real call runs in train mode (batch statistics), the probe does not add to it.
    tracked = [k for k in before if k.endswith("num_batches_tracked")]
    assert tracked and all(net.state_dict()[k] == before[k] + 1 for k in tracked)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(
        not isinstance(v, torch.Tensor)
        for m in net.modules()
        for v in getattr(m, "_memories", {}).values()
    )


def test_a_network_drawing_from_the_global_rng_is_probed_without_consuming_it() -> None:
    from snntorch import spikegen

    class RateInside(nn.Module):  # rate-codes each step with the global RNG
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 10)
            self.lif = snn.Leaky(beta=BETA, init_hidden=True, output=True)

        def forward(self, x):
            return self.lif(self.fc(spikegen.rate(x, num_steps=1)[0]))

    torch.manual_seed(0)
    net = excite(RateInside())
    x = torch.rand(4, 64, generator=torch.Generator().manual_seed(0))
    model = rs.SpikingClassifier(net, num_steps=T)  # random draws are no batch dependence
    torch.manual_seed(1)
    out = model(x)  # the probe runs first, on a forked RNG
    torch.manual_seed(1)
    snntorch_reset(net)
    ref = torch.stack([net(x)[1] for _ in range(T)]).mean(0)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
