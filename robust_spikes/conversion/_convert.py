"""ANN-to-SNN conversion: ReLU -> integrate-and-fire, batch-norm folding, thresholds.

The ANN is traced with ``torch.fx``; every ReLU (``nn.ReLU``, ``F.relu``, ``torch.relu``,
``x.relu()``; ``nn.ReLU6``/``F.relu6`` with the threshold capped at 6) becomes a spiking
layer of the target framework whose spikes carry the amplitude of its threshold, so the
time average of a layer's output approximates the ReLU it replaces (Rueckauer et al. 2017
write the same network with normalised weights and unit thresholds). Batch norm is
folded into the convolution or linear layer before it, dropout is removed, and the
thresholds are balanced layer by layer (:mod:`._calibrate`).
"""

from __future__ import annotations

import copy
import math
import numbers
import operator
from collections import Counter
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from robust_spikes import _data
from robust_spikes._checks import check_num_steps, check_positive_int
from robust_spikes._optional import require
from robust_spikes.conversion._calibrate import calibrate
from robust_spikes.gradients import Tie

__all__ = ["LIF_BETA", "convert", "thresholds"]

TARGETS = ("snntorch", "spikingjelly")
NEURONS = ("if", "lif")
LIF_BETA = 0.95  # membrane leak per step of neuron="lif" (snnTorch beta; SpikingJelly tau 20)
RESETS = ("subtract", "zero")
CALIBRATION_BATCH = 256  # tensors given as calibration data are split into batches this size
SURROGATE_GAMMA = 1.0  # triangle half-width, in units of each layer's threshold

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


