"""Every public object has a docstring with a ``>>>`` example, and a ``Shape:`` section
where tensors flow through it.

A ``Shape:`` section is required where the object takes or returns tensors, read off the
object itself: an ``nn.Module`` subclass (its ``forward`` takes tensors), a torchattacks
``Attack`` subclass, or an annotation that names a ``torch.Tensor`` (``nn.Parameter`` too)
or a torch ``Dataset`` or ``DataLoader`` (they hand out tensors) anywhere inside it
(``Tensor | None`` and ``tuple[Tensor, int]`` count), in a function's signature or in a
class's fields, ``__init__``, ``__call__`` and public methods. Elsewhere the section is
optional (``fit``, whose data is annotated ``Any``, keeps its real one). A ``Shape:``
section that only says there is nothing to show ("no tensors ...", "none", "n/a", an empty
section) fails wherever it stands, a module's docstring included: the section is for
shapes, not filler.

The HTML API reference (``make docs``, pdoc) is rendered here as well, and must show every
public name of every public module.

The examples themselves run as doctests (``--doctest-modules`` in pyproject). Plain
constants (a tuple, a dict, a float, a ``Literal`` alias) cannot carry a docstring of their
own at runtime, so they are listed in ``CONSTANTS`` and must instead be described, with an
example that uses them, in their module's docstring. Classes and functions get no
exemption.
"""

from __future__ import annotations

import importlib
import inspect
import re
import typing
from pathlib import Path

import pytest
import torch
from torch import nn

MODULES = [
    "robust_spikes",
    "robust_spikes.training",
    "robust_spikes.neurons",
    "robust_spikes.encoders",
    "robust_spikes.evaluation",
    "robust_spikes.gradients",
    "robust_spikes.attacks",
    "robust_spikes.conversion",
    "robust_spikes.data",
    "robust_spikes.app.demo",
]

NOT_DOCUMENTED = {("robust_spikes", "__version__")}  # a version string, nothing to show

# Module-level constants documented in their module's docstring instead of their own.
CONSTANTS = {
    ("robust_spikes.evaluation", "MASKING_CODES"),
    ("robust_spikes.gradients", "MODES"),
    ("robust_spikes.gradients", "SURROGATES"),
    ("robust_spikes.app.demo", "DEFAULT_EPS"),
    ("robust_spikes.app.demo", "MODELS"),
}


def _is_class_or_function(obj: object) -> bool:
    return inspect.isclass(obj) or inspect.isroutine(obj)


def _hints(obj: object) -> list[object]:
    """The annotations of ``obj``, resolved where possible, else as written (strings)."""
    try:
        return list(typing.get_type_hints(obj).values())
    except (NameError, TypeError, AttributeError):  # a name imported for type checking only
        return list(getattr(obj, "__annotations__", {}).values())


# Annotations that mean tensors flow: tensors themselves, and the data sets and loaders
# that hand them out in batches.
_TENSOR_TYPES = (torch.Tensor, torch.utils.data.Dataset, torch.utils.data.DataLoader)


def _is_tensor_hint(hint: object) -> bool:
    if isinstance(hint, str):
        return re.search(r"\b(Tensor|Parameter|Dataset|DataLoader)\b", hint) is not None
    if isinstance(hint, typing.ForwardRef):
        return _is_tensor_hint(hint.__forward_arg__)
    if isinstance(hint, list | tuple):  # the argument list of a ``Callable[[...], ...]``
        return any(_is_tensor_hint(arg) for arg in hint)
    origin = typing.get_origin(hint) or hint  # ``Dataset[Any]`` -> ``Dataset``
    if isinstance(origin, type) and issubclass(origin, _TENSOR_TYPES):
        return True
    return any(_is_tensor_hint(arg) for arg in typing.get_args(hint))


def _own_routines(cls: type) -> list[object]:
    """``__init__``, ``__call__`` and the public methods and properties, inherited ones too."""
    routines = []
    for klass in cls.__mro__:
        if klass is object:
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") and name not in {"__init__", "__call__"}:
                continue
            if isinstance(member, staticmethod | classmethod):
                member = member.__func__
            elif isinstance(member, property):
                member = member.fget
            if inspect.isroutine(member):
                routines.append(member)
    return routines


def _takes_or_returns_tensors(obj: object) -> bool:
    if inspect.isclass(obj):
        if issubclass(obj, nn.Module):
            return True
        if any(
            k.__name__ == "Attack" and k.__module__.startswith("torchattacks") for k in obj.__mro__
        ):
            return True
        candidates = [obj, *_own_routines(obj)]
    else:
        candidates = [obj]
    return any(_is_tensor_hint(hint) for c in candidates for hint in _hints(c))


# A ``Shape:`` section that only says there is nothing to show.
_FILLER = re.compile(r"(no tensors?\b|none\b|n/?a\b|nothing\b|not applicable\b|[-.\s]*$)", re.I)


def _shape_sections(doc: str) -> list[str]:
    """The text of each ``Shape:`` section of a Google-style docstring, joined into one line."""
    lines = doc.splitlines()
    sections = []
    for i, line in enumerate(lines):
        if line.strip() != "Shape:":
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following.strip())
        sections.append(" ".join(part for part in body if part))
    return sections


def _fillers(doc: str) -> list[str]:
    return [f"filler Shape: section {s!r}" for s in _shape_sections(doc) if _FILLER.match(s)]


