"""The one data contract behind every entry point that takes samples.

``evaluate``, ``certify``, ``training.fit``, ``training.hire``, ``conversion.robust_finetune``,
``conversion.convert`` (calibration data), ``neurons.record_signature`` and the command line
all read their data here. Accepted, in every one of them:

* an ``(images, labels)`` pair of tensors (a tuple or a list of two), images ``[N, ...]``
  and labels ``[N]``;
* a map-style ``Dataset`` of ``(image, label)`` pairs (``robust_spikes.data.digits()``,
  torchvision's datasets, a list of pairs);
* a ``DataLoader``, or any iterable of ``(images, labels)`` batches (a list of batch
  tuples, a generator).

Entry points that only need images (calibration, the TA-LIF signature) also take a tensor of
images alone and iterables of image batches; labels are then ignored. Anything else raises
one :class:`ValueError` naming the argument, what arrived and the accepted forms.

An item of a dataset or an iterable is one sample when its label is a Python int or a
one-element tensor without a batch dimension (``int``, ``tensor(3)``), and a batch when its
labels are a 1-D tensor (``tensor([3, 1])``): the image tensor then needs as many rows.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["ACCEPTED", "ACCEPTED_IMAGES", "batches", "image_batches", "tensors"]

ACCEPTED = (
    "an (images, labels) pair of tensors, a Dataset of (image, label) pairs, a DataLoader, "
    "or an iterable of (images, labels) batches"
)
ACCEPTED_IMAGES = (
    "a tensor of images [N, ...], an (images, labels) pair of tensors, a Dataset of (image, "
    "label) pairs, a DataLoader, or an iterable of image batches or (images, labels) batches"
)


def _what(obj: Any) -> str:
    if isinstance(obj, Tensor):
        return f"a tensor of shape {tuple(obj.shape)} and dtype {obj.dtype}"
    if isinstance(obj, tuple | list):
        kinds = ", ".join(type(o).__name__ for o in obj[:3]) + (", ..." if len(obj) > 3 else "")
        return f"a {type(obj).__name__} of {len(obj)} items ({kinds})"
    return f"{type(obj).__name__} {obj!r}"[:120]


def _refuse(arg: str, got: str, images: bool) -> ValueError:
    accepted = ACCEPTED_IMAGES if images else ACCEPTED
    return ValueError(f"{arg} must be {accepted}; got {got}")


def _is_pair(data: Any, images: bool) -> bool:
    """An ``(images, labels)`` pair of tensors (and not two batches of images)."""
    if not (isinstance(data, tuple | list) and len(data) == 2):
        return False
    x, y = data
    if not isinstance(x, Tensor) or isinstance(y, numbers.Integral):
        return False
    if not images:
        return isinstance(y, Tensor)
    # images-only entry points also take [batch, batch]: a pair has 1-D labels, one per image
    return isinstance(y, Tensor) and y.dim() == 1 and x.dim() >= 1 and len(y) == len(x)


def _is_map_dataset(data: Any) -> bool:
    from torch.utils.data import Dataset, IterableDataset

    if isinstance(data, tuple | list | Tensor | str | bytes | dict):
        return False
    if isinstance(data, IterableDataset):
        return False
    indexed = hasattr(data, "__getitem__") and hasattr(data, "__len__")
    return (isinstance(data, Dataset) and indexed) or (indexed and not hasattr(data, "__iter__"))


def _label(value: Any) -> int | None:
    """The int of a sample's label (``3``, ``tensor(3)``, ``numpy.int64(3)``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, Tensor) and value.dim() == 0 and not value.is_floating_point():
        return int(value)
    item = getattr(value, "item", None)  # a 0-d numpy integer array
    if getattr(value, "shape", None) == () and callable(item):
        out = item()
        if isinstance(out, numbers.Integral) and not isinstance(out, bool):
            return int(out)
    return None


