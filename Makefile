# Two commands: `make run` and `make test`. Everything else is set up on demand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
export HOST PORT

.PHONY: run test lint typecheck pytest browser-test system-deps migrate bench clean help

help:
	@echo "make run   - set up and start the server on http://$(HOST):$(PORT)/ (SQLite)"
	@echo "make test  - set up and run every check and test"
	@echo "make bench - run the benchmark harness (see docs/benchmarks.md)"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/python -m app serve

migrate: $(VENV)/.installed-run
	$(BIN)/python -m app migrate

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy app tests bench

system-deps:
	@bash scripts/system-deps.sh

pytest: $(VENV)/.installed-dev system-deps
	$(BIN)/pytest

# Browser tests run as their own pytest pass (Playwright's event loop must not share
# a process with the pytest-asyncio tests).
browser-test: $(VENV)/.installed-dev system-deps
	$(BIN)/pytest tests/browser -p no:asyncio -p no:cacheprovider -W ignore::pytest.PytestConfigWarning

test: lint typecheck pytest browser-test

# Benchmark harness: the app beside a minimal FastAPI broadcast floor (docs/benchmarks.md).
# BENCH_FULL=1 runs the whole matrix; BENCH_ARGS passes options to python -m bench.
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
