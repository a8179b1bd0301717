"""Event and sequence input: batch-first frames [N, T, ...], the embedded event digits."""

from __future__ import annotations

import sys

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
import torchattacks
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

import robust_spikes as rs
from robust_spikes.encoders import Frames, frames

T = 4


@pytest.fixture(scope="module")
def event_test_set() -> rs.data.EventFrames:
    return rs.data.event_digits("test", num_steps=T)


def batch(ds: rs.data.EventFrames, n: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    return ds.frames[:n].clone(), ds.labels[:n].clone()


def snntorch_event_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.MaxPool2d(2),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 10),
        snn.Leaky(beta=0.9, init_hidden=True, output=True),
    ).eval()


def sj_event_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1),
        layer.MaxPool2d(2),
        neuron.LIFNode(),
        layer.Flatten(),
        layer.Linear(4 * 8 * 8, 10),
    )
    functional.set_step_mode(net, "m")
    return net.eval()


def grads(model, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xr = x.clone().requires_grad_()
    out = model(xr)
    (g,) = torch.autograd.grad(F.cross_entropy(out, y), xr)
    return out.detach(), g


# ------------------------------------------------------------------------ event digits
def test_event_digits_shapes_labels_and_determinism(event_test_set) -> None:
    ds = event_test_set
    digits = rs.data.digits("test")
    assert ds.frames.shape == (len(digits), T, 2, 16, 16) and ds.frames.dtype == torch.float32
    assert torch.equal(ds.labels, digits.labels)
    frames_0, label_0 = ds[0]
    assert frames_0.shape == (T, 2, 16, 16) and isinstance(label_0, int)
    assert torch.equal(ds.frames, rs.data.event_digits("test", num_steps=T).frames)
    assert torch.equal(ds.frames, ds.frames.round()) and ds.frames.min() >= 0  # counts
    assert (ds.frames.sum((1, 2, 3, 4)) > 0).all()  # every digit made events
    assert (ds.frames[:, :, 0].sum() > 0) and (ds.frames[:, :, 1].sum() > 0)  # both polarities


def test_event_digits_closed_saccades_balance_on_and_off(event_test_set) -> None:
    # The sensor returns to where it started, so each pixel's log intensity ends where it
    # began: a DVS pixel then has emitted as many ON as OFF events.
    totals = event_test_set.frames.sum(1)
    assert torch.equal(totals[:, 0], totals[:, 1])
    # and a still scene (no saccade) or a blank image gives no event at all
    from robust_spikes.data._events import _events_from_images

    blank = _events_from_images(
        torch.zeros(2, 1, 8, 8), 3, size=12, amplitude=2.0, threshold=0.5, substeps=24
    )
    assert blank.abs().sum() == 0


def test_event_digits_binary_and_bins() -> None:
    ds = rs.data.event_digits("test", num_steps=3, size=12, binary=True)
    assert ds.frames.shape[1:] == (3, 2, 12, 12)
    assert set(ds.frames.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "val"}, r"split must be 'train' or 'test', got 'val'"),
        ({"num_steps": 0}, r"num_steps must be a positive int, got 0"),
        ({"size": 5}, r"size must exceed 2 \* ceil\(amplitude\) \+ 1 = 5.*got size=5"),
        ({"amplitude": -1.0}, r"amplitude must be a finite number > 0, got -1.0"),
        ({"threshold": 0}, r"threshold must be a finite number > 0, got 0"),
    ],
)
def test_event_digits_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        rs.data.event_digits(**kwargs)


def test_event_dataset_loaders_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"unknown event dataset 'mnist'; valid names are"):
        rs.data.event_dataset("mnist", "data")
    with pytest.raises(ValueError, match=r"backend must be 'tonic' or 'spikingjelly', got 'x'"):
        rs.data.event_dataset("nmnist", "data", backend="x")
    monkeypatch.setitem(sys.modules, "tonic", None)  # not installed
    with pytest.raises(ImportError, match=r"needs tonic, which is not installed: pip install"):
        rs.data.event_dataset("nmnist", "data")
    monkeypatch.setitem(sys.modules, "spikingjelly.datasets.dvs128_gesture", None)
    with pytest.raises(ImportError, match=r"needs spikingjelly\.datasets\.dvs128_gesture"):
        rs.data.event_dataset("dvs128_gesture", "data", backend="spikingjelly")


