"""Encoders: shapes, Poisson statistics, exact straight-through gradients, generators,
randomized smoothing, latency coding and its surrogate, errors, and the gradient masking
of snnTorch's ``spikegen.rate`` that the Poisson encoder fixes."""

from __future__ import annotations

import math

import pytest
import torch
import torchattacks
from helpers import NUM_STEPS, digits_tensors, snntorch_conv, trained
from snntorch import spikegen
from torch import nn

from robust_spikes import SpikingClassifier
from robust_spikes.encoders import (
    Direct,
    Encoder,
    Latency,
    Poisson,
    RandomizedSmoothing,
    direct,
    latency,
    poisson,
    randomized_smoothing,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


ENCODERS = {
    "direct": Direct,
    "poisson": Poisson,
    "poisson-mean-signed": lambda: Poisson(gain=2.0, grad="mean", signed=True),
    "smoothing-direct": lambda: RandomizedSmoothing(0.1),
    "smoothing-poisson": lambda: RandomizedSmoothing(0.1, then="poisson"),
    "smoothing-zero": lambda: RandomizedSmoothing(0.0),
    "latency": Latency,
}


# ------------------------------------------------------------------------ shapes, dtypes
@pytest.mark.parametrize("name", ENCODERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(5, 1, 8, 8), (3, 64)])
def test_shape_dtype_and_gradient_path(name: str, dtype: torch.dtype, shape: tuple) -> None:
    enc = ENCODERS[name]()
    assert isinstance(enc, Encoder)
    x = torch.rand(shape, generator=gen(1), dtype=dtype).requires_grad_()
    seq = enc(x, 6, generator=gen())
    assert seq.shape == (6, *shape) and seq.dtype == dtype
    (grad,) = torch.autograd.grad(seq.sum(), x)
    assert torch.isfinite(grad).all()
    if name != "latency":  # latency's gradient of the plain sum is zero (one spike each)
        assert (grad != 0).all()


def test_direct_is_the_input_at_every_step() -> None:
    x = torch.rand(4, 1, 8, 8, generator=gen())
    seq = direct(x, 3)
    assert all(torch.equal(s, x) for s in seq)
    assert seq.data_ptr() == x.data_ptr()  # a view, no copy
    assert torch.equal(Direct()(x, 3), seq)
    assert Direct.is_static and not Direct.is_stochastic


# ---------------------------------------------------------------------- Poisson statistics
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_poisson_rates_match_the_clamped_intensity(gain: float) -> None:
    grid = torch.linspace(0, 1, 11, dtype=torch.float64)
    x = grid.repeat(400, 1)  # 400 pixels per intensity
    s = poisson(x, 50, generator=gen(3), gain=gain)
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    n = s.shape[0] * s.shape[1]  # 20000 draws per intensity
    rate = s.mean(dim=(0, 1))
    p = (grid * gain).clamp(0, 1)
    bound = 4 * torch.sqrt(p * (1 - p) / n)
    assert ((rate - p).abs() <= bound).all(), (rate, p)
    saturated = (p == 0) | (p == 1)
    assert torch.equal(rate[saturated], p[saturated])  # exact at 0 and 1


