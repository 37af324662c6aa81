"""Fixtures shared across the test folders: a temporary warehouse, the tiny pipeline configuration
(`tests.support.config`) and the job's definitions on both (`build_defs`), the small synthetic panel
the model tests train on (`tests.support.small_lstm`), and the whole pipeline materialized on the
tiny configuration (`tests.support.pipeline`).

Module-scoped fixtures (which cannot use the function-scoped `tmp_path`) build their files with
`write_config` and `TINY_CONFIG`.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from forecast_core.evaluation.folds import Fold
from forecast_core.models.forecaster import ForecastTask
from tests.support.config import TINY_CONFIG, write_config
from tests.support.pipeline import Pipeline, defs_on, run_pipeline
from tests.support.small_lstm import small_setup


@pytest.fixture
def warehouse_path(tmp_path: Path) -> Path:
    """A warehouse file that does not exist yet (the first write creates it)."""
    return tmp_path / "w.duckdb"


@pytest.fixture
def tiny_config_file(tmp_path: Path) -> Path:
    """`TINY_CONFIG` as a TOML file of overrides."""
    return write_config(tmp_path / "tiny.toml", TINY_CONFIG)


@pytest.fixture
def defs(warehouse_path: Path, tiny_config_file: Path) -> dg.Definitions:
    """The job's definitions on the temporary warehouse and the tiny configuration (`build_defs`)."""
    return defs_on(warehouse_path, tiny_config_file)


@pytest.fixture(scope="module")
def setup() -> tuple[pl.DataFrame, ForecastTask, list[Fold]]:
    """The small synthetic panel, its task and walk-forward folds (`small_setup()`), per module."""
    return small_setup()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """The whole pipeline materialized on the tiny configuration, per module (see
    `tests.support.pipeline.run_pipeline`)."""
    return run_pipeline(tmp_path_factory.mktemp("pipeline"))
