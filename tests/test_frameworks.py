"""robust_spikes.frameworks: which framework a network belongs to, and its conventions.

The one home of host-framework facts: detection, what a neuron is, step modes, ties at
threshold and the default readout. Real snnTorch and SpikingJelly modules throughout.
"""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from robust_spikes.frameworks import detect, host_named, host_names, host_of


def sj_net(step_mode: str = "s") -> nn.Sequential:
    net = nn.Sequential(layer.Linear(4, 3), neuron.LIFNode(), layer.Linear(3, 2), neuron.IFNode())
    functional.set_step_mode(net, step_mode)
    return net


def snn_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(4, 3),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(3, 2),
        snn.Synaptic(alpha=0.8, beta=0.9, init_hidden=True, output=True),
    )


def test_host_names_are_the_framework_files() -> None:
    assert host_names() == ["snntorch", "spikingjelly"]
    assert [host_named(n).name for n in host_names()] == host_names()
    with pytest.raises(
        ValueError, match=r"framework must be one of \['snntorch', 'spikingjelly'\]"
    ):
        host_named("norse")


@pytest.mark.parametrize(("build", "name"), [(snn_net, "snntorch"), (sj_net, "spikingjelly")])
def test_detect_finds_the_framework_and_its_neurons_in_order(build, name: str) -> None:
    net = build()
    host = detect(net)
    assert host.name == name
    neurons = host.neurons(net)
    assert neurons == [net[1], net[3]]  # modules() order: the last is the output layer
    assert all(host_of(m) is not None and host_of(m).name == name for m in neurons)  # type: ignore[union-attr]
    assert host_of(net[0]) is None  # a Linear belongs to no framework
    assert detect(net, name).name == name


def test_detect_refuses_what_it_cannot_wrap() -> None:
    with pytest.raises(ValueError, match=r"net contains no spiking neurons.*Linear"):
        detect(nn.Sequential(nn.Linear(2, 2)))
    mixed = nn.Sequential(snn.Leaky(beta=0.9, init_hidden=True), neuron.LIFNode())
    with pytest.raises(ValueError, match="several frameworks"):
        detect(mixed)
    with pytest.raises(ValueError, match="framework must be 'auto' or one of"):
        detect(snn_net(), "jax")
    with pytest.raises(ValueError, match="net contains no spikingjelly spiking neurons"):
        detect(snn_net(), "spikingjelly")


def test_step_modes() -> None:
    sj = host_named("spikingjelly")
    for mode, expected in (("s", "step"), ("m", "sequence")):
        net = sj_net(mode)
        assert sj.step_mode(net, sj.neurons(net)) == expected
    mixed = sj_net("s")
    mixed[3].step_mode = "m"
    with pytest.raises(ValueError, match="mixes SpikingJelly step modes"):
        sj.step_mode(mixed, sj.neurons(mixed))
    st = host_named("snntorch")
    net = snn_net()
    assert st.step_mode(net, st.neurons(net)) in ("step", "unknown")


def test_conventions_live_here() -> None:
    """The tie at threshold and the readout each framework's tutorials train with."""
    st, sj = host_named("snntorch"), host_named("spikingjelly")
    assert st.spike_slot(snn_net()[1])[2] == ">"  # snnTorch fires on u - Vth > 0
    assert sj.spike_slot(sj_net()[1])[2] == ">="  # SpikingJelly on u - Vth >= 0
    assert st.spiking_readout == "membrane" and sj.spiking_readout == "count"


def test_forget_empties_the_state_of_snntorch_neurons_that_rebuild_it() -> None:
    """Host.forget: snnTorch neurons back to their constructor state (no batch shape), so a
    compiled graph does not guard on the last batch size; DeltaLeaky (None) is only reset."""
    host = detect(nn.Sequential(snn.Leaky(beta=0.9, init_hidden=True)), "auto")
    leaky = snn.Leaky(beta=0.9, init_hidden=True)
    synaptic = snn.Synaptic(alpha=0.8, beta=0.9, init_hidden=True)
    delta = snn.DeltaLeaky(beta=0.9, init_hidden=True)
    for m in (leaky, synaptic, delta):
        m(torch.ones(3, 4))
    host.forget([leaky, synaptic, delta])
    assert leaky.mem.shape == (0,) and synaptic.syn.shape == (0,) and synaptic.mem.shape == (0,)
    assert delta.mem is None  # its own reset, not an empty tensor
    leaky(torch.full((2, 4), 2.0))  # state rebuilt for the new batch, as when new
    assert leaky.mem.shape == (2, 4) and leaky.threshold.shape == ()