def test_signed_poisson_rates_and_signs() -> None:
    grid = torch.tensor([-1.0, -0.6, -0.2, 0.0, 0.3, 0.7, 1.0], dtype=torch.float64)
    s = poisson(grid.repeat(400, 1), 50, generator=gen(4), signed=True)
    assert set(s.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert (s * grid.sign() >= 0).all()  # spikes carry the sign of the input
    assert (s[..., grid == 0] == 0).all()
    p = grid.abs()
    rate = s.abs().mean(dim=(0, 1))
    assert ((rate - p).abs() <= 4 * torch.sqrt(p * (1 - p) / 20000)).all(), (rate, p)


# -------------------------------------------------------------- straight-through gradients
@pytest.mark.parametrize("grad", ["sum", "mean"])
@pytest.mark.parametrize("gain", [1.0, 2.5])
@pytest.mark.parametrize("signed", [False, True])
def test_poisson_gradient_is_the_exact_straight_through(
    grad: str, gain: float, signed: bool
) -> None:
    num_steps = 7
    x = torch.rand(3, 1, 4, 4, generator=gen(5), dtype=torch.float64)
    x[0, 0, 0] = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)  # saturated pixels
    if signed:
        x = 2 * x - 1
    x.requires_grad_()
    w = torch.randn(num_steps, *x.shape, generator=gen(6), dtype=torch.float64)
    s = poisson(x, num_steps, generator=gen(7), gain=gain, grad=grad, signed=signed)  # type: ignore[arg-type]
    (g,) = torch.autograd.grad((w * s).sum(), x)
    expected = gain * (w.sum(0) if grad == "sum" else w.mean(0))
    torch.testing.assert_close(g, expected, rtol=1e-12, atol=1e-12)
    assert (g[0, 0, 0] != 0).all()  # the clamp does not stop the gradient at 0 and 1


def test_poisson_forward_is_exactly_binary_whatever_the_gradient_path() -> None:
    x = torch.rand(8, 64, generator=gen(8), dtype=torch.float64)
    a = poisson(x.clone().requires_grad_(), 5, generator=gen(9), gain=1.7)
    b = poisson(x, 5, generator=gen(9), gain=1.7)
    assert torch.equal(a.detach(), b)
    assert set(a.detach().unique().tolist()) == {0.0, 1.0}


# --------------------------------------------------------------------------- generators
@pytest.mark.parametrize(
    "encode",
    [
        lambda x, g: poisson(x, 4, generator=g),
        lambda x, g: randomized_smoothing(x, 4, sigma=0.2, generator=g),
        lambda x, g: randomized_smoothing(x, 4, sigma=0.2, generator=g, then="poisson"),
    ],
    ids=["poisson", "smoothing-direct", "smoothing-poisson"],
)
def test_randomness_comes_from_the_generator_only(encode) -> None:
    x = torch.rand(6, 1, 8, 8, generator=gen(10))
    torch.manual_seed(1)
    first = encode(x, gen(0))
    torch.manual_seed(2)  # the global RNG is irrelevant ...
    global_state = torch.get_rng_state()
    assert torch.equal(encode(x, gen(0)), first)
    assert torch.equal(torch.get_rng_state(), global_state)  # ... and left untouched
    assert not torch.equal(encode(x, gen(1)), first)  # another seed, other draws
    g = gen(0)
    assert not torch.equal(encode(x, g), encode(x, g))  # the generator advances


def test_classifier_results_survive_global_reseeding() -> None:
    """torchattacks' APGD/Square/FAB reseed the global RNG: that must not fix the noise."""
    x = torch.rand(4, 1, 8, 8, generator=gen(11))
    torch.manual_seed(0)
    net = snntorch_conv()
    outs = []
    for seed in (0, 0, 1):
        model = SpikingClassifier(net, NUM_STEPS, encoder=Poisson(), generator=gen(seed))
        torch.manual_seed(123)
        outs.append(model(x))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


# ---------------------------------------------------------------------- smoothing coding
def test_smoothing_with_sigma_zero_is_the_plain_encoder_bitwise() -> None:
    x = torch.rand(5, 1, 8, 8, generator=gen(12)).requires_grad_()
    assert torch.equal(randomized_smoothing(x, 4, sigma=0.0, generator=None), direct(x, 4))
    assert torch.equal(RandomizedSmoothing(0.0)(x, 4, generator=gen()), Direct()(x, 4))
    g1, g2 = gen(3), gen(3)
    a = RandomizedSmoothing(0.0, then="poisson", gain=1.5, grad="mean")(x, 4, generator=g1)
    b = Poisson(gain=1.5, grad="mean")(x, 4, generator=g2)
    assert torch.equal(a, b)
    assert torch.equal(g1.get_state(), g2.get_state())  # the same number of draws
    w = torch.randn(a.shape, generator=gen(13))
    ga, gb = (torch.autograd.grad((w * s).sum(), x)[0] for s in (a, b))
    assert torch.equal(ga, gb)


