"""Typed reads the pipeline uses: prices, features, targets, folds, models, as polars frames."""

from __future__ import annotations

import datetime as dt
import os

import polars as pl

from forecast_core.data.features import feature_columns
from forecast_core.data.panel import assemble_panel, targets_wide
from forecast_core.evaluation.folds import Fold, folds_from_frame
from warehouse.db import WarehouseError
from warehouse.io import read_sql, read_table, table_exists

Path = str | os.PathLike[str] | None


def prices(path: Path, until: dt.date | None = None) -> pl.DataFrame:
    """raw_prices rows (all tickers) dated <= until, sorted by ticker and date."""
    where, params = ("date <= ?", [until]) if until else ("TRUE", [])
    return read_table("raw_prices", where, params, path, order_by="ticker, date")


def features(path: Path, until: dt.date | None = None) -> pl.DataFrame:
    if not table_exists("features", path):
        raise WarehouseError("the features table does not exist yet: materialize `features` first")
    where, params = ("date <= ?", [until]) if until else ("TRUE", [])
    return read_table("features", where, params, path, order_by="ticker, date")


def targets(path: Path, horizons: tuple[int, ...], until: dt.date | None = None) -> pl.DataFrame:
    """Wide targets (`target_h{h}`) for the configured horizons."""
    where, params = ("date <= ?", [until]) if until else ("TRUE", [])
    return targets_wide(read_table("targets", where, params, path), horizons)


def panel(
    path: Path, horizons: tuple[int, ...], until: dt.date | None = None
) -> tuple[pl.DataFrame, tuple[str, ...]]:
    """The modelling panel (features + targets + price) and its feature columns."""
    f = features(path, until)
    return assemble_panel(f, targets(path, horizons, until), prices(path, until)), feature_columns(f)


def folds(path: Path) -> list[Fold]:
    frame = read_table("folds", path=path)
    if frame.height == 0:
        raise WarehouseError("the folds table is empty: materialize `walk_forward_folds` first")
    return folds_from_frame(frame)


_MODEL_WITH_ARTIFACT = "SELECT m.*, a.artifact FROM models m JOIN model_artifacts a USING (model_version) "


def latest_model(path: Path, period: str) -> dict | None:
    """The newest `models` row for a retrain period (with its artifact), or None."""
    rows = read_sql(
        _MODEL_WITH_ARTIFACT + "WHERE m.period = ? ORDER BY m.trained_at DESC LIMIT 1", [period], path
    )
    return rows.row(0, named=True) if rows.height else None


def model(path: Path, model_version: str) -> dict | None:
    """The `models` row of `model_version` (with its artifact), or None."""
    rows = read_sql(_MODEL_WITH_ARTIFACT + "WHERE m.model_version = ?", [model_version], path)
    return rows.row(0, named=True) if rows.height else None