# ------------------------------------------------------------------ the Frames encoder
def test_frames_encoder_checks_the_number_of_frames() -> None:
    assert frames(torch.zeros(2, 3, 5), 3).shape == (3, 2, 5)
    with pytest.raises(ValueError, match=r"x has 3 frames per sample .* num_steps=4.*pass"):
        frames(torch.zeros(2, 3, 5), 4)
    model = rs.SpikingClassifier(snntorch_event_net(), num_steps=6, encoder=Frames())
    with pytest.raises(ValueError, match=r"x has 4 frames .*num_steps=6"):
        model(torch.zeros(2, 4, 2, 16, 16))
    with pytest.raises(ValueError, match=r"x must be batch-first frames \[N, T, F\] or"):
        model(torch.zeros(2, 16))


@pytest.mark.parametrize("framework", ["snntorch", "spikingjelly"])
def test_frames_equal_the_hand_written_loop(event_test_set, framework: str) -> None:
    x, y = batch(event_test_set)
    if framework == "snntorch":
        net = snntorch_event_net()

        def loop(x: torch.Tensor) -> torch.Tensor:  # snnTorch tutorial 7's forward_pass
            for m in net.modules():
                if isinstance(m, snn.SpikingNeuron):
                    m.reset_mem()
            mem_rec = [net(x[:, t])[1] for t in range(x.shape[1])]
            return torch.stack(mem_rec).mean(0)
    else:
        net = sj_event_net()

        def loop(x: torch.Tensor) -> torch.Tensor:  # SpikingJelly's DVS Gesture example
            functional.reset_net(net)
            out = net(x.transpose(0, 1)).mean(0)
            functional.reset_net(net)
            return out

    model = rs.SpikingClassifier(net, num_steps=T, encoder=Frames(), input_range=None)
    out, g = grads(model, x, y)
    ref, g_ref = grads(loop, x, y)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-6)
    assert g.abs().sum() > 0


def test_frames_with_normalize_use_the_channel_dimension(event_test_set) -> None:
    x, _ = batch(event_test_set)
    net = sj_event_net()
    mean, std = [0.5, 1.0], [2.0, 4.0]
    model = rs.SpikingClassifier(net, T, encoder=Frames(), input_range=None, normalize=(mean, std))
    plain = rs.SpikingClassifier(net, T, encoder=Frames(), input_range=None)
    xn = (x - torch.tensor(mean).view(1, 1, 2, 1, 1)) / torch.tensor(std).view(1, 1, 2, 1, 1)
    torch.testing.assert_close(model(x), plain(xn), rtol=0, atol=0)


def test_attacks_and_evaluate_run_on_frames() -> None:
    ds = rs.data.event_digits("test", num_steps=T, binary=True)
    x, y = ds.frames[:6], ds.labels[:6]
    model = rs.SpikingClassifier(snntorch_event_net(), num_steps=T, encoder=Frames())
    eps = 0.1
    adv = torchattacks.PGD(model, eps=eps, alpha=eps / 2, steps=2)(x, y)
    assert adv.shape == x.shape
    assert 0 < (adv - x).abs().max() <= eps + 1e-6  # the perturbation lives in frame space
    report = rs.evaluate(model, (x, y), eps=eps, protocol="paper", progress=False)
    assert report.num_samples == 6
    clean = float((model(x).argmax(1) == y).float().mean())
    assert report.clean_accuracy == pytest.approx(clean)
    robust = report.robust_accuracy[eps]
    assert robust and all(value <= report.clean_accuracy for value in robust.values())


