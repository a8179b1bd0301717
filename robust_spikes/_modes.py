"""Train/eval modes: leave every module of the user's network in the mode it was found in."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

__all__ = ["kept_modes"]


@contextlib.contextmanager
def kept_modes(*models: nn.Module, eval: bool = False) -> Iterator[None]:
    """Restore the train/eval flag of every module of ``models`` on exit, also on error.

    With ``eval=True`` every module is switched to eval mode on entry (flag by flag, so no
    ``train()``/``eval()`` override runs). Modules whose flag a caller sets inside, such as
    a training loop's ``model.train()``, get their own flag back all the same.
    """
    modes = [(m, m.training) for model in models for m in model.modules()]
    if eval:
        for m, _ in modes:
            m.training = False
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
