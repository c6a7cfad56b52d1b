# icecube-cloud — the two quick-start commands are `make demo` and `make test`.
# Everything installs into ./.venv from pyproject.toml, and the system packages the tests need
# (PostgreSQL + PostGIS for the STAC API) through apt; nothing else needs to be installed beforehand
# except Python 3.11, pip and apt.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stamp
DEMO_DIR ?= demo
PYTEST_ARGS ?=
STAC_API_DIR  ?= .stac-api
STAC_API_PORT ?= 8082
MOTO_DIR  ?= .moto
MOTO_PORT ?= 5555

.PHONY: help demo demo-cloud test lint typecheck unit system-packages docs bench bench-map bench-patches \
        bench-scale \
        catalog-up catalog-down moto-up moto-down clean

help:
	@echo "make demo        - install, then synthesise an ICEYE stack, catalog it and build a cube in ./$(DEMO_DIR)"
	@echo "make test        - install everything the tests need (system packages too), lint, type-check, test"
	@echo "make demo-cloud  - the same story on local S3 (moto), a STAC API (pgstac) and a dask cluster"
	@echo "make catalog-up  - run a local STAC API (pgstac) on port $(STAC_API_PORT); catalog-down stops it"
	@echo "make moto-up     - run a local S3 (moto) on port $(MOTO_PORT); moto-down stops it"
	@echo "make docs        - build the documentation site into ./site (mkdocs, strict); .venv/bin/mkdocs serve serves it"
	@echo "make bench       - benchmark builds against the I/O ceiling and the naive recipe (not part of test)"
	@echo "make bench-map   - map-grid builds against odc-stac, stackstac and a bare reproject pool (in bench)"
	@echo "make bench-patches - random training patches/s: DataLoader vs bare zarr reads vs xbatcher (in bench)"
	@echo "make bench-scale - per-step time and S3 requests of a daily cube of a year from 5,000 items (in bench)"
	@echo "make clean       - remove the virtual environment and demo output"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP)-base: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP)-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(STAMP)-base $(STAMP)-docs

$(STAMP)-docs: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[docs]'
	touch $@ $(STAMP)-base

system-packages:
	infra/local/install-system-packages.sh

demo: $(STAMP)-base
	$(BIN)/icecube-cloud demo --workdir $(DEMO_DIR)

docs: $(STAMP)-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

demo-cloud: $(STAMP)-test system-packages
	$(BIN)/icecube-cloud demo --cloud --workdir $(DEMO_DIR)-cloud --size 512

lint: $(STAMP)-test
	$(BIN)/ruff check icecube_cloud tests benchmarks
	$(BIN)/ruff format --check icecube_cloud tests benchmarks

typecheck: $(STAMP)-test
	$(BIN)/mypy

unit: $(STAMP)-test system-packages
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(STAMP)-test
	$(BIN)/python -m benchmarks.run --size small --size large --repeat 3 --memory --json bench.json
	$(MAKE) bench-map
	$(MAKE) bench-patches
	$(MAKE) bench-scale

bench-map: $(STAMP)-test
	$(BIN)/python -m benchmarks.bench_map --size large --resampling nearest --resampling bilinear \
		--json bench-map.json

bench-patches: $(STAMP)-test
	$(BIN)/python -m benchmarks.bench_patches --size large --repeat 3 --json bench-patches.json

bench-scale: $(STAMP)-test system-packages
	$(BIN)/python -m benchmarks.bench_scale --slices 90 --slices 180 --slices 365 --items 5000 \
		--store s3 --repeat 2 --json bench-scale-s3.json
	$(BIN)/python -m benchmarks.bench_scale --slices 365 --items 1000 --items 5000 --store local \
		--catalog static --catalog api --repeat 2 --json bench-scale-local.json

catalog-up: $(STAMP)-test system-packages
	$(BIN)/python -m icecube_cloud.testing.stac_api up --dir $(STAC_API_DIR) --port $(STAC_API_PORT)

catalog-down:
	$(BIN)/python -m icecube_cloud.testing.stac_api down --dir $(STAC_API_DIR)

moto-up: $(STAMP)-test
	$(BIN)/python -m icecube_cloud.testing.moto up --port $(MOTO_PORT) --dir $(MOTO_DIR)

moto-down:
	$(BIN)/python -m icecube_cloud.testing.moto down --dir $(MOTO_DIR)

clean:
	rm -rf $(VENV) $(DEMO_DIR) $(DEMO_DIR)-cloud site .pytest_cache .mypy_cache .ruff_cache .hypothesis
