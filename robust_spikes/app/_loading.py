"""Loading what the command line names: a model (``module:function`` or a saved module, with
weights), the data set, and the ``torch.distributed`` process group under ``torchrun``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import robust_spikes

__all__ = ["UsageError", "init_distributed", "load_data", "load_model", "model_and_data", "rank"]


class UsageError(ValueError):
    """Raised by a handler for a bad combination of arguments; reported as a usage error."""


def load_model(spec: str, *, weights: Path | None = None, num_steps: int = 4) -> Any:
    """Build or load the model named on the command line.

    Args:
        spec: a file written by ``torch.save(model, path)`` (unpickled with
            ``weights_only=False``: trusted files only), or ``"module:function"``, a function
            without arguments returning the model.
        weights: optional ``state_dict`` file, loaded with ``weights_only=True``.
        num_steps: time steps when the model is a plain network, wrapped in a
            :class:`~robust_spikes.SpikingClassifier`.

    Returns:
        A :class:`~robust_spikes.SpikingClassifier` (or the module returned, if it already is
        a classifier with ``is_stochastic``).

    Raises:
        ValueError: ``spec`` is neither an existing file nor ``module:function``, or it gives
            no ``nn.Module``.

    Example:
        >>> load_model("robust_spikes.app.demo:build_net").num_steps
        4
    """
    import importlib

    import torch
    from torch import nn

    if Path(spec).is_file():
        obj = torch.load(spec, map_location="cpu", weights_only=False)
    elif ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            function = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(
                f"--model {spec!r}: cannot import {attr!r} from {module_name!r} ({err})"
            ) from None
        if not callable(function):
            raise ValueError(
                f"--model {spec!r}: {attr!r} is a {type(function).__name__}, not a function"
            )
        obj = function()
    else:
        raise ValueError(f"--model {spec!r} is neither an existing file nor MODULE:FUNCTION")
    if not isinstance(obj, nn.Module):
        raise ValueError(f"--model {spec!r} gave {type(obj).__name__}, not a torch.nn.Module")
    if weights is not None:
        obj.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    if not hasattr(obj, "is_stochastic"):
        obj = robust_spikes.SpikingClassifier(obj, num_steps)
    return obj.eval()


def load_data(args: argparse.Namespace) -> Any:
    from robust_spikes import _data

    dataset = robust_spikes.data.load(args.data, args.root, train=False)
    return _data.tensors(dataset, "--data", limit=args.limit)


def model_and_data(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    try:
        model = load_model(args.model, weights=args.weights, num_steps=args.num_steps)
    except ValueError as err:
        raise UsageError(str(err)) from None
    x, y = load_data(args)
    return model, x, y


def init_distributed() -> bool:
    """Join the process group torchrun describes (gloo on CPU); ``True`` if this process did."""
    import os

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        import torch

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return True
    return False


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
