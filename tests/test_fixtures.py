"""The frozen test models in tests/data/: small, loadable with weights_only, fresh per call."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from helpers import ANNS, DATA, fixture_name, frozen, trained, trained_ann

_spec = importlib.util.spec_from_file_location("make_fixtures", DATA / "make_fixtures.py")
assert _spec is not None and _spec.loader is not None
make_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixtures)

FILES = [fixture_name(*spec) for spec in make_fixtures.SNNS] + [f"ann-{n}.pt" for n in ANNS]
# Written by the other script in tests/data/, make_rate_trained_sj.py (a SpikingJelly net
# trained the SpikingJelly way, on firing rates, for the readout-mismatch flag).
OTHER_FILES = ["sj_rate_digits.pt"]


def test_every_fixture_the_script_writes_is_committed_and_small() -> None:
    on_disk = sorted(p.name for p in DATA.glob("*.pt"))
    assert on_disk == sorted(FILES + OTHER_FILES)
    sizes = {name: (DATA / name).stat().st_size for name in FILES + OTHER_FILES}
    assert max(sizes.values()) < 200_000 and sum(sizes.values()) < 1_000_000, sizes


@pytest.mark.parametrize("name", FILES)
def test_fixture_loads_with_weights_only_into_its_builder(name: str) -> None:
    state = torch.load(DATA / name, weights_only=True)
    assert state and all(isinstance(v, torch.Tensor) and v.isfinite().all() for v in state.values())
    if name.startswith("ann-"):
        net = trained_ann(name[len("ann-") : -len(".pt")])
    else:
        builder, readout, epochs, seed = next(
            s for s in make_fixtures.SNNS if fixture_name(*s) == name
        )
        net = trained(builder, readout, epochs, seed)
    loaded = net.state_dict()
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_trained_returns_a_fresh_network_each_call() -> None:
    first, second = trained("snntorch_conv"), trained("snntorch_conv")
    assert first is not second
    with torch.no_grad():
        first[0].weight.zero_()
    assert second[0].weight.abs().sum() > 0
    assert trained("snntorch_conv")[0].weight.abs().sum() > 0  # the cached state is intact
    assert frozen(fixture_name("snntorch_conv"))["0.weight"].abs().sum() > 0


def test_a_missing_fixture_names_the_script() -> None:
    with pytest.raises(FileNotFoundError, match=r"run `python tests/data/make_fixtures\.py`"):
        frozen("no-such-model.pt")
