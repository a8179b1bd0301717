"""Transparent views of a model: modules that attacks see in its place.

A view's ``training``, ``train()``/``eval()``, ``parameters()`` and ``modules()`` are the
model's (modes set on the view set the model's), and ``generator``, ``is_stochastic``,
``gradient(...)`` and ``compiled_inference()`` are forwarded, so an attack or ensemble
member built on a view behaves as on the model.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

__all__ = ["ImageView", "ModelView"]


class ModelView(nn.Module):
    """Base of the views: holds ``model`` and forwards its flags and contexts.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model

    @property
    def training(self) -> bool:  # a view: the model's flag, never a stale copy
        model = self._modules.get("model")
        return bool(model.training) if model is not None else True

    @training.setter
    def training(self, value: bool) -> None:  # nn.Module.train() then sets the children
        pass

    @property
    def generator(self) -> torch.Generator | None:
        """The wrapped model's generator (``None`` if it has none)."""
        generator = getattr(self.model, "generator", None)
        return generator if isinstance(generator, torch.Generator) else None

    @property
    def is_stochastic(self) -> bool:
        """The wrapped model's ``is_stochastic`` (``True`` when it does not say)."""
        return bool(getattr(self.model, "is_stochastic", True))

    def gradient(self, mode: str = "bptt", *, surrogate: Any = None) -> Any:
        """The wrapped model's :meth:`~robust_spikes.SpikingClassifier.gradient` context."""
        gradient = getattr(self.model, "gradient", None)
        if gradient is None:
            raise TypeError(
                f"gradient modes need a SpikingClassifier, got {type(self.model).__name__}"
            )
        return gradient(mode, surrogate=surrogate)

    def compiled_inference(self) -> contextlib.AbstractContextManager[Any]:
        """The wrapped model's compiled inference context, or no context if it has none."""
        compiled = getattr(self.model, "compiled_inference", None)
        return compiled() if callable(compiled) else contextlib.nullcontext()


class ImageView(ModelView):
    """The model on ``[N, 1, 1, D]`` images: for attacks that take only images (APGD,
    Square) on a model of other inputs (features ``[N, F]``, event frames ``[N, T, F]``).

    Args:
        model: a classifier ``[N, *shape] -> [N, K]``.
        shape: the model's input shape after the batch dimension.

    Shape:
        x: ``[N, 1, 1, prod(shape)]``; returns the model's ``[N, K]``.

    Example:
        >>> lin = nn.Linear(6, 3)
        >>> view = ImageView(lin, (6,))
        >>> x = torch.rand(2, 6)
        >>> bool(torch.equal(view(x.view(2, 1, 1, 6)), lin(x)))
        True
    """

    def __init__(self, model: nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__(model)
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.reshape(x.shape[0], *self.shape))

    def extra_repr(self) -> str:
        return f"shape={self.shape}"
