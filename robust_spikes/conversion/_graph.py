"""Rewriting the traced ANN graph for conversion: check, fold, move, replace.

:func:`prepare` checks every node of a ``torch.fx`` trace of the ANN against what
conversion can translate, removes dropout, folds batch norm into the convolution or
linear layer before it (or into a frozen :class:`ChannelAffine` elsewhere) and moves max
pooling before the activation it follows; :func:`insert_neurons` then replaces each ReLU
by a spiking layer whose spikes carry its threshold.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

__all__ = ["ChannelAffine", "check_folding", "insert_neurons", "prepare"]

# Activations that become spiking layers, with the cap of the threshold (ReLU6: 6).
_RELU_MODULES: tuple[tuple[type[nn.Module], float | None], ...] = (
    (nn.ReLU, None),
    (nn.ReLU6, 6.0),
)
_RELU_FUNCTIONS: dict[Callable[..., Any], float | None] = {
    F.relu: None,
    F.relu_: None,
    torch.relu: None,
    torch.relu_: None,
    F.relu6: 6.0,
}
_RELU_METHODS: dict[str, float | None] = {"relu": None, "relu_": None}

_DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_DROPOUT_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout}
_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_KEEP_MODULES = (
    *_FOLDABLE,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_MAX_POOL_MODULES = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_MAX_POOL_FUNCTIONS = {F.max_pool1d, F.max_pool2d, F.max_pool3d}
# Functions kept as they are: linear maps, pooling and shape bookkeeping.
_KEEP_FUNCTIONS: set[Any] = {
    operator.add,
    operator.iadd,
    operator.sub,
    operator.neg,
    operator.getitem,
    getattr,
    torch.add,
    torch.sub,
    torch.cat,
    torch.flatten,
    torch.reshape,
    torch.mean,
    torch.sum,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
}
_SCALAR_FUNCTIONS = {operator.mul, operator.truediv, torch.mul}  # kept with a number operand
_KEEP_METHODS = {
    "view",
    "reshape",
    "flatten",
    "size",
    "dim",
    "contiguous",
    "add",
    "add_",
    "sub",
    "mean",
    "sum",
    "unsqueeze",
    "squeeze",
    "permute",
    "transpose",
}


class ChannelAffine(nn.Module):
    """``x * weight + bias`` per channel (dimension 1): a batch norm frozen in eval mode.

    What :func:`convert` puts where a batch norm cannot be folded into the layer before it
    (for example a batch norm after pooling or on the input).

    Args:
        weight: ``[C]`` multipliers.
        bias: ``[C]`` offsets.

    Shape:
        x: ``[N, C, ...]``; returns the same shape.

    Example:
        >>> affine = ChannelAffine(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0]))
        >>> affine(torch.ones(1, 2))
        tensor([[2., 4.]], grad_fn=<AddBackward0>)
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1, *([1] * (x.dim() - 2)))
        return x * self.weight.view(shape) + self.bias.view(shape)


def _describe(node: torch.fx.Node) -> str:
    target = node.target
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", repr(target))
    module = getattr(target, "__module__", None)
    kind = "method" if node.op == "call_method" else "function"
    return f"{kind} {module + '.' if module else ''}{name}"


def _unsupported(what: str) -> TypeError:
    return TypeError(
        f"convert cannot translate {what}: supported are ReLU/ReLU6 (module or function), "
        "convolution, linear, batch norm, dropout, max/average pooling, flatten, identity, "
        "additions and concatenation"
    )


def prepare(gm: torch.fx.GraphModule) -> list[tuple[torch.fx.Node, float | None]]:
    """Check every node, remove dropout, fold batch norm; return the ReLU nodes with caps."""
    graph = gm.graph
    modules = dict(gm.named_modules())
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    found: list[tuple[torch.fx.Node, float | None]] = []
    for node in list(graph.nodes):
        if node.op == "call_module":
            module = modules[str(node.target)]
            cap = next((c for kind, c in _RELU_MODULES if isinstance(module, kind)), False)
            if cap is not False:
                found.append((node, cap))
            elif isinstance(module, _DROPOUT_MODULES):
                _bypass(graph, node)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                _fold(gm, node, module, modules, calls)
            elif not isinstance(module, _KEEP_MODULES):
                raise _unsupported(f"layer {node.target!r} of type {type(module).__name__}")
        elif node.op == "call_function":
            if node.target in _RELU_FUNCTIONS:
                found.append((node, _RELU_FUNCTIONS[node.target]))
            elif node.target in _DROPOUT_FUNCTIONS:
                _bypass(graph, node)
            elif node.target in _SCALAR_FUNCTIONS:
                if all(isinstance(a, torch.fx.Node) for a in node.args[:2]):
                    raise _unsupported(
                        f"{node.name!r} ({_describe(node)} of two tensors: not linear)"
                    )
            elif node.target not in _KEEP_FUNCTIONS:
                raise _unsupported(f"{node.name!r} ({_describe(node)})")
        elif node.op == "call_method":
            if node.target in _RELU_METHODS:
                found.append((node, _RELU_METHODS[str(node.target)]))
            elif node.target not in _KEEP_METHODS:
                raise _unsupported(f"{node.name!r} (method Tensor.{node.target})")
    graph.eliminate_dead_code()
    _pool_before_spikes(gm, found, modules)
    return found


def _is_max_pool(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), _MAX_POOL_MODULES)
    return node.op == "call_function" and node.target in _MAX_POOL_FUNCTIONS


