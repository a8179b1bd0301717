"""robust-spikes: honest adversarial robustness for snnTorch and SpikingJelly networks.

Importing this package imports torch only; host frameworks, attack libraries and
plotting are imported when used: ``robust_spikes.attacks`` (which imports torchattacks)
loads on first access of ``rs.attacks`` or on ``import robust_spikes.attacks``.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from robust_spikes import conversion, data, encoders, evaluation, gradients, neurons, training
from robust_spikes.classifier import SpikingClassifier
from robust_spikes.evaluation import certify, evaluate
from robust_spikes.neurons import adapt

try:
    __version__ = version("robust-spikes")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "SpikingClassifier",
    "__version__",
    "adapt",
    "attacks",
    "certify",
    "conversion",
    "data",
    "encoders",
    "evaluate",
    "evaluation",
    "gradients",
    "neurons",
    "training",
]


_LAZY = ("attacks",)  # subpackages that import optional dependencies (torchattacks)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