def test_smoothing_noise_statistics_and_one_draw_shared_by_all_steps() -> None:
    sigma, num_steps = 0.3, 5
    x = torch.full((200, 1, 10, 10), 0.4, dtype=torch.float64, requires_grad=True)
    seq = randomized_smoothing(x, num_steps, sigma=sigma, generator=gen(14))
    assert all(torch.equal(s, seq[0]) for s in seq)  # one draw per call, shared
    noise = (seq[0] - x).detach().flatten()
    n = noise.numel()
    assert abs(noise.mean().item()) <= 4 * sigma / math.sqrt(n)
    assert abs(noise.var().item() - sigma**2) <= 4 * sigma**2 * math.sqrt(2 / (n - 1))
    assert (seq[0] < 0).any() and (seq[0] > 1).any()  # not clamped for direct coding
    w = torch.randn(seq.shape, generator=gen(15), dtype=torch.float64)
    (g,) = torch.autograd.grad((w * seq).sum(), x)
    torch.testing.assert_close(g, w.sum(0), rtol=1e-12, atol=1e-12)  # exact: identity


def test_smoothing_then_poisson_codes_the_noisy_image() -> None:
    """Reference: draw the noise first, then Poisson-code x + noise, same generator."""
    sigma = 0.2
    x = torch.rand(4, 1, 8, 8, generator=gen(16), dtype=torch.float64)
    got = randomized_smoothing(x, 6, sigma=sigma, generator=gen(17), then="poisson", gain=1.2)
    g = gen(17)
    noisy = x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)
    assert torch.equal(got, poisson(noisy, 6, generator=g, gain=1.2))


def test_smoothing_flags_follow_sigma_and_then() -> None:
    enc = RandomizedSmoothing(0.0)
    assert not enc.is_stochastic and enc.is_static
    enc.sigma = 0.25
    assert enc.is_stochastic and not enc.is_static
    enc.sigma = 0.0
    enc.then = "poisson"
    assert enc.is_stochastic and not enc.is_static
    with pytest.raises(ValueError, match=r"sigma must be .* got -1"):
        enc.sigma = -1


@pytest.mark.parametrize(
    ("encoder", "stochastic"),
    [
        (Direct(), False),
        (Poisson(), True),
        (RandomizedSmoothing(0.1), True),
        (RandomizedSmoothing(0.0), False),
        (RandomizedSmoothing(0.0, then="poisson"), True),
        (Latency(), False),
    ],
)
def test_classifier_is_stochastic_follows_the_encoder(encoder: Encoder, stochastic: bool) -> None:
    model = SpikingClassifier(snntorch_conv(), NUM_STEPS, encoder=encoder)
    assert model.is_stochastic is stochastic
    assert model(torch.rand(2, 1, 8, 8, generator=gen())).shape == (2, 10)


# ------------------------------------------------------------------------------ latency
def test_latency_spike_times_match_the_formula() -> None:
    x = torch.tensor([[1.0, 0.8, 0.5, 0.3, 0.0, 0.05, -0.2, 1.3]])
    s = latency(x, 5)  # tau = (1 - clamp(x)) * 4 = 0, .8, 2, 2.8, 4, 3.8, -, 0
    expected = torch.zeros(5, 8)
    expected[[0, 1, 2, 3, 4, 4, 0], [0, 1, 2, 3, 4, 5, 7]] = 1  # -0.2 < threshold 0: silent
    assert torch.equal(s[:, 0], expected)
    silent = latency(x, 5, threshold=0.1)  # inputs below the threshold never spike
    assert silent.sum(0)[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 1]
    assert torch.equal(silent[:, 0, :4], s[:, 0, :4])


