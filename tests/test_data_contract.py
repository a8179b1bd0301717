"""One data contract: every entry point takes the same four forms of data, gives the same
result for the same samples in each, and refuses anything else with the same error."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import robust_spikes as rs
from robust_spikes.conversion import convert, robust_finetune, thresholds
from robust_spikes.neurons import record_signature
from robust_spikes.training import fit, hire

N = 12


def samples(n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    ds = rs.data.digits("test")
    return ds.images[:n].clone(), ds.labels[:n].clone()


def forms(x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """The four accepted forms of the same samples, in the same order."""
    return {
        "pair": (x, y),
        "dataset": TensorDataset(x, y),  # items (image, 0-d label tensor)
        "loader": DataLoader(TensorDataset(x, y), batch_size=5),
        "batches": [(x[:7], y[:7]), (x[7:], y[7:])],  # a list of (images, labels) tuples
    }


def snn_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 10), snn.Leaky(beta=0.9, init_hidden=True, output=True)
    )


def classifier(seed: int = 0) -> rs.SpikingClassifier:
    return rs.SpikingClassifier(snn_net(seed), num_steps=4)


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------- each entry point
def test_evaluate_gives_the_same_records_for_every_form() -> None:
    x, y = samples()
    kw: dict[str, Any] = dict(
        eps=[0.0, 0.1], attacks=["FGSM"], convergence_steps=0, sanity_eps=0, progress=False
    )
    results = {k: rs.evaluate(classifier(), d, **kw).records for k, d in forms(x, y).items()}
    assert all(r == results["pair"] for r in results.values())
    assert [r["label"] for r in results["pair"]] == y.tolist()


def test_certify_gives_the_same_certificates_for_every_form() -> None:
    x, y = samples(6)
    net = mlp()
    kw: dict[str, Any] = dict(sigma=0.25, n0=10, n=20, progress=False)
    results = {k: rs.certify(net, d, **kw).records for k, d in forms(x, y).items()}
    assert all(r == results["pair"] for r in results.values())
    picked = {k: rs.certify(net, d, indices=[4, 1], **kw).records for k, d in forms(x, y).items()}
    assert all(r == [results["pair"][4], results["pair"][1]] for r in picked.values())


def _fit(data: Any) -> tuple[nn.Module, Any]:
    net = mlp()
    history = fit(net, data, epochs=2, batch_size=4, seed=3, val_data=data, progress=False)
    return net, history


def test_fit_trains_bit_identically_for_every_form() -> None:
    x, y = samples()
    runs = {k: _fit(d) for k, d in forms(x, y).items()}
    net, history = runs["pair"]
    for key, (other, other_history) in runs.items():
        assert states_equal(other, net), key
        assert other_history.to_dict() == history.to_dict(), key


def test_fit_on_tensors_equals_the_plain_seeded_loop() -> None:
    """Today's training for tensor input, written out: Adam, randperm of a seeded generator."""
    x, y = samples()
    net, _ = _fit((x, y))
    ref = mlp()
    optimizer = torch.optim.Adam(ref.parameters(), lr=1e-3)
    shuffle = torch.Generator().manual_seed(3)
    for _ in range(2):
        for idx in torch.randperm(len(x), generator=shuffle).split(4):
            loss = F.cross_entropy(ref(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert states_equal(net, ref)


def test_hire_trains_bit_identically_for_every_form() -> None:
    x, y = samples()
    results = {}
    for key, d in forms(x, y).items():
        model = classifier()
        history = hire(model, d, epochs=1, periods=2, batch_size=4, progress=False)
        results[key] = (model, history.to_dict())
    model, history = results["pair"]
    for key, (other, other_history) in results.items():
        assert states_equal(other, model) and other_history == history, key


def test_robust_finetune_trains_bit_identically_for_every_form() -> None:
    x, y = samples()
    snn_net = convert(mlp(), x, calibration_steps=4)
    results = {}
    for key, d in forms(x, y).items():
        model = rs.SpikingClassifier(copy.deepcopy(snn_net), num_steps=4)
        history = robust_finetune(model, d, epochs=1, batch_size=4, progress=False)
        results[key] = (model, history.to_dict())
    model, history = results["pair"]
    for key, (other, other_history) in results.items():
        assert states_equal(other, model) and other_history == history, key


def test_convert_calibrates_the_same_thresholds_for_every_form() -> None:
    x, y = samples()
    # one calibration batch in every form (iterables keep their batches, so one batch each)
    given = {
        "images": x,
        "pair": (x, y),
        "dataset": TensorDataset(x, y),
        "loader": DataLoader(TensorDataset(x, y), batch_size=256),
        "batches": [(x, y)],
        "image batches": [x],
    }
    found = {
        k: {
            n: float(t.detach())
            for n, t in thresholds(convert(mlp(), d, calibration_steps=4)).items()
        }
        for k, d in given.items()
    }
    assert all(t == found["images"] for t in found.values())


def test_record_signature_is_the_same_for_every_form() -> None:
    x, y = samples()
    given = {**forms(x, y), "images": x, "image batches": [x[:5], x[5:]]}
    signatures = {}
    for key, d in given.items():
        model = rs.SpikingClassifier(rs.adapt(snn_net_hidden(), "ta-lif"), num_steps=4)
        record_signature(model, d)
        signatures[key] = model.net[2].signature.clone()
    for key, s in signatures.items():  # per-step means summed in float64: batching-invariant
        torch.testing.assert_close(s, signatures["images"], rtol=0, atol=1e-6, msg=key)


def snn_net_hidden() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 16),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(16, 10),
        snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )


# ------------------------------------------------------------------------ the same error
ENTRY_POINTS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "evaluate": ("data", lambda d: rs.evaluate(classifier(), d, eps=0.0, progress=False)),
    "certify": ("data", lambda d: rs.certify(mlp(), d, sigma=0.25, n=10, progress=False)),
    "fit": ("train_data", lambda d: fit(mlp(), d, epochs=1, progress=False)),
    "fit val": (
        "val_data",
        lambda d: fit(mlp(), samples(), epochs=1, val_data=d, progress=False),
    ),
    "hire": ("train_data", lambda d: hire(classifier(), d, epochs=1, progress=False)),
    "robust_finetune": (
        "data",
        lambda d: robust_finetune(
            rs.SpikingClassifier(convert(mlp(), samples()[0], calibration_steps=2), 4),
            d,
            epochs=1,
            progress=False,
        ),
    ),
    "convert": ("calibration_data", lambda d: convert(mlp(), d, calibration_steps=2)),
    "record_signature": (
        "loader",
        lambda d: record_signature(
            rs.SpikingClassifier(rs.adapt(snn_net_hidden(), "ta-lif"), 4), d
        ),
    ),
}
BAD = {
    "an int": (3, "int 3"),
    "a string": ("digits", "str 'digits'"),
    "a list of ints": ([1, 2], "item 0 of the list: int 1"),
    "None": (None, "NoneType None"),
}


@pytest.mark.parametrize(
    ("entry", "bad"),
    [(e, b) for e in sorted(ENTRY_POINTS) for b in sorted(BAD) if (e, b) != ("fit val", "None")],
)  # val_data=None is no validation
def test_every_entry_point_refuses_other_data_with_the_same_error(entry: str, bad: str) -> None:
    arg, call = ENTRY_POINTS[entry]
    value, got = BAD[bad]
    accepted = (
        r"\(images, labels\) pair of tensors, a Dataset of \(image, label\) pairs, a "
        r"DataLoader, or an iterable of"
    )
    with pytest.raises(ValueError, match=rf"^{arg} must be .*{accepted}.*; got {got}"):
        call(value)


@pytest.mark.parametrize("entry", ["evaluate", "certify", "fit", "hire"])
def test_labels_that_do_not_match_the_images_are_refused(entry: str) -> None:
    arg, call = ENTRY_POINTS[entry]
    x, y = samples()
    with pytest.raises(ValueError, match=rf"^{arg} .*images \[N, \.\.\.\] and labels \[N\]"):
        call((x, y[:-1]))
    with pytest.raises(ValueError, match=rf"^{arg}: item 0 of the list holds 7 images and 6"):
        call([(x[:7], y[:6])])
    with pytest.raises(ValueError, match=rf"^{arg} must hold integer class labels"):
        call((x, y.float() + 0.5))


def test_a_shuffling_dataloader_is_flagged() -> None:
    x, y = samples()
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    with pytest.warns(UserWarning, match=r"train_data is a DataLoader with shuffle=True"):
        fit(mlp(), loader, epochs=1, progress=False)
