# Everything runs inside .venv, created and installed on first use.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test lint demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# The CPU wheel first: an unpinned torch pulls gigabytes of CUDA packages.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[all]'
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) lint
	$(PY) -m pytest -q $(PYTEST_ARGS)

.PHONY: test-fast typecheck

# The fast tier: no model, no servers (tests/conftest.py marks tests that need them `slow`).
test-fast: $(STAMP) lint typecheck
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# mypy --strict over ingest/, flows/ and spiders/ ([tool.mypy] in pyproject.toml).
typecheck: $(STAMP)
	$(PY) -m mypy

demo: $(STAMP)
	$(PY) -m bench.demo

bench: $(STAMP)
	$(PY) -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .webvec .pytest_cache .ruff_cache
