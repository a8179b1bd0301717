"""Datasets for examples, tests and benchmarks.

Two entry points:

* :func:`digits` — scikit-learn's bundled 8x8 handwritten digits (1797 images, no network
  needed), split into a deterministic, stratified train/test pair. It is small enough to train
  and attack a spiking network on a CPU in seconds, which makes it the dataset of choice for
  doctests, notebooks and CI.
* :func:`load` — the usual vision benchmarks (MNIST, Fashion-MNIST, SVHN, CIFAR-10/100) through
  ``torchvision``, plus ``"digits"`` under the same calling convention.

Neither scikit-learn nor torchvision is imported when this module is imported; each is imported
on first use, and a missing (or broken) installation is reported as an :class:`ImportError` that
says which extra to install.
"""

from __future__ import annotations

import functools
import numbers
import os
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["digits", "load"]

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


# Canonical name -> (torchvision.datasets class name, takes split="train"/"test" instead of train=)
_TORCHVISION_DATASETS: dict[str, tuple[str, bool]] = {
    "mnist": ("MNIST", False),
    "fashion-mnist": ("FashionMNIST", False),
    "svhn": ("SVHN", True),
    "cifar10": ("CIFAR10", False),
    "cifar100": ("CIFAR100", False),
}
_ALIASES: dict[str, str] = {"fashionmnist": "fashion-mnist"}
_VALID_NAMES = ("digits", *_TORCHVISION_DATASETS)


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
    ``torchvision.datasets`` (imported only here); ``"digits"`` is :func:`digits` and needs
    neither torchvision nor ``root``. Names are case-insensitive, and ``"fashion_mnist"`` and
    ``"fashionmnist"`` are accepted for ``"fashion-mnist"``.

    Args:
        name: Dataset name, see above.
        root: Directory the torchvision dataset is stored in (or downloaded to). Ignored for
            ``"digits"``.
        train: Training split if true, test split otherwise (for SVHN, ``split="train"`` or
            ``split="test"``).
        download: Let torchvision download the files if they are not in ``root``. Ignored for
            ``"digits"``.
        transform: Applied to each image. Defaults to ``torchvision.transforms.ToTensor()`` for
            the torchvision datasets and to no transform for ``"digits"``, whose images are
            already tensors.

    Returns:
        A :class:`torch.utils.data.Dataset` of ``(image, label)`` pairs.

    Shape:
        - image (default transform): ``[C, H, W]``, ``float32`` in ``[0, 1]``: ``[1, 28, 28]``
          for MNIST and Fashion-MNIST, ``[3, 32, 32]`` for SVHN and CIFAR, ``[1, 8, 8]`` for
          digits.
        - label: a Python ``int``.

    Raises:
        ValueError: If ``name`` is not one of the names above.
        TypeError: If ``name`` is not a string.
        ImportError: If torchvision (or, for ``"digits"``, scikit-learn) cannot be imported.
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
        ValueError: unknown dataset name 'imagenet'; valid names are: digits, mnist, ...
    """
    key = _canonical_name(name)
    if key == "digits":
        dataset = digits("train" if train else "test")
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


# Event-camera data (robust_spikes/_events.py): the embedded neuromorphic digits and lazy
# loaders of N-MNIST, DVS128 Gesture and CIFAR10-DVS.
from robust_spikes._events import EventFrames, event_dataset, event_digits  # noqa: E402

__all__ += ["EventFrames", "event_dataset", "event_digits"]
