# robust-spikes: `make demo` and `make test` work on a fresh machine (CPU, package registries only).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: venv demo test lint format bench docs clean

venv: $(STAMP)

# torch is pinned through constraints.txt: an unpinned torch pulls gigabytes of CUDA
# packages, and the pin makes torchvision resolve to the matching 0.28.0.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt torch==2.13.0
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/robust-spikes demo

lint: $(STAMP)
	$(PY) -m ruff check robust_spikes tests benchmarks
	$(PY) -m ruff format --check robust_spikes tests benchmarks
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format robust_spikes tests benchmarks
	$(PY) -m ruff check --fix robust_spikes tests benchmarks

test: lint
	$(PY) -m pytest robust_spikes tests

# HTML API reference from the docstrings (pdoc), in docs/api/index.html.
docs: $(STAMP)
	$(PY) -m pdoc --docformat google -o docs/api robust_spikes robust_spikes.app.demo

bench: $(STAMP)
	$(PY) benchmarks/attack_step.py

clean:
	rm -rf $(VENV) build docs/api *.egg-info .pytest_cache .mypy_cache .ruff_cache
