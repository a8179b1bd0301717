"""The ANN twin (``"ann"``, Özdenizci's "act" transfer model; METHODS.md section 7).

The same weights with every spiking layer replaced by ReLU, run once on the static
input. Unlike every other mode this changes the forward pass: inside
``with model.gradient("ann"):``, ``model(x)`` returns the twin's logits, so an attack
crafts its examples on the twin (a transfer attack); outside the block the model is the
spiking network again.

The twin runs the leaves of the network (an ``nn.Sequential``, nested ones allowed, of
stateless layers and neurons) in order on the normalised input ``x``, ignoring the
encoder (a rate encoder's expectation is ``x`` itself) and the readout:

* every hidden neuron (adapters count as one) becomes ReLU of its input current;
* a neuron that is the last layer becomes the identity, so the logits are the output
  layer's input current and stay signed (a ReLU there would zero every negative logit
  and its gradient);
* SpikingJelly layers in multi-step ('m') mode, which expect ``[T, N, ...]``, get
  their input as a length-1 sequence ``[1, N, ...]`` and give back its only step (plain
  torch layers, e.g. inside ``SeqToANNContainer``, get ``[N, ...]``).

Leak, threshold and input-decay constants are ignored (the twin is the network's ReLU
counterpart, not a rate model of it). Batch norm and dropout follow the modules' own
train/eval modes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from robust_spikes.classifier import GRADIENT_CALL
from robust_spikes.gradients._modes import MODES, GradientMode
from robust_spikes.gradients._surrogates import Surrogate

if TYPE_CHECKING:
    from robust_spikes.classifier import SpikingClassifier

__all__ = ["ANNTwin"]


class ANNTwin(GradientMode):
    """``model(x)`` returns the logits of the network's ReLU twin (see the module docs).

    Raises:
        ValueError: a ``surrogate`` is given; on enter, a network that is not an
            ``nn.Sequential`` (nested allowed) of stateless layers and neurons (e.g.
            snnTorch tutorial-style or explicit-state modules), or that ends in a layer
            whose output is not ``[N, K]``.
    """

    def __init__(self, model: SpikingClassifier, surrogate: Surrogate | None = None) -> None:
        if surrogate is not None:
            raise ValueError(
                f"mode 'ann' takes no surrogate, got surrogate={surrogate!r}; for a "
                "surrogate use mode='bptt'"
            )
        super().__init__(model, None)
        self._layers: list[tuple[nn.Module, str]] = []

    def install(self) -> None:
        from robust_spikes.classifier import _time_batchable

        model = self.model
        host, net = model._host, model.net
        leaves = _time_batchable(net, host)
        if leaves is None:
            raise ValueError(
                "mode 'ann' builds the ReLU twin of an nn.Sequential (nested ones allowed) of "
                "stateless layers and neurons, got "
                f"{type(net).__name__} with modules {[type(m).__name__ for m in net.children()]}"
            )
        if GRADIENT_CALL in model.__dict__:
            raise RuntimeError(f"{type(model).__name__} already has an active gradient mode")
        neurons = {id(m) for m in host.neurons(net)}
        last = len(leaves) - 1
        self._layers = [
            (m, ("identity" if i == last else "relu") if id(m) in neurons else "layer")
            for i, m in enumerate(leaves)
        ]
        model.__dict__[GRADIENT_CALL] = self.forward

    def restore(self) -> None:
        self.model.__dict__.pop(GRADIENT_CALL, None)
        self._layers = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The twin's logits ``[N, K]`` for the normalised input ``x``."""
        h = x
        for module, role in self._layers:
            if role == "relu":
                h = F.relu(h)
            elif role == "layer" and getattr(module, "step_mode", None) == "m":
                h = module(h.unsqueeze(0))[0]  # SpikingJelly multi-step: a length-1 sequence
            elif role == "layer":
                h = module(h)
        logits = h
        if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(
                f"mode 'ann': the twin must produce logits [N={x.shape[0]}, K], got "
                f"{tuple(logits.shape)}"
            )
        return logits


MODES["ann"] = ANNTwin
