"""A map-style dataset of ``(image, label)`` pairs held as two tensors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["TensorPairs"]


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