def convert(
    ann: nn.Module,
    calibration_data: Any,
    *,
    target: str = "snntorch",
    neuron: str = "if",
    num_steps: int = 8,
    percentile: float = 99.7,
    scale: float = 1.0,
    calibration_steps: int = 100,
    reset: str = "subtract",
) -> torch.fx.GraphModule:
    """Convert a ReLU network into a spiking network of snnTorch or SpikingJelly.

    The robust conversion of Özdenizci & Legenstein ("Adversarially robust spiking neural
    networks through conversion", TMLR 2024), with threshold balancing after Rueckauer et
    al. (Frontiers in Neuroscience 2017) and Sengupta et al. (Frontiers in Neuroscience
    2019). The ANN (a copy, in eval mode; the ANN itself is not changed) is traced with
    ``torch.fx``, then:

    1. every ReLU (``nn.ReLU`` modules, ``F.relu``/``torch.relu``/``x.relu()`` in the traced
       code; ``nn.ReLU6``/``F.relu6`` with the threshold capped at 6) becomes a spiking layer:
       an integrate-and-fire neuron (``neuron="if"``) or a leaky one (``"lif"``, leak
       :data:`LIF_BETA` per step), each call site its own layer (a
       ReLU module used twice, as in torchvision's ResNet blocks, gives two layers). Its
       spikes carry the amplitude of its threshold, so the time average of its output
       approximates the ReLU's output and biases keep their scale;
    2. batch norm (eval statistics) is folded into the convolution or linear layer before
       it; elsewhere it becomes a frozen per-channel affine map (:class:`ChannelAffine`);
       dropout is removed;
    3. thresholds are set layer by layer on the spiking network: for each spiking layer in
       turn, the network runs ``calibration_steps`` steps on every calibration batch, the
       ``percentile``-th percentile of the layer's input current over all recorded steps
       and neurons is taken, and the maximum over batches becomes its threshold; at the
       end every threshold is multiplied by ``scale`` (0.3 for 8 steps in the paper).

    Reset: after a spike the membrane loses the threshold (``reset="subtract"``, the
    default), which keeps the charge above threshold, so the firing rate converges to
    ``min(relu(z), threshold) / threshold`` for a current z and the SNN to the ANN as
    ``num_steps`` grows (Rueckauer et al. 2017); ``reset="zero"`` is the hard reset of
    Özdenizci & Legenstein's IF neurons, whose rate (about ``1 / ceil(threshold / z)``
    for a constant current z) stays biased however long the SNN runs (the robust
    fine-tuning then adapts weights and thresholds to it).

    Supported layers: convolutions (1-3d), linear, batch norm, dropout, max/average
    pooling (also adaptive; max pooling right after a ReLU is moved before the spiking
    layer, which the ANN does not notice and which avoids max-pooling spikes), flatten,
    identity, residual additions and concatenation; any other layer or function raises
    an error naming it.

    The result runs one time step per call in both targets: snnTorch ``Leaky`` neurons
    with ``init_hidden=True`` and ``learn_threshold=True``; SpikingJelly IF/LIF nodes in
    single-step mode whose ``v_threshold`` is an ``nn.Parameter``. It ends in the ANN's
    last (non-spiking) layer, whose time average :class:`~robust_spikes.SpikingClassifier`
    reads out as logits. The thresholds (see :func:`thresholds`) are parameters, so they
    are saved in ``state_dict`` and learnt by :func:`robust_finetune`. The spike functions
    fire as their framework's Heaviside step with the triangle surrogate
    (:class:`~robust_spikes.gradients.Triangle`) in the backward pass, of half-width equal
    to the layer's threshold after conversion (``gamma = 1`` on the potential divided by
    the threshold; Özdenizci & Legenstein use ``gamma = 1``). A fixed half-width of 1 would
    cover a small part of the potential's range in layers whose thresholds are several
    units large, and gradient attacks through it would overstate robustness.

    Args:
        ann: a ReLU network traceable by ``torch.fx`` (no data-dependent control flow).
        calibration_data: images for threshold balancing: a tensor ``[N, ...]``, an
            ``(images, labels)`` pair or a Dataset of ``(image, label)`` pairs (split into
            batches of 256), or a DataLoader or other iterable of batches (kept as they come),
            each a tensor of images or an ``(images, labels)`` pair; labels are ignored.
            Values as the ANN takes them (images in [0, 1] for a classifier that attacks
            will query).
        target: ``"snntorch"`` or ``"spikingjelly"``.
        neuron: ``"if"`` (integrate-and-fire) or ``"lif"`` (leaky).
        num_steps: the number of time steps the SNN is meant to run (a positive int),
            stored as the ``num_steps`` attribute of the result.
        percentile: percentile of the input current used as threshold, in (0, 100].
        scale: factor applied to every threshold after calibration (> 0).
        calibration_steps: time steps simulated per batch and layer during calibration.
        reset: ``"subtract"`` (reset by subtraction) or ``"zero"`` (hard reset to 0).

    Returns:
        A ``torch.fx.GraphModule`` that ``rs.SpikingClassifier(snn, num_steps)`` wraps.

    Shape:
        One call: the ANN's input ``[N, ...]`` to its output ``[N, K]`` for one time step.

    Warns:
        RuntimeWarning: a spiking layer that receives no positive current on the
            calibration data (its threshold is left at 1).

    Raises:
        ValueError: bad ``target``, ``neuron`` or ``reset`` (the message lists the valid
            names), ``num_steps``, ``percentile``, ``scale`` or ``calibration_steps``; empty or
            non-float ``calibration_data``; an ANN without ReLU.
        TypeError: ``ann`` is not a module or cannot be traced; an unsupported layer or
            function (the message names it and its type).

    Example:
        >>> import robust_spikes as rs
        >>> ann = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        >>> snn = convert(ann, torch.rand(16, 1, 8, 8), calibration_steps=4)
        >>> rs.SpikingClassifier(snn, snn.num_steps)(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 10])
        >>> sorted(thresholds(snn))
        ['2.threshold']
    """
    if not isinstance(ann, nn.Module):
        raise TypeError(f"ann must be a torch.nn.Module, got {type(ann).__name__}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if neuron not in NEURONS:
        raise ValueError(f"neuron must be one of {NEURONS}, got {neuron!r}")
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
    num_steps = check_num_steps(num_steps)
    percentile = _check_number("percentile", percentile, 0.0, 100.0, low_open=True)
    scale = _check_number("scale", scale, 0.0, math.inf, low_open=True)
    calibration_steps = check_positive_int("calibration_steps", calibration_steps)
    host_module, tie = _target(target)
    device = next((p.device for p in ann.parameters()), torch.device("cpu"))
    batches = [x.to(device) for x in _batches(calibration_data)]

    reference = copy.deepcopy(ann).eval()
    try:
        gm = torch.fx.symbolic_trace(copy.deepcopy(reference))
    except Exception as err:
        raise TypeError(
            f"ann must be traceable by torch.fx to be converted (no data-dependent control "
            f"flow in forward), tracing {type(ann).__name__} failed: {type(err).__name__}: {err}"
        ) from err
    activations = _prepare(gm)
    if not activations:
        raise ValueError(
            f"ann has no ReLU activation to convert into spiking neurons, got "
            f"{type(ann).__name__} with modules {sorted({type(m).__name__ for m in ann.modules()})}"
        )
    gm.recompile()
    _check_folding(reference, gm, batches[0])

    from robust_spikes.frameworks import detect
    from robust_spikes.gradients import Triangle

    spike_function = Triangle(gamma=SURROGATE_GAMMA)
    layers = _insert_neurons(
        gm,
        activations,
        lambda: host_module.make_neuron(
            neuron, LIF_BETA, reset, spike_function.spike_function(tie)
        ),
        host_module.THRESHOLD,
    )
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm.to(device)
    host = detect(gm, target)
    calibrate(gm, layers, batches, host, q=percentile, steps=calibration_steps)
    with torch.no_grad():
        for module, attr, _, cap in layers:
            value = getattr(module, attr)
            value.mul_(scale)
            if cap is not None:
                value.clamp_(max=cap)
            # The surrogate's width follows the layer's scale: a fixed width would cover a
            # small part of the potential's range in layers with large thresholds, and
            # gradient attacks through it would fail (gradient masking).
            width = Triangle(gamma=SURROGATE_GAMMA * float(value))
            setattr(module, host_module.SPIKE_FUNCTION, width.spike_function(tie))
    gm.num_steps = num_steps  # type: ignore[assignment]
    # torch.fx's deepcopy rebuilds the module and keeps only the attributes listed here.
    key = getattr(torch.fx.graph_module, "_USER_PRESERVED_ATTRIBUTES_KEY", None)
    if key is not None:
        gm.meta.setdefault(key, {})["num_steps"] = num_steps
    return gm


def thresholds(net: nn.Module) -> dict[str, nn.Parameter]:
    """The learnable thresholds of a spiking network, by ``state_dict`` name.

    Finds every ``nn.Parameter`` registered as ``threshold`` (snnTorch neurons with
    ``learn_threshold=True``) or ``v_threshold`` (the SpikingJelly nodes of
    :func:`convert`), also inside a :class:`~robust_spikes.SpikingClassifier`.

    Args:
        net: a network or classifier.

    Returns:
        ``{name: parameter}`` in ``net.named_modules()`` order (empty if there are none).

    Shape:
        no tensors in (a module); each returned parameter has the shape the neuron keeps
        (0-dim for snnTorch ``threshold`` and for the neurons of :func:`convert`), in
        membrane-potential units.

    Example:
        >>> import snntorch as snn
        >>> net = nn.Sequential(nn.Linear(4, 2), snn.Leaky(beta=1.0, learn_threshold=True))
        >>> list(thresholds(net))
        ['1.threshold']
    """
    found: dict[str, nn.Parameter] = {}
    for name, module in net.named_modules():
        for attr in ("threshold", "v_threshold"):
            value = module._parameters.get(attr)
            if value is not None:
                found[f"{name}.{attr}" if name else attr] = value
    return found


# ---------------------------------------------------------------------------- helpers
def _check_number(name: str, value: Any, low: float, high: float, *, low_open: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else math.nan
    inside = (low < v if low_open else low <= v) and v <= high
    if not (ok and math.isfinite(v) and inside):
        bracket = "(" if low_open else "["
        upper = f"{high:g}]" if math.isfinite(high) else "inf)"
        raise ValueError(f"{name} must be a number in {bracket}{low:g}, {upper}, got {value!r}")
    return v


def _target(target: str) -> tuple[ModuleType, Tie]:
    """The conversion module of ``target`` and its tie at threshold."""
    if target == "snntorch":
        require("snntorch", "rs.conversion.convert(target='snntorch')")
        from robust_spikes.conversion import _snntorch

        return _snntorch, ">"
    require("spikingjelly.activation_based.neuron", "rs.conversion.convert(target='spikingjelly')")
    from robust_spikes.conversion import _spikingjelly

    return _spikingjelly, ">="


def _batches(data: Any) -> list[torch.Tensor]:
    """Calibration batches of images (``_data``'s contract, labels ignored)."""
    items = list(_data.image_batches(data, "calibration_data", batch_size=CALIBRATION_BATCH))
    for x in items:
        if not x.is_floating_point() or x.numel() == 0:
            raise ValueError(
                "calibration_data must hold non-empty float tensors of inputs, got dtype "
                f"{x.dtype}, shape {tuple(x.shape)}"
            )
    if not items:
        raise ValueError("calibration_data must hold at least one batch, got none")
    return items


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


def _prepare(gm: torch.fx.GraphModule) -> list[tuple[torch.fx.Node, float | None]]:
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
def _check_folding(reference: nn.Module, gm: torch.fx.GraphModule, x: torch.Tensor) -> None:
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


def _insert_neurons(
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
