"""Tests for robust_spikes.data."""

from __future__ import annotations

import math
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robust_spikes import data
from robust_spikes.data import _digits, _load, _pairs

N_DIGITS = 1797


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x, y


def _sklearn_split(seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    _, y = _sklearn_digits()
    train_idx, test_idx = train_test_split(
        np.arange(N_DIGITS), test_size=test_fraction, random_state=seed, stratify=y
    )
    return train_idx, test_idx


# ------------------------------------------------------------------------------------- digits


@pytest.mark.parametrize("test_fraction", [0.25, 0.1, 0.5, 0.33])
def test_digits_sizes_match_sklearn(test_fraction: float) -> None:
    train = data.digits("train", test_fraction=test_fraction)
    test = data.digits("test", test_fraction=test_fraction)
    assert len(train) + len(test) == N_DIGITS
    _, test_idx = _sklearn_split(0, test_fraction)
    assert len(test) == len(test_idx)
    # scikit-learn rounds the test share up (and the train share down).
    assert len(test) == math.ceil(test_fraction * N_DIGITS)


def test_digits_default_sizes() -> None:
    assert len(data.digits("test")) == 450
    assert len(data.digits()) == 1347


@pytest.mark.parametrize("split", ["train", "test"])
def test_digits_shapes_dtypes_and_range(split: str) -> None:
    ds = data.digits(split)
    n = len(ds)
    assert ds.images.shape == (n, 1, 8, 8)
    assert ds.images.dtype == torch.float32
    assert ds.labels.shape == (n,)
    assert ds.labels.dtype == torch.int64
    assert ds.images.min().item() == 0.0
    assert ds.images.max().item() == 1.0  # 16 / 16, exactly
    assert torch.all((ds.images >= 0) & (ds.images <= 1))
    # Every value is a multiple of 1/16.
    assert torch.equal(ds.images * 16, (ds.images * 16).round())
    assert set(ds.labels.tolist()) == set(range(10))
    assert ds.classes == [str(i) for i in range(10)]

    image, label = ds[3]
    assert isinstance(image, torch.Tensor)
    assert image.shape == (1, 8, 8)
    assert image.dtype == torch.float32
    assert type(label) is int
    assert torch.equal(image, ds.images[3])
    assert label == ds.labels[3].item()


def test_digits_usable_with_dataloader() -> None:
    ds = data.digits("test")
    images, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=32)))
    assert images.shape == (32, 1, 8, 8)
    assert labels.dtype == torch.int64
    assert torch.equal(images, ds.images[:32])


@pytest.mark.parametrize("test_fraction", [0.25, 0.1, 0.6])
def test_digits_stratified(test_fraction: float) -> None:
    _, y = _sklearn_digits()
    class_counts = np.bincount(y, minlength=10)
    test_counts = np.bincount(
        data.digits("test", test_fraction=test_fraction).labels.numpy(), minlength=10
    )
    train_counts = np.bincount(
        data.digits("train", test_fraction=test_fraction).labels.numpy(), minlength=10
    )
    np.testing.assert_array_equal(test_counts + train_counts, class_counts)
    assert np.all(np.abs(test_counts - test_fraction * class_counts) <= 1)


@pytest.mark.parametrize("seed", [0, 7])
def test_digits_content_and_disjointness(seed: int) -> None:
    x, y = _sklearn_digits()
    train_idx, test_idx = _sklearn_split(seed, 0.25)
    assert not set(train_idx.tolist()) & set(test_idx.tolist())
    assert sorted([*train_idx.tolist(), *test_idx.tolist()]) == list(range(N_DIGITS))

    for split, idx in (("train", train_idx), ("test", test_idx)):
        ds = data.digits(split, seed=seed)
        expected = torch.as_tensor(x[idx] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
        assert torch.equal(ds.images, expected)
        assert torch.equal(ds.labels, torch.as_tensor(y[idx], dtype=torch.int64))


def test_digits_deterministic_per_seed() -> None:
    a, b = data.digits("test", seed=3), data.digits("test", seed=3)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels)
    c = data.digits("test", seed=4)
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.labels, c.labels)


