# Two commands for a fresh machine that has Python 3.11, make and bash:
#   make demo   install, then start the gateway on 127.0.0.1:8080 with the demo endpoint
#   make test   install, then run the checks and the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test check install

$(BIN)/coldbrew: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/coldbrew

demo: install
	$(BIN)/coldbrew serve --demo

check: install
	$(BIN)/ruff check gateway workers tests loadtests
	$(BIN)/ruff format --check gateway workers tests loadtests
	$(BIN)/mypy

test: check
	$(BIN)/pytest