@pytest.mark.parametrize("build", [snntorch_event_net, sj_event_net])
def test_the_default_adaptive_protocol_runs_on_folded_frames(build) -> None:
    """Every default member, the ANN twin (on the mean frame) and Square included."""
    ds = rs.data.event_digits("test", num_steps=T, binary=True)
    x, y = ds.frames[:4].flatten(1, 2), ds.labels[:4]  # [N, T * 2, H, W]
    model = rs.SpikingClassifier(build(), num_steps=T, encoder=Frames(channels=2))
    report = rs.evaluate(
        model, (x, y), eps=0.1, square_queries=10, convergence_steps=None, progress=False
    )
    names = [m["name"] for m in report.settings["attacks"]["adaptive"]]
    assert "PGD-20/ann" in names and "Square-10" in names
    robust = report.robust_accuracy[0.1]
    assert all(value <= report.clean_accuracy for value in robust.values())
    net, frame = model.net, x.unflatten(1, (T, 2)).mean(1)  # the twin sees the mean frame
    with model.gradient("ann"), torch.no_grad():
        twin = model(x)
        seq = build is sj_event_net  # multi-step layers take a length-1 sequence
        h = net[1](net[0](frame.unsqueeze(0) if seq else frame))
        expected = net[4](net[3](F.relu(h)))
        expected = expected[0] if seq else expected
    torch.testing.assert_close(twin, expected, rtol=0, atol=1e-6)


# Attacks on frames: the 5-D layout for attacks that take any shape; folded 4-D frames
# [N, T * C, H, W] with Frames(channels=C) for those that take images only (APGD,
# AutoAttack, Square, DIFGSM, ...). TIFGSM and PIFGSM(PP) hard-code 3 colour channels.
FRAME_ATTACKS = {
    "FGSM": (False, {"eps": 0.1}, "linf"),
    "PGD": (False, {"eps": 0.1, "alpha": 0.05, "steps": 2}, "linf"),
    "EOTPGD": (False, {"eps": 0.1, "steps": 2, "eot_iter": 2}, "linf"),
    "PGDL2": (False, {"eps": 0.5, "steps": 2}, "l2"),  # views the gradient
    "DeepFool": (False, {"steps": 2}, None),
    "APGD": (True, {"eps": 0.1, "steps": 2, "n_restarts": 1}, "linf"),
    "Square": (True, {"eps": 0.1, "n_queries": 10}, "linf"),
    "DIFGSM": (True, {"eps": 0.1, "steps": 2}, "linf"),
}


@pytest.mark.parametrize("name", list(FRAME_ATTACKS))
def test_torchattacks_on_frames(event_test_set, name: str) -> None:
    folded, kwargs, norm = FRAME_ATTACKS[name]
    x, y = batch(event_test_set, 4)
    x = x.clamp(max=1)
    encoder = Frames(channels=2) if folded else Frames()
    x = x.flatten(1, 2) if folded else x
    model = rs.SpikingClassifier(sj_event_net(), num_steps=T, encoder=encoder)
    adv = getattr(torchattacks, name)(model, **kwargs)(x, y)
    assert adv.shape == x.shape and adv.min() >= 0 and adv.max() <= 1
    delta = (adv - x).flatten(1)
    if norm == "linf":
        assert delta.abs().max() <= kwargs["eps"] + 1e-6
    elif norm == "l2":
        assert delta.norm(dim=1).max() <= kwargs["eps"] + 1e-5


def test_folded_frames_equal_batch_first_frames(event_test_set) -> None:
    x, _ = batch(event_test_set)
    net = sj_event_net()
    folded = rs.SpikingClassifier(net, T, encoder=Frames(channels=2), input_range=None)
    plain = rs.SpikingClassifier(net, T, encoder=Frames(), input_range=None)
    torch.testing.assert_close(folded(x.flatten(1, 2)), plain(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"x has 10 channels .* 4 \* 2 = 8"):
        folded(torch.zeros(2, 10, 16, 16))
    with pytest.raises(ValueError, match=r"channels must be a positive int, got 0"):
        Frames(channels=0)
    normalized = rs.SpikingClassifier(
        net, T, encoder=Frames(channels=2), normalize=([0.0], [1.0]), input_range=None
    )
    with pytest.raises(ValueError, match=r"normalize is not supported with folded frames"):
        normalized(x.flatten(1, 2))