def test_digits_determinism_does_not_depend_on_the_cache() -> None:
    before = data.digits("train", seed=11)
    _digits._digits_split.cache_clear()
    after = data.digits("train", seed=11)
    assert torch.equal(before.images, after.images)
    assert torch.equal(before.labels, after.labels)


def test_digits_returns_copies_of_the_cache() -> None:
    first = data.digits("test", seed=5)
    reference_images = first.images.clone()
    reference_labels = first.labels.clone()
    first.images.fill_(-1.0)
    first.labels.fill_(-1)
    first.classes.append("oops")
    second = data.digits("test", seed=5)
    assert torch.equal(second.images, reference_images)
    assert torch.equal(second.labels, reference_labels)
    assert second.classes == [str(i) for i in range(10)]
    # and the items handed out are views of this dataset's own copy
    second[0][0].fill_(-1.0)
    assert torch.equal(data.digits("test", seed=5).images, reference_images)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"split": "validation"}, ValueError, r"split.*'validation'"),
        ({"split": "Train"}, ValueError, r"split.*'Train'"),
        ({"test_fraction": 0.0}, ValueError, r"test_fraction.*0\.0"),
        ({"test_fraction": 1.0}, ValueError, r"test_fraction.*1\.0"),
        ({"test_fraction": -0.5}, ValueError, r"test_fraction.*-0\.5"),
        ({"test_fraction": float("nan")}, ValueError, r"test_fraction.*nan"),
        ({"test_fraction": "0.25"}, TypeError, r"test_fraction.*'0\.25'"),
        ({"test_fraction": True}, TypeError, r"test_fraction.*True"),
        ({"seed": 1.5}, TypeError, r"seed.*1\.5"),
        ({"seed": "0"}, TypeError, r"seed.*'0'"),
        ({"seed": None}, TypeError, r"seed.*None"),
        ({"seed": True}, TypeError, r"seed.*True"),
    ],
)
def test_digits_rejects_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        data.digits(**kwargs)


def test_digits_accepts_numpy_integer_seed() -> None:
    a = data.digits("test", seed=np.int64(2))  # type: ignore[arg-type]
    b = data.digits("test", seed=2)
    assert torch.equal(a.images, b.images)


# --------------------------------------------------------------------------------------- load


def test_load_digits_matches_digits(tmp_path: Path) -> None:
    for train, split in ((True, "train"), (False, "test")):
        loaded = data.load("digits", tmp_path, train=train)
        direct = data.digits(split)
        assert isinstance(loaded, type(direct))
        assert len(loaded) == len(direct)
        assert torch.equal(loaded.images, direct.images)
        assert torch.equal(loaded.labels, direct.labels)
        image, label = loaded[10]
        assert torch.equal(image, direct[10][0])
        assert label == direct[10][1]
    assert list(tmp_path.iterdir()) == []  # root is not touched


def test_load_digits_applies_transform() -> None:
    ds = data.load("DIGITS", "unused", train=False, transform=lambda x: x * 2)
    assert torch.equal(ds[0][0], data.digits("test")[0][0] * 2)


def _torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:
        return False
    return True


def test_load_cifar10_without_files(tmp_path: Path) -> None:
    if _torchvision_imports():
        # torchvision works: an empty root and download=False is torchvision's own error.
        with pytest.raises(RuntimeError, match="not found"):
            data.load("cifar10", tmp_path, download=False)
    else:
        with pytest.raises(ImportError, match=r"robust-spikes\[vision\]") as info:
            data.load("cifar10", tmp_path)
        assert "digits" in str(info.value)
        assert info.value.__cause__ is not None
    assert list(tmp_path.iterdir()) == []


def test_import_torchvision_error_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ImportError) as info:
        _load._import_torchvision()
    message = str(info.value)
    assert "pip install 'robust-spikes[vision]'" in message
    assert "robust_spikes.data.digits()" in message
    assert torch.__version__ in message  # the build must match the installed torch
    assert isinstance(info.value.__cause__, ImportError)
    assert str(info.value.__cause__) in message  # says why