def test_latency_spikes_at_most_once() -> None:
    x = torch.rand(50, 1, 8, 8, generator=gen(18))
    for num_steps in (1, 2, 7):
        s = Latency(threshold=0.3)(x, num_steps)
        assert set(s.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(s.sum(0), (x >= 0.3).float())


def test_latency_surrogate_gradient_is_the_documented_one() -> None:
    """d s_t/dx = -(T-1) k(t - tau), k = sign on (0, 1), sign/2 at |d| = 1, else 0."""
    num_steps = 5
    x = torch.tensor([[1.0, 0.8, 0.5, 0.0, 0.05]], dtype=torch.float64, requires_grad=True)
    w = torch.randn(num_steps, *x.shape, generator=gen(19), dtype=torch.float64)
    (g,) = torch.autograd.grad((w * latency(x, num_steps)).sum(), x)
    w = w[:, 0]
    # tau = 0 (x = 1): kink at integers, symmetric derivative: step 1 gets -1/2 per tau.
    # tau = 0.8: steps 0 (d = -0.8) and 1 (d = 0.2).  tau = 2: steps 1 and 3, halves.
    # tau = 4 (x = 0): step 3 gets +1/2 per unit of x.  tau = 3.8: steps 3 and 4.
    dtau = torch.stack(
        [
            0.5 * w[1, 0],
            -w[0, 1] + w[1, 1],
            -0.5 * w[1, 2] + 0.5 * w[3, 2],
            -0.5 * w[3, 3],
            -w[3, 4] + w[4, 4],
        ]
    )
    expected = -(num_steps - 1) * dtau
    torch.testing.assert_close(g[0], expected, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(g).all() and (g != 0).all()


def test_latency_gradient_moves_spikes_earlier_for_brighter_inputs() -> None:
    x = torch.rand(20, 16, generator=gen(20), dtype=torch.float64).requires_grad_()
    s = latency(x, 8)
    early = torch.arange(8, dtype=torch.float64).view(8, 1, 1)
    (g,) = torch.autograd.grad((s * early).sum(), x)  # loss = spike time
    assert (g < 0).all()  # brighter -> earlier
    assert torch.equal(latency(x, 1), torch.ones(1, 20, 16, dtype=torch.float64))
    (g1,) = torch.autograd.grad(latency(x, 1).sum(), x)
    assert (g1 == 0).all()  # one step carries no timing


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Poisson(grad="max"), r"grad must be one of .* got 'max'"),
        (lambda: Poisson(gain=0.0), r"gain must be .* > 0, got 0.0"),
        (lambda: Poisson(gain=-2), r"gain must be .* got -2"),
        (lambda: Poisson(gain=float("nan")), r"gain must be .* got nan"),
        (lambda: Poisson(gain=True), r"gain must be .* got True"),
        (lambda: RandomizedSmoothing(-0.1), r"sigma must be .* >= 0, got -0.1"),
        (lambda: RandomizedSmoothing(float("inf")), r"sigma must be .* got inf"),
        (lambda: RandomizedSmoothing("0.1"), r"sigma must be .* got '0.1'"),  # type: ignore[arg-type]
        (lambda: RandomizedSmoothing(0.1, then="latency"), r"then must be one of .* 'latency'"),
        (lambda: RandomizedSmoothing(0.1, gain=0), r"gain must be .* got 0"),
        (lambda: RandomizedSmoothing(0.1, grad="median"), r"grad must be .* 'median'"),
        (lambda: Latency(threshold=float("nan")), r"threshold must be .* got nan"),
    ],
)
def test_bad_settings_name_the_argument(make, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "call",
    [
        lambda x: poisson(x, 0, generator=gen()),
        lambda x: Poisson()(x, 2.0, generator=gen()),
        lambda x: randomized_smoothing(x, -1, sigma=0.1, generator=gen()),
        lambda x: latency(x, True),
    ],
)
def test_bad_num_steps_is_named(call) -> None:
    with pytest.raises(ValueError, match=r"num_steps must be a positive int, got"):
        call(torch.rand(2, 3))


