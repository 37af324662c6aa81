# Two commands (README quick start). Both create .venv with the Python 3.11+ found as python3.
PYTHON ?= python3
VENV := .venv
# The Dagster instance: dagster.yaml here (SQLite under .dagster_home/), or with INSTANCE=postgres
# deploy/postgres/dagster.yaml, a running PostgreSQL server named by DAGSTER_PG_HOST, DAGSTER_PG_PORT,
# DAGSTER_PG_USER, DAGSTER_PG_PASSWORD and DAGSTER_PG_DB (docs/deployment.md), e.g.
# `make ui INSTANCE=postgres`.
INSTANCE ?= sqlite
ifeq ($(INSTANCE),postgres)
export DAGSTER_HOME := $(CURDIR)/deploy/postgres
INSTANCE_EXTRA := deploy
else
export DAGSTER_HOME := $(CURDIR)
INSTANCE_EXTRA :=
endif

.PHONY: demo test lint ui bench bookkeeping venv-ducklake test-ducklake

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

## The Dagster UI and daemon (schedules, backfills) on http://127.0.0.1:3000: dagster dev -w
## workspace.yaml, which Ctrl-C or SIGTERM stops within 15 s (forecast_assets/ui.py).
ui: $(VENV)/bin/python
	$(if $(INSTANCE_EXTRA),$(VENV)/bin/pip install -q -e '.[$(INSTANCE_EXTRA)]')
	exec $(VENV)/bin/python -m forecast_assets.ui

## Dagster's bookkeeping per partition on PostgreSQL against SQLite (docs/deployment.md).
bookkeeping: $(VENV)/bin/python
	$(VENV)/bin/pip install -q -e '.[dev]'
	$(VENV)/bin/python -m deploy.bookkeeping

# The warehouse on DuckLake needs DuckDB 1.5.5 (its extensions' wheels are built for it), while
# .venv runs DuckDB 2: a second environment with the `ducklake` extra (docs/deployment.md). It
# starts as a copy of .venv (seconds, where a fresh install takes minutes), then pip installs the
# extra into it, which swaps DuckDB and adds the extensions. Its console scripts still name .venv's
# interpreter, so it is always run as `.venv-ducklake/bin/python -m ...`.
DUCKLAKE_VENV := .venv-ducklake

$(DUCKLAKE_VENV)/.installed: pyproject.toml $(VENV)/bin/python
	$(VENV)/bin/pip install -q -e '.[dev]'
	rm -rf $(DUCKLAKE_VENV)
	cp -a $(VENV) $(DUCKLAKE_VENV)
	$(DUCKLAKE_VENV)/bin/python -m pip install -q -e '.[dev,ducklake]'
	$(DUCKLAKE_VENV)/bin/python -c "import duckdb; assert duckdb.__version__ == '1.5.5', duckdb.__version__"
	touch $@

## The DuckLake environment: the project with DuckDB 1.5.5 and the DuckLake, PostgreSQL and SQLite extensions.
venv-ducklake: $(DUCKLAKE_VENV)/.installed

## The DuckLake tests (the backend, concurrent writers and readers, crash trials), in that environment.
test-ducklake: venv-ducklake
	FORECAST_REQUIRE_DUCKLAKE=1 $(DUCKLAKE_VENV)/bin/python -m pytest -n 2 --durations=10 -k "lake or maintenance" \
		tests/warehouse/test_lake.py tests/warehouse/test_lake_concurrency.py tests/warehouse/test_maintenance.py \
		tests/reliability/test_crash_safety.py
