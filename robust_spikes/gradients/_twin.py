"""The ANN twin (``"ann"``, Özdenizci's "act" transfer model; METHODS.md section 7).

The same weights with every spiking layer replaced by ReLU, run once on the static
input. Unlike every other mode this changes the forward pass: inside
``with model.gradient("ann"):``, ``model(x)`` returns the twin's logits, so an attack
crafts its examples on the twin (a transfer attack); outside the block the model is the
spiking network again.

The twin runs the leaves of the network (an ``nn.Sequential``, nested ones allowed, of
stateless layers and neurons) in order on the normalised input ``x``, ignoring the
encoder's randomness and the readout: it takes the encoder's expected input (``x`` itself
for rate codes; the mean frame of event frames, see ``Encoder.expected_input``):

* every hidden neuron (adapters count as one) becomes ReLU of its input current;
* a neuron that is the last layer becomes the identity, so the logits are the output
  layer's input current and stay signed (a ReLU there would zero every negative logit
  and its gradient);
* SpikingJelly layers in multi-step ('m') mode, which expect ``[T, N, ...]``, get
  their input as a length-1 sequence ``[1, N, ...]`` and give back its only step (plain
  torch layers, e.g. inside ``SeqToANNContainer``, get ``[N, ...]``).

A ``torch.fx.GraphModule`` (what :func:`robust_spikes.conversion.convert` returns) gets
the same treatment on its graph: a copy of the graph calls ``relu(current) / threshold``
(an integrate-and-fire neuron's rate) where it called a hidden neuron and passes a neuron
that produces the output straight through, on the network's own layers (shared, not
copied). For a converted ANN, whose spikes carry the threshold as amplitude, the twin is
the ANN itself, batch norm folded.

Leak, threshold and input-decay constants are ignored (the twin is the network's ReLU
counterpart, not a rate model of it). Batch norm and dropout follow the modules' own
train/eval modes.
"""

from __future__ import annotations

import operator

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from robust_spikes._loops import time_batchable
from robust_spikes.gradients._modes import MODES, Classifier, GradientMode
from robust_spikes.gradients._surrogates import Surrogate

__all__ = ["ANNTwin"]


class ANNTwin(GradientMode):
    """``model(x)`` returns the logits of the network's ReLU twin (see the module docs).

    Raises:
        ValueError: a ``surrogate`` is given; on enter, a network that is not an
            ``nn.Sequential`` (nested allowed) of stateless layers and neurons (e.g.
            snnTorch tutorial-style or explicit-state modules), or that ends in a layer
            whose output is not ``[N, K]``.

    Shape:
        inside the block, ``model(x)``: ``x``: ``[N, C, H, W]`` or ``[N, F]`` in the
        model's input range; returns the twin's ``[N, K]`` logits (the output layer's
        input current, signed), computed once with no time dimension.

    Example:
        >>> import snntorch as snn
        >>> from robust_spikes import SpikingClassifier
        >>> net = nn.Sequential(nn.Linear(4, 8), snn.Leaky(beta=0.9, init_hidden=True),
        ...                     nn.Linear(8, 2),
        ...                     snn.Leaky(beta=0.9, init_hidden=True, output=True))
        >>> model = SpikingClassifier(net, num_steps=4)
        >>> x = torch.rand(3, 4)
        >>> with model.gradient("ann"):
        ...     twin = model(x)
        >>> twin.shape, torch.allclose(twin, net[2](torch.relu(net[0](x))))
        (torch.Size([3, 2]), True)
        >>> MODES["ann"] is ANNTwin
        True
    """

    def __init__(self, model: Classifier, surrogate: Surrogate | None = None) -> None:
        if surrogate is not None:
            raise ValueError(
                f"mode 'ann' takes no surrogate, got surrogate={surrogate!r}; for a "
                "surrogate use mode='bptt'"
            )
        super().__init__(model, None)
        self._layers: list[tuple[nn.Module, str]] = []
        self._graph: torch.fx.GraphModule | None = None

    def install(self) -> None:
        model = self.model
        host, net = model._host, model.net
        leaves = time_batchable(net, host)
        if leaves is None and isinstance(net, torch.fx.GraphModule):
            if model._call_hook is not None:
                raise RuntimeError(f"{type(model).__name__} already has an active gradient mode")
            self._graph = _graph_twin(net, {id(m) for m in host.neurons(net)})
            model._call_hook = self.forward
            return
        if leaves is None:
            raise ValueError(
                "mode 'ann' builds the ReLU twin of an nn.Sequential (nested ones allowed) of "
                "stateless layers and neurons, got "
                f"{type(net).__name__} with modules {[type(m).__name__ for m in net.children()]}"
            )
        if model._call_hook is not None:
            raise RuntimeError(f"{type(model).__name__} already has an active gradient mode")
        neurons = {id(m) for m in host.neurons(net)}
        last = len(leaves) - 1
        self._layers = [
            (m, ("identity" if i == last else "relu") if id(m) in neurons else "layer")
            for i, m in enumerate(leaves)
        ]
        model._call_hook = self.forward

    def restore(self) -> None:
        self.model._call_hook = None
        self._layers = []
        self._graph = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The twin's logits ``[N, K]`` for the normalised input ``x``."""
        model = self.model
        h = model.encoder.expected_input(x, model.num_steps)  # event frames: the mean frame
        h = h if self._graph is None else self._graph(h)
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


def _graph_twin(net: torch.fx.GraphModule, neurons: set[int]) -> torch.fx.GraphModule:
    """A GraphModule on ``net``'s own submodules whose graph calls ReLU for hidden neurons
    and passes output neurons (those feeding the graph's output) through unchanged."""
    graph = torch.fx.Graph()
    env: dict[torch.fx.Node, torch.fx.Node] = {}
    graph_out = graph.graph_copy(net.graph, env)
    outputs = {node for node in env.values() if node.op == "output"}
    for node in list(graph.nodes):
        if node.op != "call_module" or id(net.get_submodule(str(node.target))) not in neurons:
            continue
        feeds_output = any(user in outputs for user in node.users) or (
            node.users and all(_is_first_item(u) and u.users.keys() <= outputs for u in node.users)
        )
        with graph.inserting_after(node):
            if feeds_output:
                node.replace_all_uses_with(node.args[0])
            else:
                rate = graph.call_function(F.relu, (node.args[0],))
                vth = _threshold(graph, net, str(node.target))
                if vth is not None:  # an IF neuron's rate: relu(current) / threshold
                    with graph.inserting_after(rate):
                        rate = graph.call_function(operator.truediv, (rate, vth))
                node.replace_all_uses_with(rate)
        graph.erase_node(node)
    graph.output(graph_out)
    graph.lint()
    return torch.fx.GraphModule(net, graph)


def _threshold(graph: torch.fx.Graph, net: nn.Module, target: str) -> torch.fx.Node | float | None:
    """The neuron's threshold: a ``get_attr`` node for a parameter, a float, or ``None``."""
    neuron = net.get_submodule(target)
    for attr in ("threshold", "v_threshold"):
        value = neuron._parameters.get(attr)
        if value is not None:
            return graph.get_attr(f"{target}.{attr}")
        value = getattr(neuron, attr, None)
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            return float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _is_first_item(node: torch.fx.Node) -> bool:
    return bool(
        node.op == "call_function" and node.target is operator.getitem and node.args[1] == 0
    )


MODES["ann"] = ANNTwin
