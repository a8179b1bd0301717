"""Optional dependencies: availability checks and install hints."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

__all__ = ["is_imported", "require"]

_EXTRAS = {
    "snntorch": "snntorch",
    "spikingjelly": "spikingjelly",
    "torchattacks": "attacks",
    "torchvision": "vision",
    "matplotlib": "plots",
    "sklearn": "data",
    "tqdm": "",
}


def is_imported(module: str) -> bool:
    """Whether ``module`` is already imported (a user's model built with it implies so)."""
    return module in sys.modules


def require(module: str, feature: str) -> ModuleType:
    """Import an optional dependency or raise ``ImportError`` with the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        extra = _EXTRAS.get(top, top)
        raise ImportError(
            f"{feature} needs {top!r}, which is not installed: pip install 'robust-spikes[{extra}]'"
        ) from err
