"""A map-style dataset of ``(image, label)`` pairs held as two tensors."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["TensorPairs", "check_split"]


class TensorPairs(Dataset[tuple[Any, int]]):
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


def check_split(split: Any, seed: Any, test_fraction: Any) -> tuple[int, float]:
    """``(seed, test_fraction)`` of a deterministic train/test split, checked."""
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
    return int(seed), float(test_fraction)