def test_import_torchvision_wraps_non_import_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = __import__

    def broken_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "torchvision" or name.startswith("torchvision."):
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr("builtins.__import__", broken_import)
    with pytest.raises(ImportError, match="torchvision::nms does not exist") as info:
        _load._import_torchvision()
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "robust-spikes[vision]" in str(info.value)


@pytest.mark.parametrize("name", ["imagenet", "cifar", "mnist2", "", "fashion mnist"])
def test_load_unknown_name(name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid names") as info:
        data.load(name, tmp_path)
    message = str(info.value)
    assert repr(name) in message
    for valid in ("mnist", "cifar10", "cifar100", "svhn", "fashion-mnist", "digits"):
        assert valid in message


def test_load_name_must_be_str(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="name"):
        data.load(10, tmp_path)  # type: ignore[arg-type]


class _FakeToTensor:
    pass


def _fake_torchvision(calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> Any:
    """A stand-in for the torchvision module whose dataset classes record their arguments."""

    def recorder(class_name: str) -> type:
        class Recorder:
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self.class_name = class_name
                calls.append((class_name, args, kwargs))

        Recorder.__name__ = class_name
        return Recorder

    names = ("MNIST", "FashionMNIST", "SVHN", "CIFAR10", "CIFAR100")
    return types.SimpleNamespace(
        datasets=types.SimpleNamespace(**{n: recorder(n) for n in names}),
        transforms=types.SimpleNamespace(ToTensor=_FakeToTensor),
    )


@pytest.mark.parametrize(
    ("name", "class_name"),
    [
        ("mnist", "MNIST"),
        ("MNIST", "MNIST"),
        ("fashion-mnist", "FashionMNIST"),
        ("fashion_mnist", "FashionMNIST"),
        ("fashionmnist", "FashionMNIST"),
        ("Fashion-MNIST", "FashionMNIST"),
        ("cifar10", "CIFAR10"),
        ("CIFAR100", "CIFAR100"),
        ("svhn", "SVHN"),
    ],
)
@pytest.mark.parametrize("train", [True, False])
def test_load_dispatches_to_torchvision(
    name: str, class_name: str, train: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(_load, "_import_torchvision", lambda: _fake_torchvision(calls))

    ds = data.load(name, tmp_path, train=train, download=True)

    assert getattr(ds, "class_name", None) == class_name
    assert len(calls) == 1
    called, args, kwargs = calls[0]
    assert called == class_name
    root = args[0] if args else kwargs["root"]
    assert Path(root) == tmp_path
    assert kwargs["download"] is True
    assert isinstance(kwargs["transform"], _FakeToTensor)
    if class_name == "SVHN":
        assert kwargs["split"] == ("train" if train else "test")
        assert "train" not in kwargs
    else:
        assert kwargs["train"] is train
        assert "split" not in kwargs


def test_load_passes_custom_transform_and_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(_load, "_import_torchvision", lambda: _fake_torchvision(calls))

    def transform(x: Any) -> Any:
        return x

    data.load("mnist", str(tmp_path), transform=transform)
    _, _, kwargs = calls[0]
    assert kwargs["transform"] is transform
    assert kwargs["train"] is True  # default split
    assert kwargs["download"] is False  # never downloads unless asked


def test_load_checks_the_name_before_importing_torchvision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail() -> Any:
        raise AssertionError("torchvision must not be imported")

    monkeypatch.setattr(_load, "_import_torchvision", fail)
    with pytest.raises(ValueError, match="valid names"):
        data.load("imagenet", tmp_path)
    loaded = data.load("digits", tmp_path)
    assert isinstance(loaded, _pairs.TensorPairs)
    assert len(loaded) == 1347


# ------------------------------------------------------------------------------ import costs


def test_import_does_not_pull_in_sklearn_or_torchvision() -> None:
    code = (
        "import sys, robust_spikes.data; "
        "print('sklearn' in sys.modules, 'torchvision' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert result.stdout.strip() == "False False"


def test_public_api() -> None:
    names = ["EventFrames", "digits", "event_dataset", "event_digits", "load", "mnist5k"]
    assert sorted(data.__all__) == names
    for name in data.__all__:
        assert callable(getattr(data, name))
