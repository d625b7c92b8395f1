# Two commands on a fresh machine: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast proto bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# Compile the numba kernels once into the package's __pycache__ (cache=True), so that
	# no user's first run pays tens of seconds of compilation.
	$(BIN)/python -c "from linkage.matching.engine import warm_up; warm_up()"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/linkage demo --two-server

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m 'not slow'

proto: $(STAMP)
	$(BIN)/python protos/build.py

bench: $(STAMP)
	$(BIN)/python -m bench.dice

clean:
	rm -rf $(VENV) demo-output build *.egg-info
