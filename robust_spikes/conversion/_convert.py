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
from types import ModuleType
from typing import Any

import torch
import torch.fx
from torch import nn

from robust_spikes import _data
from robust_spikes._checks import check_num_steps, check_positive_int
from robust_spikes._optional import require
from robust_spikes.conversion._calibrate import calibrate
from robust_spikes.conversion._graph import check_folding, insert_neurons, prepare
from robust_spikes.gradients._surrogates import Tie

__all__ = ["LIF_BETA", "convert", "thresholds"]

TARGETS = ("snntorch", "spikingjelly")
NEURONS = ("if", "lif")
LIF_BETA = 0.95  # membrane leak per step of neuron="lif" (snnTorch beta; SpikingJelly tau 20)
RESETS = ("subtract", "zero")
CALIBRATION_BATCH = 256  # tensors given as calibration data are split into batches this size
SURROGATE_GAMMA = 1.0  # triangle half-width, in units of each layer's threshold


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
       ``LIF_BETA = 0.95`` per step, SpikingJelly ``tau = 20``), each call site its own
       layer (a ReLU module used twice, as in torchvision's ResNet blocks, gives two layers). Its
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
    activations = prepare(gm)
    if not activations:
        raise ValueError(
            f"ann has no ReLU activation to convert into spiking neurons, got "
            f"{type(ann).__name__} with modules {sorted({type(m).__name__ for m in ann.modules()})}"
        )
    gm.recompile()
    check_folding(reference, gm, batches[0])

    from robust_spikes.frameworks import detect
    from robust_spikes.gradients import Triangle

    spike_function = Triangle(gamma=SURROGATE_GAMMA)
    layers = insert_neurons(
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
        each returned parameter has the shape the neuron keeps (0-dim for snnTorch
        ``threshold`` and for the neurons of :func:`convert`), in membrane-potential units.

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
