"""Event-camera data: an embedded neuromorphic digits set and lazy loaders for real ones.

:func:`event_digits` turns scikit-learn's bundled 8x8 digits into event frames the way
N-MNIST was recorded from MNIST, with no download. :func:`event_dataset` loads N-MNIST,
DVS128 Gesture or CIFAR10-DVS through tonic or ``spikingjelly.datasets`` for users who
have them (and a network to fetch the files).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["EventFrames", "event_dataset", "event_digits"]

# Sensor displacement (in canvas pixels, as fractions of the amplitude) at the corners
# of N-MNIST's three saccades: an isosceles triangle, back to the start.
_SACCADE_CORNERS = ((0.0, 0.0), (0.5, 1.0), (1.0, 0.0), (0.0, 0.0))


class EventFrames(Dataset[tuple[Tensor, int]]):
    """In-memory event frames and labels: ``(frames [T, 2, H, W], label)`` pairs.

    Attributes:
        frames: float tensor ``[N, T, 2, H, W]`` of event counts per time bin, channel 0
            the OFF (darker) events and channel 1 the ON (brighter) events, as tonic's
            ``ToFrame`` orders polarities.
        labels: ``int64`` tensor ``[N]``.
        classes: class names, indexed by label.

    Shape:
        ``dataset[i]``: ``([T, 2, H, W] float, int)``; a DataLoader batches them to
        batch-first ``[N, T, 2, H, W]`` (see :class:`robust_spikes.encoders.Frames`).

    Example:
        >>> ds = EventFrames(torch.zeros(3, 4, 2, 8, 8), torch.tensor([0, 1, 2]), ["a", "b", "c"])
        >>> frames, label = ds[1]
        >>> frames.shape, label
        (torch.Size([4, 2, 8, 8]), 1)
    """

    def __init__(self, frames: Tensor, labels: Tensor, classes: list[str]) -> None:
        if frames.dim() != 5 or frames.shape[0] != labels.shape[0]:
            raise ValueError(
                f"frames must be [N, T, 2, H, W] with N = len(labels), got frames "
                f"{tuple(frames.shape)} and labels {tuple(labels.shape)}"
            )
        self.frames, self.labels, self.classes = frames, labels, classes

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.frames[index], int(self.labels[index])


def _saccade_path(substeps: int, amplitude: float) -> Tensor:
    """``[substeps, 2]`` sensor displacements (dx, dy) along the three saccades."""
    corners = torch.tensor(_SACCADE_CORNERS, dtype=torch.float64) * amplitude
    per = substeps // 3
    points = []
    for i in range(3):
        a, b = corners[i], corners[i + 1]
        n = per + (1 if i < substeps - 3 * per else 0)
        w = torch.arange(1, n + 1, dtype=torch.float64) / n  # positions after each move
        points.append(a + (b - a) * w[:, None])
    return torch.cat(points)


def _events_from_images(
    images: Tensor,
    num_steps: int,
    *,
    size: int,
    amplitude: float,
    threshold: float,
    substeps: int,
) -> Tensor:
    """``[N, num_steps, 2, size, size]`` event counts of a DVS watching ``images`` move.

    The image, upsampled to ``size - 2 * ceil(amplitude)`` pixels and centred on a dark
    canvas of ``size`` pixels, is seen through a sensor moving along three saccades. At
    each of ``substeps`` positions (bilinear sub-pixel shift), every pixel compares its
    log intensity with the level at its last event; each crossing of ``threshold``
    emits one event (ON up, OFF down) and moves the level by ``threshold``, as a DVS
    pixel does. Events are counted in ``num_steps`` equal time bins.
    """
    n = images.shape[0]
    margin = math.ceil(amplitude)
    inner = size - 2 * margin
    img = F.interpolate(images.double(), size=(inner, inner), mode="bilinear", align_corners=False)
    canvas = F.pad(img.clamp(0, 1), (margin, margin, margin, margin))
    log = torch.log(canvas + 0.1)  # log intensity, offset for the black background
    path = _saccade_path(substeps, amplitude)
    # Sampling grid in normalised coordinates, shifted by the sensor's displacement.
    coords = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    level = log.clone()
    counts = torch.zeros(n, num_steps, 2, size, size, dtype=torch.float64)
    for k, (dx, dy) in enumerate(path.tolist()):
        grid = torch.stack([gx + 2 * dx / size, gy + 2 * dy / size], dim=-1)
        seen = F.grid_sample(
            log,
            grid.expand(n, size, size, 2),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )
        # The slack keeps a return to a level the pixel had (k thresholds away, up to
        # rounding) at k events, on any CPU.
        change = (seen - level) / threshold
        on = torch.floor(change.clamp(min=0) + 1e-9)
        off = torch.floor((-change).clamp(min=0) + 1e-9)
        level = level + (on - off) * threshold
        t = k * num_steps // substeps
        counts[:, t, 0] += off[:, 0]
        counts[:, t, 1] += on[:, 0]
    return counts.float()


def event_digits(
    split: str = "train",
    *,
    num_steps: int = 6,
    size: int = 16,
    amplitude: float = 2.0,
    threshold: float = 0.5,
    binary: bool = False,
    seed: int = 0,
    test_fraction: float = 0.25,
) -> EventFrames:
    """Neuromorphic digits: scikit-learn's 8x8 digits seen by a simulated event camera.

    Made the way N-MNIST was recorded from MNIST (Orchard, Jayawant, Cohen and Thakor,
    "Converting static image datasets to spiking neuromorphic datasets using
    saccades", Frontiers in Neuroscience 2015): a dynamic vision sensor in front of the
    static image moves in three saccades along an isosceles triangle, and each pixel
    emits an ON or OFF event whenever its log intensity has risen or fallen by a
    threshold since its last event. Here each digit is upsampled (bilinear) to
    ``size - 2 * ceil(amplitude)`` pixels on a dark canvas of ``size`` x ``size``, the
    sensor moves ``amplitude`` pixels per saccade through ``max(24, num_steps)``
    sub-pixel positions, log intensity is ``log(I + 0.1)``, each threshold crossing
    is one event, and events are counted into ``num_steps`` equal time bins: the
    frames a tonic ``ToFrame(n_time_bins=num_steps)`` transform gives for N-MNIST.
    Deterministic (no sensor noise); no download. The train/test split is that of
    :func:`robust_spikes.data.digits` (stratified, ``seed``, ``test_fraction``).

    Args:
        split: ``"train"`` or ``"test"``.
        num_steps: number of time bins ``T``.
        size: frame height and width in pixels (> ``2 * ceil(amplitude) + 1``).
        amplitude: saccade displacement in pixels (> 0).
        threshold: log-intensity change per event (> 0).
        binary: clip the counts to 1 (an event happened in the bin or not), for attacks
            whose adversarial inputs are clamped to [0, 1] (torchattacks).
        seed: seed of the train/test split.
        test_fraction: fraction of the 1797 digits in the test split.

    Returns:
        An :class:`EventFrames` of ``([num_steps, 2, size, size] float, int)`` pairs,
        channel 0 OFF events and channel 1 ON events.

    Raises:
        ValueError: bad ``split``, ``num_steps``, ``size``, ``amplitude`` or ``threshold``.
        ImportError: scikit-learn is not installed.

    Shape:
        ``dataset[i]``: ``([num_steps, 2, size, size], int)``; batched by a DataLoader:
        ``[N, num_steps, 2, size, size]``.

    Example:
        >>> ds = event_digits("test", num_steps=4)
        >>> len(ds), ds[0][0].shape
        (450, torch.Size([4, 2, 16, 16]))
        >>> bool(ds.frames.sum() > 0)
        True
    """
    from robust_spikes._checks import check_positive_int

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    num_steps = check_positive_int("num_steps", num_steps)
    if not (isinstance(amplitude, int | float) and math.isfinite(amplitude) and amplitude > 0):
        raise ValueError(f"amplitude must be a finite number > 0, got {amplitude!r}")
    if not (isinstance(threshold, int | float) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a finite number > 0, got {threshold!r}")
    size = check_positive_int("size", size)
    if size <= 2 * math.ceil(amplitude) + 1:
        raise ValueError(
            f"size must exceed 2 * ceil(amplitude) + 1 = {2 * math.ceil(amplitude) + 1} "
            f"(the digit needs room to move), got size={size}"
        )
    from robust_spikes.data._digits import digits

    data = digits(split, seed=seed, test_fraction=test_fraction)
    frames = _events_from_images(
        data.images,
        num_steps,
        size=size,
        amplitude=float(amplitude),
        threshold=float(threshold),
        substeps=max(24, num_steps),
    )
    if binary:
        frames = frames.clamp(max=1.0)
    return EventFrames(frames, data.labels.clone(), list(data.classes))


# name -> (tonic class, tonic sensor-size attribute, spikingjelly module, class, has split)
_EVENT_SETS: dict[str, tuple[str, str, str, bool]] = {
    "nmnist": ("NMNIST", "n_mnist", "NMNIST", True),
    "dvs128_gesture": ("DVSGesture", "dvs128_gesture", "DVS128Gesture", True),
    "cifar10_dvs": ("CIFAR10DVS", "cifar10_dvs", "CIFAR10DVS", False),
}


def event_dataset(
    name: str,
    root: str | os.PathLike[str],
    *,
    train: bool = True,
    num_steps: int = 10,
    backend: str = "tonic",
) -> Dataset[Any]:
    """N-MNIST, DVS128 Gesture or CIFAR10-DVS as frames ``[T, 2, H, W]``, loaded lazily.

    A thin front to the libraries that download and bin these recordings: tonic
    (``tonic.datasets.<Name>`` with ``tonic.transforms.ToFrame(n_time_bins=num_steps)``)
    or ``spikingjelly.datasets`` (``data_type="frame"``, ``frames_number=num_steps``,
    ``split_by="number"``). Neither is imported until called. A DataLoader over the result
    yields batch-first ``[N, T, 2, H, W]`` frames for ``encoder=rs.encoders.Frames()``.
    CIFAR10-DVS has no official split: ``train`` is ignored there.

    Args:
        name: ``"nmnist"``, ``"dvs128_gesture"`` or ``"cifar10_dvs"``.
        root: directory the library stores (and downloads) the files in.
        train: the training split (else the test split).
        num_steps: number of frames ``T`` the events are binned into.
        backend: ``"tonic"`` or ``"spikingjelly"``.

    Returns:
        The library's dataset of ``(frames, label)`` pairs.

    Raises:
        ValueError: unknown ``name`` or ``backend``.
        ImportError: the backend library cannot be imported (SpikingJelly's datasets
            import torchvision, which needs a matching CUDA build of torch here).

    Shape:
        ``dataset[i]``: ``([num_steps, 2, H, W], int)`` (N-MNIST 34x34, DVS128 Gesture
        and CIFAR10-DVS 128x128).

    Example:
        >>> event_dataset("mnist", "data")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        ValueError: unknown event dataset 'mnist'; valid names are: nmnist, ...
    """
    if name not in _EVENT_SETS:
        raise ValueError(
            f"unknown event dataset {name!r}; valid names are: {', '.join(_EVENT_SETS)}"
        )
    from robust_spikes._checks import check_positive_int

    num_steps = check_positive_int("num_steps", num_steps)
    tonic_name, sj_module, sj_name, has_split = _EVENT_SETS[name]
    if backend == "tonic":
        try:
            import tonic
        except ImportError as err:
            raise ImportError(
                f"event_dataset({name!r}, backend='tonic') needs tonic, which is not "
                "installed: pip install tonic (or use backend='spikingjelly', or the "
                "embedded robust_spikes.data.event_digits, which needs no download)"
            ) from err
        cls = getattr(tonic.datasets, tonic_name)
        transform = tonic.transforms.ToFrame(sensor_size=cls.sensor_size, n_time_bins=num_steps)
        kwargs: dict[str, Any] = {"train": train} if has_split else {}
        result: Dataset[Any] = cls(save_to=os.fspath(root), transform=transform, **kwargs)
        return result
    if backend == "spikingjelly":
        import importlib

        try:
            module = importlib.import_module(f"spikingjelly.datasets.{sj_module}")
        except Exception as err:  # torchvision's failing import raises RuntimeError
            raise ImportError(
                f"event_dataset({name!r}, backend='spikingjelly') needs "
                f"spikingjelly.datasets.{sj_module}, which failed to import ({err}); "
                "SpikingJelly's datasets import torchvision, which needs a torchvision "
                "build matching torch (or use backend='tonic', or the embedded "
                "robust_spikes.data.event_digits)"
            ) from err
        kwargs = {"train": train} if has_split else {}
        result = getattr(module, sj_name)(
            os.fspath(root),
            data_type="frame",
            frames_number=num_steps,
            split_by="number",
            **kwargs,
        )
        return result
    raise ValueError(f"backend must be 'tonic' or 'spikingjelly', got {backend!r}")
