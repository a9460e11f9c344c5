# The two commands a newcomer types: `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch==2.13.0 is the local CPU wheel; any other version pulls a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
EXTRAS_TEST ?= dev,lm,plot,envs,log,tune

.PHONY: demo test lint sysdeps venv bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# constraints.txt pins every package the tests ran with, so a new release cannot break a fresh clone.
$(VENV)/.core: pyproject.toml constraints.txt | $(PY)
	$(PIP) install -q "$(TORCH_PIN)"
	$(PIP) install -q -c constraints.txt -e ".[lm,plot]"
	touch $@

$(VENV)/.test: pyproject.toml constraints.txt | $(PY)
	$(PIP) install -q "$(TORCH_PIN)"
	$(PIP) install -q -c constraints.txt -e ".[$(EXTRAS_TEST)]"
	touch $@

venv: $(VENV)/.core

# System packages: bubblewrap is the sandbox that runs model-written code.
sysdeps:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq bubblewrap >/dev/null; }

demo: $(VENV)/.core
	$(PY) -m policyopt.cli demo

lint: $(VENV)/.test
	$(VENV)/bin/ruff check .
	$(PY) tools/size_budget.py policyopt benchmarks tools

test: sysdeps $(VENV)/.test lint
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest

bench: $(VENV)/.test
	$(PIP) install -q -e ".[bench]"
	$(PY) benchmarks/classic_vs_sb3.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
