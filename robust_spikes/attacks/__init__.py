"""Attack wrappers for honest evaluation of spiking networks, compatible with torchattacks.

Each class is a ``torchattacks.Attack`` (so ``torchattacks.MultiAttack`` composes them),
seeds every call from its ``seed`` while leaving the caller's random state as it was,
and restores the model's train/eval modes exactly:

* :class:`EOT` runs any gradient attack on :class:`Expectation`, a stochastic model
  averaged over several draws (Athalye et al., ICML 2018);
* :class:`GradientModeAttack` runs an attack with the backward pass in a chosen
  gradient mode and surrogate (``model.gradient(...)``);
* :class:`Transfer` crafts on a source model and returns the examples for the
  evaluated one;
* :class:`AdaptiveEnsemble` takes the per-sample worst case over gradient modes x base
  attacks (FGSM, PGD-20, APGD-CE/DLR, Square), cheap attacks first, with EOT for
  stochastic models.

This subpackage imports torchattacks; ``import robust_spikes`` does not import it until
``robust_spikes.attacks`` is first used.
"""

from robust_spikes.attacks._ensemble import AdaptiveEnsemble, Member, default_members
from robust_spikes.attacks._eot import EOT, Expectation
from robust_spikes.attacks._wrappers import GradientModeAttack, Transfer

__all__ = [
    "EOT",
    "AdaptiveEnsemble",
    "Expectation",
    "GradientModeAttack",
    "Member",
    "Transfer",
    "default_members",
]
