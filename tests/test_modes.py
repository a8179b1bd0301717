"""The user's network leaves every attack, ensemble, training and evaluation path as it came.

Issue: ``SpikingClassifier(net.eval(), num_steps)`` used to start in train mode (every
``nn.Module`` does), and torchattacks restores the mode it found on the *wrapper* after an
attack: the user's batch-norm network came back in train mode, with logits changed and
running statistics drifting on the next call. These tests build networks with batch norm
the way users write them, run every attack of the torchattacks matrix from eval and from
train mode, and compare every module's mode, every buffer and every parameter before and
after.
"""

from __future__ import annotations

import copy

import pytest
import snntorch as snn
import torch
from spikingjelly.activation_based import functional, layer, neuron
from test_torchattacks_matrix import ATTACKS, OFF_DOMAIN, make_attack
from torch import nn

import robust_spikes as rs
from robust_spikes import SpikingClassifier

NUM_STEPS = 2


def snntorch_bn() -> nn.Sequential:
    """snnTorch conv SNN with batch norm (3 channels, so RGB-only attacks run too)."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 10),
        snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )


def spikingjelly_bn() -> nn.Sequential:
    """SpikingJelly multi-step conv SNN with batch norm (its CIFAR examples' style)."""
    net = nn.Sequential(
        layer.Conv2d(3, 4, 3, padding=1),
        layer.BatchNorm2d(4),
        neuron.LIFNode(tau=2.0),
        layer.MaxPool2d(2),
        layer.Flatten(),
        layer.Linear(4 * 4 * 4, 10),
        neuron.LIFNode(tau=2.0),
    )
    functional.set_step_mode(net, "m")
    return net


BUILDERS = {"snntorch": snntorch_bn, "spikingjelly": spikingjelly_bn}


def snapshot(net: nn.Module) -> tuple[dict[str, bool], dict[str, torch.Tensor]]:
    """Every module's mode and a copy of every parameter and buffer of ``net``."""
    modes = {name: m.training for name, m in net.named_modules()}
    tensors = {k: v.detach().clone() for k, v in net.state_dict(keep_vars=True).items()}
    return modes, tensors


def assert_unchanged(net: nn.Module, before: tuple[dict, dict], grads: bool = True) -> None:
    modes, tensors = snapshot(net)
    assert modes == before[0], "a module's train/eval mode changed"
    assert tensors.keys() == before[1].keys()
    for k, v in tensors.items():
        assert torch.equal(v, before[1][k]), f"{k} changed"
    if grads:
        assert all(p.grad is None for p in net.parameters()), "parameter gradients were left"


def warmed(framework: str, mode: str) -> nn.Module:
    """A network whose batch norm has non-trivial running statistics, in ``mode``."""
    torch.manual_seed(0)
    net = BUILDERS[framework]()
    model = SpikingClassifier(net.train(), NUM_STEPS)
    with torch.no_grad():
        model(torch.rand(8, 3, 8, 8))  # one training-mode call moves the running stats
    return net.train(mode == "train")


@pytest.mark.parametrize("framework", list(BUILDERS))
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_classifier_mirrors_the_mode_of_the_net_it_wraps(framework: str, mode: str) -> None:
    net = warmed(framework, mode)
    model = SpikingClassifier(net, NUM_STEPS)
    assert model.training is net.training is (mode == "train")
    net.train(mode != "train")  # changed behind the wrapper's back: still mirrored
    assert model.training is net.training


@pytest.mark.parametrize("framework", list(BUILDERS))
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_leaves_modes_buffers_and_parameters_as_found(
    framework: str, mode: str, name: str
) -> None:
    net = warmed(framework, mode)
    model = SpikingClassifier(net, NUM_STEPS, input_range=None if name in OFF_DOMAIN else (0, 1))
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    before = snapshot(net)
    with torch.no_grad():
        logits = SpikingClassifier(copy.deepcopy(net).eval(), NUM_STEPS)(x)
    torch.manual_seed(0)
    if name == "LGV":  # trains copies of the model on a loader of images like x
        import torchattacks

        loader = [(torch.rand(4, 3, 8, 8), torch.arange(4))]
        attack = torchattacks.LGV(model, loader, eps=8 / 255, steps=2, **ATTACKS[name][0])
    else:
        attack = make_attack(name, model)
    attack(x, y)
    # Some torchattacks attacks (CW, LGV) call backward() and leave parameter gradients:
    # theirs to leave, and harmless to the function; modes and buffers must not move.
    assert_unchanged(net, before, grads=False)
    with torch.no_grad():  # and the network still computes the same function in eval mode
        assert torch.equal(SpikingClassifier(copy.deepcopy(net).eval(), NUM_STEPS)(x), logits)


@pytest.mark.parametrize("framework", list(BUILDERS))
def test_frozen_batch_norm_stays_frozen_through_an_attack(framework: str) -> None:
    net = warmed(framework, "train")
    bn = next(m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    bn.eval()  # the user froze it
    model = SpikingClassifier(net, NUM_STEPS)
    before = snapshot(net)
    import torchattacks

    torchattacks.PGD(model, eps=8 / 255, steps=2)(torch.rand(4, 3, 8, 8), torch.arange(4))
    assert_unchanged(net, before)
    assert net.training and not bn.training


def test_train_after_eval_is_plain_train_when_modes_changed_in_between() -> None:
    net = warmed("snntorch", "train")
    bn = net[1]
    bn.eval()
    model = SpikingClassifier(net, NUM_STEPS).eval()
    bn.train()  # the user changed a mode after eval(): no snapshot is restored
    model.train()
    assert all(m.training for m in net.modules())
    model.eval()
    assert not any(m.training for m in net.modules())
    model.eval().train()  # eval() found everything in eval: train() means train
    assert all(m.training for m in net.modules())
    with pytest.raises(ValueError, match="mode must be a bool"):
        model.train("yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("framework", list(BUILDERS))
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_adaptive_ensemble_and_evaluate_leave_the_net_as_found(framework: str, mode: str) -> None:
    net = warmed(framework, mode)
    model = SpikingClassifier(net, NUM_STEPS)
    x, y = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    before = snapshot(net)
    members = [m for m in rs.attacks.default_members(model, square_queries=20)]
    rs.attacks.AdaptiveEnsemble(model, 8 / 255, members=members, cascade=False)(x, y)
    assert_unchanged(net, before)
    rs.evaluate(
        model,
        (x, y),
        eps=[0.05],
        protocol="both",
        attacks=["FGSM", "PGD-20/rga"],
        convergence_steps=None,
        progress=False,
    )
    assert_unchanged(net, before)


@pytest.mark.parametrize("framework", list(BUILDERS))
def test_training_restores_the_modes_it_found(framework: str) -> None:
    net = warmed(framework, "eval")
    model = SpikingClassifier(net, NUM_STEPS)
    modes = snapshot(net)[0]
    x, y = torch.rand(8, 3, 8, 8), torch.arange(8) % 10
    rs.training.fit(
        model,
        (x, y),
        epochs=1,
        batch_size=4,
        val_data=(x, y),
        progress=False,
        adversary=rs.training.FGSM(2 / 255),
    )
    assert snapshot(net)[0] == modes
    rs.training.hire(model, (x, y), epochs=1, batch_size=4, progress=False)
    assert snapshot(net)[0] == modes
