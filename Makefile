# The two commands of the README: `make demo` and `make test`. Both create .venv with Python 3.11,
# install torch==2.13.0 first (the CPU wheel; a bare `torch` would pull a multi-GB CUDA build), then pushgen.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
USERS ?= 20
OUT ?= out/demo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup demo test lint clean

$(BIN)/pushgen: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,service,multilingual]'
	touch $@

setup: $(BIN)/pushgen

demo: setup
	$(BIN)/pushgen demo --users $(USERS) --out $(OUT)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check generator workers scripts tests
	$(BIN)/lint-imports  # the layers and import rules in pyproject.toml

clean:
	rm -rf $(VENV) out
