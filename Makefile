# make reproduce   set up .venv if missing, then regenerate every table and figure (papermill)
# make test        set up .venv if missing, then run the tests, the notebooks (smoke) and the committed notebooks
# make test-slurm  install Debian's SLURM if missing, then sweep through a one-node SLURM cluster (as root)
# make lab         set up .venv with JupyterLab, then open the notebooks in it
# PRESET=auto|cpu|paper|smoke chooses the scale of `make reproduce` (auto: paper on CUDA, else cpu).
PYTHON ?= python3
TORCH ?= torch==2.14.1 torchvision==0.29.1
PRESET ?= auto
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup reproduce test test-slurm lab benchmark

setup: $(VENV)/.ready

$(VENV)/.ready: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

reproduce: setup
	$(BIN)/lpnb reproduce --preset $(PRESET)

# 1. the unit and end-to-end tests; 2. every notebook at the smoke preset on generated stand-in data, outputs
# not compared (nothing is written into the repository); 3. the committed notebooks as committed, outputs
# compared (they load the recorded runs and train nothing); 4. the linter
test: setup
	$(BIN)/python -m pytest -q tests
	SMOKE_TEST=1 $(BIN)/python -m pytest -q --nbval-lax notebooks
	$(BIN)/python -m pytest -q --nbval notebooks
	$(BIN)/ruff check .

# the `lpnb sweep --executor slurm` test against a real one-node SLURM cluster on this machine (root; Debian)
test-slurm: setup
	command -v slurmctld >/dev/null || (apt-get update -q && apt-get install -y -q slurmctld slurmd slurm-client munge)
	$(BIN)/python -m pytest -q -m slurm tests

lab: setup
	$(BIN)/pip install -q -e '.[notebooks]'
	$(BIN)/jupyter lab notebooks

benchmark: setup
	$(BIN)/python benchmarks/propagate_speed.py
