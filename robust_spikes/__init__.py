"""robust-spikes: honest adversarial robustness for snnTorch and SpikingJelly networks.

Importing this package imports torch only; host frameworks, attack libraries and
plotting are imported when used.
"""

from importlib.metadata import PackageNotFoundError, version

from robust_spikes import data, encoders, evaluation, gradients, neurons
from robust_spikes.classifier import SpikingClassifier
from robust_spikes.evaluation import certify
from robust_spikes.neurons import adapt

try:
    __version__ = version("robust-spikes")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "SpikingClassifier",
    "__version__",
    "adapt",
    "certify",
    "data",
    "encoders",
    "evaluation",
    "gradients",
    "neurons",
]
