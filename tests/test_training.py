"""Tests of robust_spikes.training: the fit loop, checkpoints and training adversaries."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import NUM_STEPS, digits_tensors, snntorch_conv, trained
from torch import nn

import robust_spikes as rs
from robust_spikes.training import FGSM, PGD, RFGSM, TRADES, History, fit


def _model(seed: int = 0) -> rs.SpikingClassifier:
    torch.manual_seed(seed)
    return rs.SpikingClassifier(snntorch_conv(), NUM_STEPS)


def _small_data(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    x, y, _, _ = digits_tensors()
    return x[:n], y[:n]


ADVERSARIES = {
    "fgsm": lambda: FGSM(0.1),
    "pgd": lambda: PGD(0.1, alpha=0.03, steps=3),
    "pgd_no_start": lambda: PGD(0.1, alpha=0.03, steps=3, random_start=False),
    "trades": lambda: TRADES(0.1, steps=3),
    "rfgsm": lambda: RFGSM(0.1, alpha=0.05),
}


# ------------------------------------------------------------------------- adversaries
@pytest.mark.parametrize("name", list(ADVERSARIES))
@pytest.mark.parametrize("training", [True, False])
def test_perturb_invariants(name: str, training: bool) -> None:
    model = _model()
    model.train(training)
    model.net[1].eval()  # a mixed mode must come back per submodule
    x, y = _small_data(32)
    adversary = ADVERSARIES[name]()
    x_adv = adversary.perturb(model, x, y)
    assert x_adv.shape == x.shape
    assert not x_adv.requires_grad
    assert (x_adv - x).abs().max() <= adversary.eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert (x_adv != x).any()
    assert all(p.grad is None for p in model.parameters())
    assert model.training is training and model.net[0].training is training
    assert model.net[1].training is False


@pytest.mark.parametrize("name", list(ADVERSARIES))
def test_perturb_increases_loss(name: str) -> None:
    """Examples from a trained model raise its cross-entropy over the clean input.

    Frozen weights (tests/data/). Measured on 64 training digits: clean 0.392; FGSM 1.21,
    PGD 1.02, PGD without random start 1.10, TRADES 0.576, R-FGSM 0.474.
    """
    model = rs.SpikingClassifier(trained("snntorch_conv"), NUM_STEPS).eval()
    x, y = _small_data(64)
    x_adv = ADVERSARIES[name]().perturb(model, x, y)
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > 1.1 * F.cross_entropy(model(x), y)


@pytest.mark.parametrize("name", list(ADVERSARIES))
def test_loss_is_a_differentiable_scalar(name: str) -> None:
    model = _model()
    x, y = _small_data(16)
    loss = ADVERSARIES[name]().loss(model, x, y)
    assert loss.dim() == 0 and loss.requires_grad
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_fgsm_matches_closed_form() -> None:
    """FGSM on a linear model: x + eps * sign(grad of CE), clipped to [0, 1]."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    x_req = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(net(x_req), y), x_req)
    expected = (x + 0.1 * grad.sign()).clamp(0, 1)
    torch.testing.assert_close(FGSM(0.1).perturb(net, x, y), expected)


def test_random_start_uses_the_model_generator_not_the_global_rng() -> None:
    x, y = _small_data(8)
    adversary = PGD(0.1, alpha=0.01, steps=1)
    model = _model()
    model.generator.manual_seed(3)
    torch.manual_seed(0)
    first = adversary.perturb(model, x, y)
    model.generator.manual_seed(3)
    torch.manual_seed(1)  # the global RNG must not matter
    torch.testing.assert_close(adversary.perturb(model, x, y), first, rtol=0, atol=0)
    assert not torch.equal(adversary.perturb(model, x, y), first)  # the generator advanced
    own = torch.Generator().manual_seed(5)
    assert PGD(0.1, alpha=0.01, steps=1, generator=own).generator_for(model) is own
    bare = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    assert adversary.generator_for(bare) is adversary.generator_for(bare) is not model.generator