def _problems(obj: object) -> list[str]:
    """What is wrong with the docstring of the public class or function ``obj``."""
    doc = inspect.getdoc(obj) or ""
    if not doc:
        return ["no docstring"]
    problems = _fillers(doc)
    if _takes_or_returns_tensors(obj) and not _shape_sections(doc):
        problems.append("no Shape: section, though it takes or returns tensors")
    if ">>>" not in doc:
        problems.append("no >>> example")
    return problems


def _public(module_name: str) -> list[tuple[str, object]]:
    module = importlib.import_module(module_name)
    return [
        (attr, getattr(module, attr))
        for attr in getattr(module, "__all__", [])
        if not inspect.ismodule(getattr(module, attr))
    ]


@pytest.mark.parametrize("module_name", MODULES)
def test_public_objects_have_an_example_and_shapes_where_tensors_flow(module_name: str) -> None:
    # A module's docstring needs no Shape: section, but may hold no filler one either.
    module_doc = inspect.getdoc(importlib.import_module(module_name)) or ""
    problems = [f"{module_name}: {what}" for what in _fillers(module_doc)]
    for attr, obj in _public(module_name):
        if (module_name, attr) in NOT_DOCUMENTED | CONSTANTS:
            continue
        problems += [f"{module_name}.{attr}: {what}" for what in _problems(obj)]
    assert not problems, "\n".join(problems)


def _tensor_in(x: torch.Tensor | None = None) -> int:
    """Takes a tensor.

    Example:
        >>> _tensor_in()
        0
    """
    return 0


def _tensors_out(n: int) -> tuple[torch.Tensor, int]:
    """Returns a tensor.

    Shape:
        returns ``[n]`` and ``n``.

    Example:
        >>> _tensors_out(2)[0].shape
        torch.Size([2])
    """
    return torch.zeros(n), n


def _plain(n: int) -> str:
    """No tensors anywhere.

    Example:
        >>> _plain(1)
        '1'
    """
    return str(n)


def _plain_with_filler(n: int) -> str:
    """No tensors anywhere, said in a filler section.

    Shape:
        no tensors: an int in, a ``str`` out.

    Example:
        >>> _plain_with_filler(1)
        '1'
    """
    return str(n)


class _Module(nn.Module):
    """A module, whose forward takes tensors whatever its annotations say.

    Example:
        >>> _Module()
        _Module()
    """


class _Holder:
    """A class whose public method returns a tensor.

    Example:
        >>> _Holder().zeros().shape
        torch.Size([1])
    """

    def zeros(self) -> torch.Tensor:
        return torch.zeros(1)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_tensor_in, ["no Shape: section, though it takes or returns tensors"]),
        (_tensors_out, []),
        (_plain, []),
        (_plain_with_filler, ["filler Shape: section 'no tensors: an int in, a ``str`` out.'"]),
        (_Module, ["no Shape: section, though it takes or returns tensors"]),
        (_Holder, ["no Shape: section, though it takes or returns tensors"]),
    ],
)
def test_the_rule_asks_for_shapes_where_tensors_flow_and_rejects_filler(
    obj: object, expected: list[str]
) -> None:
    assert _problems(obj) == expected


@pytest.mark.parametrize("body", ["none", "None.", "no tensor", "N/A", "-", ""])
def test_every_filler_spelling_is_caught(body: str) -> None:
    doc = f"Summary.\n\nShape:\n    {body}\n\nExample:\n    >>> 1\n    1"
    assert _fillers(doc) == [f"filler Shape: section {body!r}"]


@pytest.mark.parametrize(("module_name", "attr"), sorted(CONSTANTS))
def test_constants_are_documented_in_their_module(module_name: str, attr: str) -> None:
    module = importlib.import_module(module_name)
    assert attr in getattr(module, "__all__", []), f"{module_name}.{attr} is no longer public"
    obj = getattr(module, attr)
    # Exemptions are for plain values only. (A ``Literal`` type alias is ``callable()``
    # because typing aliases define ``__call__``, yet it is no class or function and
    # cannot hold a docstring of its own.)
    assert not _is_class_or_function(obj), f"{module_name}.{attr} needs its own docstring"
    doc = inspect.getdoc(module) or ""
    assert f"``{attr}``" in doc, f"{module_name}'s docstring does not describe {attr}"
    examples = [line for line in doc.splitlines() if line.lstrip().startswith((">>>", "..."))]
    assert any(attr in line for line in examples), (
        f"{module_name}'s docstring has no example that uses {attr}"
    )


def test_the_api_reference_renders_every_public_name(tmp_path: Path) -> None:
    pdoc = pytest.importorskip("pdoc")
    pdoc.render.configure(docformat="google")
    try:
        pdoc.pdoc("robust_spikes", "robust_spikes.app.demo", output_directory=tmp_path)
    finally:
        pdoc.render.configure()  # pdoc's defaults back for anyone else in this process
    problems = []
    for module_name in MODULES:
        page = tmp_path.joinpath(*module_name.split(".")).with_suffix(".html")
        if not page.is_file():
            problems.append(f"{module_name}: no page {page.name}")
            continue
        html = page.read_text(encoding="utf-8")
        problems += [
            f"{module_name}.{attr}: not on its page"
            for attr, _ in _public(module_name)
            if f'id="{attr}"' not in html
        ]
    assert not problems, "\n".join(problems)