def _pool_before_spikes(
    gm: torch.fx.GraphModule,
    found: list[tuple[torch.fx.Node, float | None]],
    modules: dict[str, nn.Module],
) -> None:
    """Rewrite ``maxpool(relu(z))`` as ``relu(maxpool(z))`` (equal: ReLU is monotone).

    Max pooling over spikes takes the OR of its inputs' spikes and so overestimates the
    rate of the strongest one; pooling the currents before the spiking layer does not
    (exactly so for a constant current, such as the first layer's under direct input).
    """
    activations = {node for node, _ in found}
    for pool in list(gm.graph.nodes):
        act = (
            _input(pool)
            if pool.op in ("call_module", "call_function") and (pool.args or pool.kwargs)
            else None
        )
        if not (
            isinstance(act, torch.fx.Node)
            and act in activations
            and len(act.users) == 1
            and _is_max_pool(pool, modules)
        ):
            continue
        current = _input(act)
        pool.replace_input_with(act, current)
        pool.replace_all_uses_with(act)
        act.replace_input_with(current, pool)
        pool.append(act)


def _bypass(graph: torch.fx.Graph, node: torch.fx.Node) -> None:
    node.replace_all_uses_with(_input(node))
    graph.erase_node(node)


def _input(node: torch.fx.Node) -> Any:
    return node.args[0] if node.args else node.kwargs["input"]


def _bn_affine(bn: nn.modules.batchnorm._BatchNorm, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` in float64 with ``bn(x) = x * scale + shift`` in eval mode."""
    if bn.running_mean is None or bn.running_var is None:
        raise _unsupported(
            f"layer {name!r} of type {type(bn).__name__} without running statistics "
            "(track_running_stats=False)"
        )
    mean, var = bn.running_mean.double(), bn.running_var.double()
    scale = 1.0 / torch.sqrt(var + bn.eps)
    shift = -mean * scale
    if bn.affine:
        scale = scale * bn.weight.detach().double()
        shift = shift * bn.weight.detach().double() + bn.bias.detach().double()
    return scale, shift


def _fold(
    gm: torch.fx.GraphModule,
    node: torch.fx.Node,
    bn: nn.modules.batchnorm._BatchNorm,
    modules: dict[str, nn.Module],
    calls: Counter[Any],
) -> None:
    """Fold ``bn`` into the convolution or linear layer before it, else freeze it."""
    scale, shift = _bn_affine(bn, str(node.target))
    prev = _input(node)
    layer = modules.get(str(prev.target)) if isinstance(prev, torch.fx.Node) else None
    foldable = (
        isinstance(prev, torch.fx.Node)
        and prev.op == "call_module"
        and isinstance(layer, _FOLDABLE)
        and len(prev.users) == 1
        and calls[prev.target] == 1
        and layer.weight.shape[0] == scale.numel()
    )
    if not foldable:  # e.g. after pooling or on the input: a fixed per-channel affine map
        dtype = bn.running_mean.dtype if bn.running_mean is not None else torch.float32
        gm.add_submodule(str(node.target), ChannelAffine(scale.to(dtype), shift.to(dtype)))
        return
    assert isinstance(layer, _FOLDABLE)
    with torch.no_grad():
        weight = layer.weight.double()
        bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(scale)
        dtype = layer.weight.dtype
        view = (-1, *([1] * (weight.dim() - 1)))
        layer.weight.copy_((weight * scale.view(view)).to(dtype))
        folded = (bias * scale + shift).to(dtype)
        if layer.bias is None:
            layer.bias = nn.Parameter(folded)
        else:
            layer.bias.copy_(folded)
    node.replace_all_uses_with(prev)
    gm.graph.erase_node(node)


@torch.no_grad()
def check_folding(reference: nn.Module, gm: torch.fx.GraphModule, x: torch.Tensor) -> None:
    """The ANN after folding and dropout removal computes what the ANN computes in eval."""
    want, got = reference(x), gm(x)
    if not isinstance(want, torch.Tensor) or not isinstance(got, torch.Tensor):
        raise TypeError(f"ann must return a tensor, got {type(want).__name__}")
    tol = 1e-4 * max(1.0, float(want.abs().max()))
    if want.shape != got.shape or not torch.allclose(want, got, rtol=1e-4, atol=tol):
        raise RuntimeError(  # pragma: no cover - a bug of ours, not of the user's input
            "batch-norm folding changed the ANN's outputs (max difference "
            f"{float((want - got).abs().max()):.3g}); please report this model"
        )


def insert_neurons(
    gm: torch.fx.GraphModule,
    activations: list[tuple[torch.fx.Node, float | None]],
    make: Callable[[], nn.Module],
    attr: str,
) -> list[tuple[nn.Module, str, str, float | None]]:
    """Replace each ReLU node by ``neuron(x) * neuron.<attr>``; return the layers in order."""
    graph = gm.graph
    taken = {name for name, _ in gm.named_modules()}
    used: set[str] = set()
    layers = []
    for node, cap in activations:
        if node.op == "call_module" and str(node.target) not in used:
            name = str(node.target)  # the ReLU module's place: state_dict keys stay familiar
        else:
            base = str(node.target) if node.op == "call_module" else node.name
            k, name = 0, base
            while name in taken or name in used:
                k += 1
                name = f"{base}_{k}"
        used.add(name)
        module = make()
        gm.add_submodule(name, module)
        with graph.inserting_before(node):
            spikes = graph.call_module(name, (_input(node),))
            threshold = graph.get_attr(f"{name}.{attr}")
            out = graph.call_function(operator.mul, (spikes, threshold))
        node.replace_all_uses_with(out)
        graph.erase_node(node)
        layers.append((module, attr, name, cap))
    return layers
