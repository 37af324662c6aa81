# Two commands (README quick start). Both create .venv with the Python 3.11+ found as python3.
PYTHON ?= python3
VENV := .venv
export DAGSTER_HOME := $(CURDIR)

.PHONY: demo test lint ui bench

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip

## Install and run the whole pipeline on the embedded sample.
demo: $(VENV)/bin/python
	@echo "make demo: installing the package into $(VENV) (pip, quiet; the first time takes minutes) ..."
	$(VENV)/bin/pip install -q -e .
	$(VENV)/bin/python -m forecast_assets.demo

## Install (with the test extra) and run the test suite.
test: $(VENV)/bin/python
	$(VENV)/bin/pip install -q -e '.[dev]'
	$(VENV)/bin/pytest -n 2 --durations=15

## The linter and the format check (CI runs them before the tests).
lint: $(VENV)/bin/python
	$(VENV)/bin/pip install -q -e '.[dev]'
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## The Dagster UI and daemon (schedules, backfills) on http://127.0.0.1:3000
ui: $(VENV)/bin/python
	$(VENV)/bin/dagster dev -w workspace.yaml
