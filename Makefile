# The two commands: `make run` and `make test`. Everything else is a helper for them.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
MODEL  ?= smollm2-135m-instruct

.PHONY: run test install dev lint bench clean

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=python3 to use another)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: an unpinned torch pulls several GB of CUDA packages.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

run: install
	$(BIN)/llmos pull $(MODEL) --if-missing
	$(BIN)/llmos serve --model $(MODEL)

test: dev
	$(BIN)/python -m pytest -q

lint: dev
	$(BIN)/ruff check llmos tests benchmarks
	$(BIN)/ruff format --check llmos tests benchmarks
	$(BIN)/mypy llmos
	$(BIN)/lint-imports

bench: install
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf $(VENV) .pytest_cache
