# icecube-cloud — the two quick-start commands are `make demo` and `make test`.
# Everything installs into ./.venv from pyproject.toml; nothing needs to be installed beforehand
# except Python 3.11, pip and apt.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp
DEMO_DIR ?= demo
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck unit clean help

help:
	@echo "make demo   - install, then synthesise an ICEYE stack, catalog it and build a cube in ./$(DEMO_DIR)"
	@echo "make test   - install everything the tests need, lint, type-check and run the tests"
	@echo "make clean  - remove the virtual environment and demo output"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP)-base: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP)-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP)-base

demo: $(STAMP)-base
	$(BIN)/icecube-cloud demo --workdir $(DEMO_DIR)

lint: $(STAMP)-test
	$(BIN)/ruff check icecube_cloud tests
	$(BIN)/ruff format --check icecube_cloud tests

typecheck: $(STAMP)-test
	$(BIN)/mypy

unit: $(STAMP)-test
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache .hypothesis
