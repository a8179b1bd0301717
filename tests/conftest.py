"""Fixtures shared by the tests."""

from __future__ import annotations

import os

os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")  # no background compile workers

import pytest
import torch
from helpers import digits_tensors


@pytest.fixture
def digits_batch() -> tuple[torch.Tensor, torch.Tensor]:
    _, _, x, y = digits_tensors()
    return x[:16].clone(), y[:16].clone()