def test_rfgsm_with_alpha_equal_eps_is_the_random_step() -> None:
    x, y = _small_data(8)
    x_adv = RFGSM(0.1, alpha=0.1).perturb(_model(), x, y)
    sign = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).sign()
    torch.testing.assert_close(x_adv, (x + 0.1 * sign).clamp(0, 1))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: FGSM(0.0), "eps"),
        (lambda: FGSM(1.5), "eps"),
        (lambda: FGSM(float("nan")), "eps"),
        (lambda: PGD(0.1, alpha=0.0, steps=3), "alpha"),
        (lambda: PGD(0.1, alpha=0.01, steps=0), "steps"),
        (lambda: TRADES(-0.1), "eps"),
        (lambda: TRADES(0.1, beta=-1.0), "beta"),
        (lambda: RFGSM(0.1, alpha=0.2), "alpha"),
    ],
)
def test_adversary_errors(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_adversary_generator_type_error() -> None:
    with pytest.raises(TypeError, match="generator"):
        FGSM(0.1, generator=0)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- fit
def _clip(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1).detach()


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(softmax(p) || softmax(q)) summed over classes, averaged over the batch.

    torch's own kl_div: near x_adv = x the ascent's gradients are tiny and their signs
    follow the rounding of the formula, so the reference rounds as the library does.
    """
    return F.kl_div(q.log_softmax(1), p.log_softmax(1), reduction="batchmean", log_target=True)


def _hand_written_loss(
    name: str, model: rs.SpikingClassifier, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """The training objectives written out from the papers, attack in eval mode.

    FGSM and PGD from x (Madry et al. 2018): x_{k+1} = clip(x_k + alpha sign(grad CE));
    loss CE(f(x_adv)). TRADES (Zhang et al. 2019): x_0 = x + 0.001 N(0, 1) from the
    model's generator, ascent on KL(f(x) || f(x_k)); loss CE(f(x)) + beta KL(f(x) || f(x_adv)).
    """
    eps, alpha, steps = {"fgsm": (0.1, 0.1, 1), "pgd_no_start": (0.1, 0.03, 3)}.get(
        name, (0.1, 0.025, 3)
    )
    model.eval()
    with torch.no_grad():
        clean = model(x)
    x_adv = x.clone()
    if name == "trades":
        x_adv = _clip(x + 0.001 * torch.randn(x.shape, generator=model.generator), x, eps)
    for _ in range(steps):
        z = x_adv.clone().requires_grad_(True)
        out = model(z)
        objective = _kl(clean, out) if name == "trades" else F.cross_entropy(out, y)
        (grad,) = torch.autograd.grad(objective, z)
        x_adv = _clip(x_adv + alpha * grad.sign(), x, eps)
    model.train()
    if name == "trades":
        logits = model(x)
        return F.cross_entropy(logits, y) + 6.0 * _kl(logits, model(x_adv))
    return F.cross_entropy(model(x_adv), y)


@pytest.mark.parametrize("name", ["fgsm", "pgd_no_start", "trades"])
def test_adversarial_fit_equals_a_hand_written_loop(name: str) -> None:
    """One epoch of fit(adversary=...) is the paper's objective on the current weights.

    The robustness this buys (PGD-10 robust accuracy at eps 0.1: plain 0.57, FGSM-AT 0.76,
    PGD-AT 0.73, TRADES 0.74) is measured by benchmarks/recipes_digits.py over seeds, not
    asserted here: accuracy after training differs from one CPU to another.
    """
    x, y = _small_data(64)
    model, reference = _model(), _model()
    lr = 0.5
    fit(
        model,
        (x, y),
        epochs=1,
        batch_size=32,
        optimizer=torch.optim.SGD(model.parameters(), lr=lr),
        adversary=ADVERSARIES[name](),
        progress=False,
    )
    optimizer = torch.optim.SGD(reference.parameters(), lr=lr)
    order = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    for idx in order.split(32):
        loss = _hand_written_loss(name, reference, x[idx], y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    initial = _model().state_dict()
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=1e-5, atol=1e-6)
    assert not torch.equal(reference.net[0].weight, initial["net.0.weight"])


def test_history_and_callbacks() -> None:
    x, y, xv, yv = digits_tensors()
    calls: list[tuple[int, int]] = []
    history = fit(
        _model(),
        (x[:128], y[:128]),
        epochs=3,
        val_data=(xv[:64], yv[:64]),
        batch_size=64,
        callbacks=[lambda e, h: calls.append((e, len(h)))],
        progress=False,
    )
    assert isinstance(history, History)
    assert len(history.loss) == len(history.train_accuracy) == len(history.val_accuracy) == 3
    assert calls == [(1, 1), (2, 2), (3, 3)]
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in history.val_accuracy)
    # measured (seeds 0-2): 2.27-2.31 -> 2.24-2.26, lower every epoch; a loss averaged
    # over 128 digits moves by ~1e-6 with the CPU's rounding
    assert history.loss[-1] < history.loss[0]


def test_dataset_input_equals_tuple_input() -> None:
    x, y = _small_data(64)
    dataset = torch.utils.data.TensorDataset(x, y)
    a, b = _model(), _model()
    fit(a, (x, y), epochs=2, batch_size=32, progress=False)
    fit(b, dataset, epochs=2, batch_size=32, progress=False)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key


@pytest.mark.parametrize("mode", [True, False])
def test_mode_restored(mode: bool) -> None:
    model = _model()
    model.train(mode)
    fit(model, _small_data(32), epochs=1, batch_size=32, progress=False)
    assert all(m.training is mode for m in model.modules())


def test_regularizers_both_kinds() -> None:
    class Clip:
        def __init__(self) -> None:
            self.steps = 0

        def after_step(self, model: nn.Module) -> None:
            self.steps += 1
            with torch.no_grad():
                for p in model.parameters():
                    p.clamp_(-0.05, 0.05)

    clip = Clip()
    model = _model()
    big = lambda m: 1e3 * sum(p.square().sum() for p in m.parameters())  # noqa: E731
    history = fit(
        model, _small_data(64), epochs=2, batch_size=32, regularizers=[clip, big], progress=False
    )
    assert clip.steps == 4
    assert all(p.abs().max() <= 0.05 for p in model.parameters())
    assert history.loss[0] > 1.0  # the penalty term is part of the recorded loss


def test_resume_equals_uninterrupted(tmp_path) -> None:
    data = _small_data(96)
    kwargs = {"batch_size": 32, "progress": False, "adversary": PGD(0.1, alpha=0.05, steps=2)}
    reference = _model()
    expected = fit(reference, data, epochs=4, **kwargs)

    first = _model()
    fit(first, data, epochs=2, checkpoint_dir=tmp_path, **kwargs)
    kwargs["adversary"] = PGD(0.1, alpha=0.05, steps=2)  # a fresh adversary too
    resumed = _model(seed=123)  # different initial weights: all must come from the checkpoint
    history = fit(resumed, data, epochs=4, checkpoint_dir=tmp_path, **kwargs)

    assert history == expected
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"epoch-000{i}.pt" for i in (1, 2, 3, 4)]


def test_checkpoint_loads_with_weights_only(tmp_path) -> None:
    model = _model()
    fit(model, _small_data(32), epochs=2, batch_size=32, checkpoint_dir=tmp_path, progress=False)
    state = torch.load(tmp_path / "epoch-0002.pt", weights_only=True)
    assert state["epoch"] == 2
    assert len(state["history"]["loss"]) == 2
    assert isinstance(state["shuffle_rng"], torch.ByteTensor)
    assert isinstance(state["model_rng"], torch.ByteTensor)
    for key, value in model.state_dict().items():
        assert torch.equal(state["model"][key], value), key
    # a finished run called again loads and returns without training
    again = _model(seed=7)
    history = fit(
        again, _small_data(32), epochs=2, batch_size=32, checkpoint_dir=tmp_path, progress=False
    )
    assert len(history) == 2
    assert torch.equal(again.net[0].weight, model.net[0].weight)


def test_checkpoint_seed_mismatch(tmp_path) -> None:
    fit(_model(), _small_data(32), epochs=1, batch_size=32, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="seed"):
        fit(
            _model(),
            _small_data(32),
            epochs=2,
            batch_size=32,
            checkpoint_dir=tmp_path,
            seed=1,
            progress=False,
        )


def test_atomic_write_leaves_no_temporary_files(tmp_path, monkeypatch) -> None:
    fit(_model(), _small_data(32), epochs=2, batch_size=32, checkpoint_dir=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0001.pt", "epoch-0002.pt"]

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        fit(
            _model(),
            _small_data(32),
            epochs=3,
            batch_size=32,
            checkpoint_dir=tmp_path,
            progress=False,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0001.pt", "epoch-0002.pt"]


def test_progress_bar_on_stderr(capsys) -> None:
    fit(_model(), _small_data(32), epochs=1, batch_size=16, progress=True)
    captured = capsys.readouterr()
    assert "fit" in captured.err and captured.out == ""


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epochs": 0}, ValueError, "epochs"),
        ({"epochs": 1.5}, ValueError, "epochs"),
        ({"epochs": 1, "batch_size": 0}, ValueError, "batch_size"),
        ({"epochs": 1, "seed": "a"}, TypeError, "seed"),
        ({"epochs": 1, "adversary": 0.1}, TypeError, "adversary"),
        ({"epochs": 1, "regularizers": [3]}, TypeError, "regularizers"),
        ({"epochs": 1, "callbacks": [3]}, TypeError, "callbacks"),
        (
            {"epochs": 1, "val_data": (torch.rand(4, 1, 8, 8), torch.zeros(3))},
            ValueError,
            "val_data",
        ),
    ],
)
def test_fit_errors(kwargs, error, match: str) -> None:
    with pytest.raises(error, match=match):
        fit(_model(), _small_data(8), progress=False, **kwargs)


def test_fit_rejects_bad_train_data() -> None:
    with pytest.raises(ValueError, match="train_data"):
        fit(_model(), 5, epochs=1, progress=False)


@pytest.mark.parametrize(
    ("make", "calls"),
    [
        (lambda: FGSM(0.1), 2),  # the attack step's forward on x gives the clean logits
        (lambda: PGD(0.1, alpha=0.05, steps=2), 4),  # random start: one more clean pass
        (lambda: TRADES(0.1, steps=2), 5),  # no_grad clean, 2 steps, clean and adversarial
        (lambda: RFGSM(0.1, alpha=0.05), 4),
    ],
)
def test_training_accuracy_reuses_clean_logits(make, calls: int) -> None:
    model = _model()
    x, y = _small_data(32)
    counted = []
    handle = model.register_forward_hook(lambda m, i, o: counted.append(o.detach()))
    try:
        history = fit(model, (x, y), epochs=1, batch_size=32, adversary=make(), progress=False)
    finally:
        handle.remove()
    assert len(counted) == calls
    loss, logits = make().loss_and_logits(_model(), x, y)
    assert loss.dim() == 0 and loss.requires_grad
    if isinstance(make(), FGSM):
        with torch.no_grad():
            torch.testing.assert_close(logits, _model().eval()(x))
    assert logits is None or logits.shape == (32, 10)
    assert 0.0 <= history.train_accuracy[0] <= 1.0
