"""The README's Python examples run as written, and its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_python_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
    assert blocks, "the README lost its quick start"
    results = []
    namespace: dict[str, object] = {}  # the blocks run in order, like a notebook
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
        results.append(dict(namespace))
    attack, neurons, adaptive, training, evaluation, conversion = results[:6]
    x, x_adv = attack["x"], attack["x_adv"]
    assert isinstance(x, torch.Tensor) and isinstance(x_adv, torch.Tensor)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    logits = neurons["logits"]
    assert isinstance(logits, torch.Tensor) and logits.shape == (8, 10)
    assert neurons["model"].is_stochastic
    assert len(adaptive["ensemble"].broken_by) == 32
    assert (adaptive["x_adv"] - adaptive["x"]).abs().max() <= 0.1 + 1e-6
    assert len(training["history"]) == 1 and training["gated"].is_stochastic
    summary = evaluation["summary"]
    assert summary["num_samples"] == 16 and summary["protocol"] == "both"
    assert "Masking checks" in evaluation["table"]
    assert list(conversion["thresholds"]) == ["2.v_threshold"]
    assert len(conversion["history"]) == 1


def test_readme_commands_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"(?:^|`|: )make (\w+)", README, flags=re.MULTILINE):
        assert re.search(rf"^{target}:", makefile, flags=re.MULTILINE), f"make {target}"
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    for path in re.findall(r"(benchmarks/\w+\.py)", README):
        assert (ROOT / path).exists(), path
