"""Train the frozen test models once and write their state_dicts next to this file.

The tests never train a model whose accuracy they then judge: after training, floats
differ from one CPU to another (other SIMD kernels), and a threshold that holds here can
fail elsewhere. Each model below is trained once by this script, on one machine, and
loaded by ``tests/helpers.py`` (``trained``, ``trained_ann``) with
``torch.load(..., weights_only=True)``. The recipes are the ones the tests used to run in
the session, so the measured numbers quoted in the tests' comments come from these files.

    PYTHONPATH=. python tests/data/make_fixtures.py   # rewrites every tests/data/*.pt

Run it only to change a fixture on purpose, then re-measure the margins quoted in the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/helpers.py

import helpers  # noqa: E402

import robust_spikes as rs  # noqa: E402


def train_snn(builder_name: str, readout: str, epochs: int, seed: int) -> dict[str, torch.Tensor]:
    """Adam 5e-3, batch 64, cross-entropy on the classifier's logits, seeded init and order."""
    torch.manual_seed(seed)
    net = helpers.BUILDERS[builder_name]()
    model = rs.SpikingClassifier(net, helpers.NUM_STEPS, readout=readout)  # type: ignore[arg-type]
    x, y, _, _ = helpers.digits_tensors()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.state_dict()


def train_ann(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """``rs.training.fit``, batch 64; ``adv`` is PGD-trained at eps 0.1 (5 steps of 0.1/3)."""
    torch.manual_seed(seed)
    net: nn.Module = helpers.ANNS[name]()
    x, y, _, _ = helpers.digits_tensors()
    epochs = {"conv": 8, "adv": 10, "resnet": 6}[name]
    adversary = rs.training.PGD(0.1, alpha=0.1 / 3, steps=5) if name == "adv" else None
    rs.training.fit(
        net, (x, y), epochs=epochs, batch_size=64, adversary=adversary, seed=seed, progress=False
    )
    return net.state_dict()


# file name -> how it is trained
SNNS = [
    ("snntorch_conv", "membrane", 3, 0),  # trained("snntorch_conv")
    ("snntorch_conv", "membrane", 3, 1),  # test_attacks: a second, independent network
    ("sj_conv_m", "count", 8, 0),  # trained("sj_conv_m", readout="count", epochs=8)
]


def main() -> None:
    torch.set_num_threads(1)
    written = []
    for builder_name, readout, epochs, seed in SNNS:
        state = train_snn(builder_name, readout, epochs, seed)
        path = HERE / helpers.fixture_name(builder_name, readout, epochs, seed)
        torch.save({k: v.clone() for k, v in state.items()}, path)
        written.append(path)
    for name in helpers.ANNS:
        path = HERE / f"ann-{name}.pt"
        torch.save({k: v.clone() for k, v in train_ann(name).items()}, path)
        written.append(path)
    for path in written:
        print(f"{path.name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
