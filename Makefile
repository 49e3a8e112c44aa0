# One-command entry points. Every target creates/reuses .venv and installs the pinned stack itself.
# TORCH_INDEX=URL installs torch and torchvision from that index first, e.g. the CPU-only wheels (no CUDA libraries):
#   make venv TORCH_INDEX=https://download.pytorch.org/whl/cpu
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_INDEX ?=
export COFEDMID_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)

.PHONY: venv demo test test-all docs lab bench gpu-check export clean-nbs

$(STAMP): settings.ini setup.py constraints.txt
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install -q -c constraints.txt torch torchvision --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev,flower]"
	@touch $(STAMP)

venv: $(STAMP)

## Run the quick demo experiment on real CIFAR-10
demo: $(STAMP)
	$(BIN)/cofedmid run --preset quick

## Run the whole default test suite (what CI runs)
test: $(STAMP)
	$(BIN)/python scripts/check_sync.py
	$(BIN)/python -m pytest -q -rs tests

## Also run the slow notebook cells and slow tests
test-all: $(STAMP)
	$(BIN)/python -m pytest -q -rs tests --runslow

## Render the documentation site into docs/
docs: $(STAMP)
	$(BIN)/python scripts/build_docs.py

## JupyterLab on the notebooks
lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=nbs $(if $(filter 0,$(shell id -u)),--allow-root,)

bench: $(STAMP)
	$(BIN)/python -m benchmarks

## GPU readiness: cuda-flagged cells + two rounds of the paper preset on a CUDA machine (exits 0 without CUDA)
gpu-check: $(STAMP)
	$(BIN)/python -m benchmarks --gpu

export: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean
