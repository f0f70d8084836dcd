# make reproduce   set up .venv if missing, then regenerate every table and figure (papermill)
# make test        set up .venv if missing, then run the tests and the notebooks (smoke preset)
# PRESET=auto|cpu|paper|smoke chooses the scale of `make reproduce` (auto: paper on CUDA, else cpu).
PYTHON ?= python3
TORCH ?= torch==2.14.1 torchvision==0.29.1
PRESET ?= auto
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup reproduce test benchmark clean-smoke

setup: $(VENV)/.ready

$(VENV)/.ready: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

reproduce: setup
	$(BIN)/lpnb reproduce --preset $(PRESET)

test: setup
	SMOKE_TEST=1 LPNB_SMOKE_DIR=$$(mktemp -d) $(BIN)/python -m pytest -q tests --nbval-lax notebooks

benchmark: setup
	$(BIN)/python benchmarks/propagate_speed.py