def _item(
    item: Any, arg: str, where: str, images: bool, sample: bool
) -> tuple[Tensor, Tensor | None]:
    """``(images [B, ...], labels [B] or None)`` of one item (a sample gets B = 1)."""
    if isinstance(item, Tensor):
        if not images:
            raise _refuse(arg, f"{where}: {_what(item)}, not an (images, labels) pair", images)
        return (item.unsqueeze(0) if sample else item), None
    if isinstance(item, tuple | list) and (len(item) == 2 or (images and len(item) > 2)):
        x, y = item[0], item[1]
        if not isinstance(x, Tensor):
            try:
                x = torch.as_tensor(x)
            except (TypeError, ValueError, RuntimeError):
                got = f"{where} holds images of type {type(x).__name__}"
                raise _refuse(arg, got, images) from None
        label = _label(y)
        if label is not None:  # one sample
            return x.unsqueeze(0), torch.tensor([label])
        if isinstance(y, Tensor) and y.dim() == 1 and not sample:  # a batch
            if x.dim() < 1 or len(x) != len(y):
                raise ValueError(
                    f"{arg}: {where} holds {len(x) if x.dim() else 'no'} images and {len(y)} "
                    "labels; a batch needs one label per image"
                )
            return x, y
        raise _refuse(
            arg,
            f"{where} has labels {_what(y)} (expected an int per image or a 1-D tensor of "
            "labels per batch)",
            images,
        )
    raise _refuse(arg, f"{where}: {_what(item)}", images)


def _check(x: Tensor, y: Tensor | None, arg: str) -> tuple[Tensor, Tensor | None]:
    if x.dim() < 2 or len(x) == 0:
        raise ValueError(
            f"{arg} must hold N >= 1 images [N, ...] (at least [N, F]), got images of shape "
            f"{tuple(x.shape)}"
        )
    if y is None:
        return x, None
    if y.shape != (len(x),):
        raise ValueError(
            f"{arg} must hold one label per image, got images of shape {tuple(x.shape)} and "
            f"labels of shape {tuple(y.shape)}"
        )
    integral = not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool)
    if not integral and (y.dtype == torch.bool or not torch.equal(y, y.real.round())):
        raise ValueError(f"{arg} must hold integer class labels, got labels of dtype {y.dtype}")
    return x, y.long()


def _cat(parts: list[Tensor], arg: str) -> Tensor:
    try:
        return parts[0] if len(parts) == 1 else torch.cat(parts)
    except RuntimeError as err:
        raise ValueError(f"{arg}: images of different shapes cannot be joined ({err})") from None


def _read(
    data: Any,
    arg: str,
    *,
    images: bool,
    indices: Sequence[int] | None = None,
    limit: int | None = None,
) -> tuple[Tensor, Tensor | None]:
    """The selected samples of ``data`` as tensors (labels ``None`` where absent)."""
    if indices is not None:
        indices = list(indices)[:limit] if limit is not None else list(indices)
        limit = None
    y: Tensor | None
    if images and isinstance(data, Tensor):
        x, y = data, None
    elif _is_pair(data, images):
        x, y = data[0], data[1]
        if x.dim() < 1 or y.shape != (len(x),):
            raise ValueError(
                f"{arg} as an (images, labels) pair needs images [N, ...] and labels [N], got "
                f"shapes {tuple(x.shape)} and {tuple(y.shape)}"
            )
    elif _is_map_dataset(data):
        return _check(*_from_dataset(data, arg, images, indices, limit), arg)
    elif isinstance(data, Iterable) and not isinstance(data, str | bytes | dict):
        return _check(*_from_iterable(data, arg, images, indices, limit), arg)
    else:
        raise _refuse(arg, _what(data), images)
    return _check(*_select(x, y, arg, indices, limit), arg)


def _select(
    x: Tensor, y: Tensor | None, arg: str, indices: list[int] | None, limit: int | None
) -> tuple[Tensor, Tensor | None]:
    if indices is not None:
        bad = [i for i in indices if not 0 <= i < len(x)]
        if bad:
            raise ValueError(
                f"indices must hold ints in [0, {len(x)}) (the samples of {arg}), got {bad[0]!r}"
            )
        pick = torch.as_tensor(indices, dtype=torch.long)
        return x[pick], None if y is None else y[pick]
    if limit is not None:
        return x[:limit], None if y is None else y[:limit]
    return x, y


def _from_dataset(
    data: Any, arg: str, images: bool, indices: list[int] | None, limit: int | None
) -> tuple[Tensor, Tensor | None]:
    n = len(data)
    chosen = range(min(n, limit) if limit is not None else n) if indices is None else indices
    xs: list[Tensor] = []
    ys: list[Tensor | None] = []
    for i in chosen:
        if not 0 <= i < n:
            raise ValueError(
                f"indices must hold ints in [0, {n}) (the samples of {arg}), got {i!r}"
            )
        xi, yi = _item(data[i], arg, f"item {i} of the dataset", images, sample=True)
        xs.append(xi)
        ys.append(yi)
    if not xs:
        raise ValueError(f"{arg} must hold at least one sample, got an empty dataset")
    return _cat(xs, arg), _labels(ys)


def _labels(ys: list[Tensor | None]) -> Tensor | None:
    if any(t is None for t in ys):
        return None
    return torch.cat([t for t in ys if t is not None])


def _from_iterable(
    data: Iterable[Any],
    arg: str,
    images: bool,
    indices: list[int] | None,
    limit: int | None,
) -> tuple[Tensor, Tensor | None]:
    enough = limit if indices is None else (max(indices) + 1 if indices else 0)
    xs: list[Tensor] = []
    ys: list[Tensor | None] = []
    seen = 0
    for k, item in enumerate(data):
        if enough is not None and seen >= enough:
            break
        xi, yi = _item(item, arg, f"item {k} of the {type(data).__name__}", images, sample=False)
        xs.append(xi)
        ys.append(yi)
        seen += len(xi)
    if not xs:
        raise ValueError(f"{arg} must hold at least one sample, got an empty {type(data).__name__}")
    return _select(_cat(xs, arg), _labels(ys), arg, indices, limit)


def tensors(
    data: Any,
    arg: str = "data",
    *,
    indices: Sequence[int] | None = None,
    limit: int | None = None,
) -> tuple[Tensor, Tensor]:
    """``(images [N, ...], labels [N] int64)`` of ``data`` in any accepted form.

    Args:
        data: see the module docstring.
        arg: the argument's name, for error messages.
        indices: read only these positions (in this order).
        limit: read at most this many samples (the first ones, after ``indices``).

    Raises:
        ValueError: anything but the accepted forms; no samples; images and labels that
            do not match; labels that are not integers; ``indices`` out of range.
    """
    _warn_if_shuffled(data, arg)
    x, y = _read(data, arg, images=False, indices=indices, limit=limit)
    assert y is not None
    return x, y


def _warn_if_shuffled(data: Any, arg: str) -> None:
    """A DataLoader that shuffles hands out another order each time it is read: the samples'
    indices (records, certificates, seeds) and a training run would then depend on the
    global RNG instead of the seed."""
    from torch.utils.data import DataLoader, RandomSampler

    if isinstance(data, DataLoader) and isinstance(data.sampler, RandomSampler):
        warnings.warn(
            f"{arg} is a DataLoader with shuffle=True: its order changes each time it is "
            "read, so sample indices, records and training order depend on the global RNG, "
            "not on seed; robust-spikes shuffles training data itself with its seeded "
            "generator: pass a DataLoader with shuffle=False",
            UserWarning,
            stacklevel=3,
        )


def image_batches(data: Any, arg: str, *, batch_size: int) -> Iterator[Tensor]:
    """Batches of images of ``data`` (labels ignored), for calibration and signatures.

    A tensor, a pair and a Dataset are split into batches of ``batch_size``; the batches of
    a DataLoader or another iterable are kept as they come (samples in it are grouped).

    Raises:
        ValueError: anything but the accepted forms (see :data:`ACCEPTED_IMAGES`).
    """
    if (isinstance(data, Tensor) or _is_pair(data, True) or _is_map_dataset(data)) or not (
        isinstance(data, Iterable) and not isinstance(data, str | bytes | dict)
    ):
        x, _ = _read(data, arg, images=True)
        yield from x.split(batch_size)
        return
    pending: list[Tensor] = []
    for k, item in enumerate(data):
        where = f"item {k} of the {type(data).__name__}"
        xi, _ = _item(item, arg, where, True, sample=False)
        single = isinstance(item, tuple | list) and _label(item[1]) is not None
        if single:  # a sample: group consecutive samples into batches
            pending.append(xi)
            if len(pending) == batch_size:
                yield torch.cat(pending)
                pending = []
            continue
        if pending:
            yield torch.cat(pending)
            pending = []
        _check(xi, None, arg)
        yield xi
    if pending:
        yield torch.cat(pending)


def batches(
    x: Tensor, y: Tensor, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[Tensor, Tensor]]:
    """``(images, labels)`` batches of ``batch_size``: shuffled with ``generator`` if given
    (one ``torch.randperm`` per call), in order otherwise."""
    if generator is None:
        yield from zip(x.split(batch_size), y.split(batch_size), strict=True)
        return
    order = torch.randperm(len(x), generator=generator)
    for idx in order.split(batch_size):
        yield x[idx], y[idx]
