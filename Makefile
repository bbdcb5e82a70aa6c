# transferlab: `make demo` and `make test` are the whole quick start.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: venv demo test lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Torch is pinned here (this machine type serves that pair from local files); pyproject admits it.
$(STAMP): $(PY) pyproject.toml
	$(PIP) install -q "torch==2.14.1" "torchvision==0.29.1"
	$(PIP) install -q -e ".[text,dev]" "torch==2.14.1" "torchvision==0.29.1"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/transferlab rank builtin:fashion-mnist --zoo builtin:vision --out runs/demo

# The suite runs in parallel (pytest-xdist), one torch thread per worker: on 2 cores, 182 s against 305 s for one
# process with two threads (oversubscribed workers were slower than either). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= auto
test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q -n $(PYTEST_WORKERS)

# Performance claims in docs/benchmarks.md. The LogME comparison needs the reference checkout (thuml/LogME @ 56551ca)
# and numba: make bench LOGME_REF=/path/to/LogME
bench: $(STAMP)
	$(PY) benchmarks/bench_rank.py
	@if [ -n "$(LOGME_REF)" ]; then $(PIP) install -q numba && $(PY) benchmarks/bench_logme.py --reference-dir "$(LOGME_REF)"; \
	else echo "LogME comparison skipped: set LOGME_REF=/path/to/thuml/LogME"; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts

clean:
	rm -rf $(VENV) runs .pytest_cache
