"""scikit-learn's bundled 8x8 handwritten digits, split deterministically and stratified."""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

from robust_spikes.data._pairs import TensorPairs, check_split

__all__ = ["DIGITS_CLASSES", "digits"]

DIGITS_CLASSES = tuple(str(i) for i in range(10))


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


def digits(split: str = "train", *, seed: int = 0, test_fraction: float = 0.25) -> TensorPairs:
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
    seed, test_fraction = check_split(split, seed, test_fraction)

    x_train, y_train, x_test, y_test = _digits_split(seed, test_fraction)
    images, labels = (x_train, y_train) if split == "train" else (x_test, y_test)
    return TensorPairs(images.clone(), labels.clone(), list(DIGITS_CLASSES))
