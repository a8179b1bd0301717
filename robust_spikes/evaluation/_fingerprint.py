"""Fingerprints of a model and of data, so that a records file is resumed only by its run.

A fingerprint is plain JSON: BLAKE2b digests of raw bytes (CPU, contiguous, the tensor's
own dtype), so the same model and data give the same fingerprint on every machine, plus
the wrapper's settings in readable form, so that a refusal can say what differs.

* model: every entry of ``state_dict()`` (name, dtype, shape and values: parameters and
  persistent buffers such as batch-norm statistics and snnTorch's ``beta``/``threshold``),
  the module tree (names and classes), and the settings of a
  :class:`~robust_spikes.SpikingClassifier` that change its function: ``num_steps``,
  ``readout``, the encoder (its ``repr``), ``normalize`` and ``input_range``. Neuron state
  (snnTorch's ``mem``, SpikingJelly's ``v``) is not persistent and not part of it.
* data: the images and the labels, in order, so a reordering changes it too.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import torch
from torch import nn

__all__ = ["data_fingerprint", "differences", "model_fingerprint"]

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_DIGESTS = ("parameters", "modules", "images", "labels")


def _update(h: Any, name: str, value: Any) -> None:
    """Feed one named entry (a tensor or any other value) into the hash ``h``."""
    if isinstance(value, torch.Tensor):
        t = value.detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer, not a copy
    else:  # e.g. get_extra_state() objects
        h.update(f"{name}\0{type(value).__name__}\0{_ADDRESS.sub('', repr(value))}\0".encode())


def _digest(entries: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name, value in entries:
        _update(h, name, value)
    return h.hexdigest()


def _plain(value: Any) -> Any:
    """A JSON value for one wrapper setting."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    return _ADDRESS.sub("", repr(value))


def model_fingerprint(model: nn.Module) -> dict[str, Any]:
    """``{"parameters": digest, "modules": digest, "wrapper": {setting: value}}``."""
    modules = [
        (f"{name}:{type(m).__module__}.{type(m).__qualname__}", None)
        for name, m in model.named_modules()
    ]
    wrapper: dict[str, Any] = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
    for attr in ("num_steps", "readout", "encoder", "input_range"):
        if hasattr(model, attr):
            wrapper[attr] = _plain(getattr(model, attr))
    if hasattr(model, "_std"):  # SpikingClassifier's normalize, kept in non-persistent buffers
        mean, std = getattr(model, "_mean", None), getattr(model, "_std", None)
        wrapper["normalize"] = None if std is None else [_plain(mean), _plain(std)]
    return {
        "parameters": _digest(model.state_dict().items()),
        "modules": _digest(modules),
        "wrapper": wrapper,
    }


def data_fingerprint(images: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """``{"num_samples": N, "images": digest, "labels": digest}`` (order-sensitive)."""
    return {
        "num_samples": len(labels),
        "images": _digest([("images", images)]),
        "labels": _digest([("labels", labels)]),
    }


def differences(written: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words (empty if they are equal)."""
    out = []
    for key in sorted({*written, *current}):
        a, b = written.get(key), current.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key} {d}" for d in differences(a, b)]
        elif key in _DIGESTS:
            out.append(f"{key} differ")  # a digest's value says nothing to a reader
        else:
            out.append(f"{key}: {a!r} in the file, {b!r} now")
    return out