def test_bad_function_arguments_are_named() -> None:
    x = torch.rand(2, 3)
    with pytest.raises(ValueError, match=r"grad must be one of .* got 'none'"):
        poisson(x, 2, generator=gen(), grad="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"sigma must be .* got nan"):
        randomized_smoothing(x, 2, sigma=float("nan"), generator=gen())
    with pytest.raises(ValueError, match=r"then must be one of"):
        randomized_smoothing(x, 2, sigma=0.0, generator=None, then="rate")  # type: ignore[arg-type]


def test_missing_generator_is_a_clear_error() -> None:
    x = torch.rand(2, 3)
    with pytest.raises(TypeError, match=r"Poisson draws its randomness from a torch.Generator"):
        Poisson()(x, 2)
    with pytest.raises(TypeError, match=r"generator=int"):
        poisson(x, 2, generator=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"randomized_smoothing draws"):
        RandomizedSmoothing(0.1)(x, 2)
    with pytest.raises(TypeError, match=r"randomized_smoothing draws"):
        RandomizedSmoothing(0.0, then="poisson")(x, 2)


def test_module_repr_and_state() -> None:
    assert "grad='mean'" in repr(Poisson(grad="mean"))
    assert "sigma=0.5, then='poisson'" in repr(RandomizedSmoothing(0.5, then="poisson"))
    assert "threshold=0.2" in repr(Latency(0.2))
    for make in ENCODERS.values():
        assert make().state_dict() == {}  # settings, no tensors: nothing to serialise


# ------------------------------------------------------- attacks: masking vs straight-through
class RateInside(nn.Module):
    """A user's model that rate-codes inside forward with snnTorch's ``spikegen.rate``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(spikegen.rate(x, num_steps=1)[0])


def vote_accuracy(model: SpikingClassifier, x: torch.Tensor, y: torch.Tensor, k: int) -> float:
    """Accuracy of the mean logits over ``k`` forward samples."""
    with torch.no_grad():
        logits = sum(model(x) for _ in range(k))
    return (logits.argmax(1) == y).float().mean().item()  # type: ignore[union-attr]


def test_fgsm_is_real_with_poisson_and_silently_void_with_spikegen_rate() -> None:
    _, _, x, y = digits_tensors()
    x, y = x[:128], y[:128]
    model = SpikingClassifier(
        trained("snntorch_conv"), NUM_STEPS, encoder=Poisson(), generator=gen(21)
    )
    assert model.is_stochastic
    adv = torchattacks.FGSM(model, eps=0.1)(x, y)
    assert (adv - x).abs().max() > 0.099
    clean_acc, adv_acc = vote_accuracy(model, x, y, 8), vote_accuracy(model, adv, y, 8)
    # measured (frozen weights, trained with direct input): clean 0.891, FGSM 0.578
    assert clean_acc >= 0.7
    assert adv_acc <= clean_acc - 0.15, (clean_acc, adv_acc)

    # The same trained net, rate-coded by snnTorch inside the model: the Bernoulli draw
    # has an exactly zero gradient, so FGSM returns the clean images unchanged.
    masked = SpikingClassifier(RateInside(trained("snntorch_conv")), NUM_STEPS)
    masked_adv = torchattacks.FGSM(masked, eps=0.1)(x, y)
    assert (masked_adv - x).abs().max() == 0


def test_fgsm_moves_latency_coded_inputs() -> None:
    _, _, x, y = digits_tensors()
    model = SpikingClassifier(trained("snntorch_conv"), NUM_STEPS, encoder=Latency())
    adv = torchattacks.FGSM(model, eps=0.1)(x[:32], y[:32])
    assert (adv - x[:32]).abs().max() > 0.099  # the surrogate gives a gradient
