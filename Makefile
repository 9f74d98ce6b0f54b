# perfml — two commands do all the set-up on a fresh machine with Python 3.11:
#   make demo   create .venv, install perfml, run the demo on the embedded default
#   make test   install the dev extras, provision the test services, run every check and test
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
CONSTRAINTS := constraints.txt

.PHONY: demo test lint typecheck unit services bench-quick lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(PIP) install -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -c $(CONSTRAINTS) -e '.[dev,postgres,oci]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/perfml demo

services:
	scripts/provision-test-services

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

test: $(VENV)/.installed-dev services lint typecheck
	$(BIN)/pytest

bench-quick: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/featurestore.py --quick

# The tests exercise the PostgreSQL and OCI integrations, so the dev install includes them.
# Re-pin every dependency (core, every extra and dev) after changing pyproject.toml, resolved
# together in a scratch environment so that any combination of extras installs consistently.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip --disable-pip-version-check -q install \
		-e '.[dev,postgres,oci,kubeflow,mlserver]'
	.venv-lock/bin/python -m pip freeze --exclude-editable > $(CONSTRAINTS)
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .perfml .pytest_cache .mypy_cache .ruff_cache
