"""Every public object has a docstring with a ``Shape:`` section and a ``>>>`` example.

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
from pathlib import Path

import pytest

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


def _missing(doc: str) -> list[str]:
    checks = (
        ("docstring", bool(doc)),
        ("Shape: section", "Shape:" in doc),
        (">>> example", ">>>" in doc),
    )
    return [what for what, ok in checks if not ok]


def _public(module_name: str) -> list[tuple[str, object]]:
    module = importlib.import_module(module_name)
    return [
        (attr, getattr(module, attr))
        for attr in getattr(module, "__all__", [])
        if not inspect.ismodule(getattr(module, attr))
    ]


@pytest.mark.parametrize("module_name", MODULES)
def test_public_objects_have_shape_and_example(module_name: str) -> None:
    problems = []
    for attr, obj in _public(module_name):
        if (module_name, attr) in NOT_DOCUMENTED | CONSTANTS:
            continue
        missing = _missing(inspect.getdoc(obj) or "")
        if missing:
            problems.append(f"{module_name}.{attr}: missing {', '.join(missing)}")
    assert not problems, "\n".join(problems)


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
