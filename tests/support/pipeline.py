"""The job's assets materialized in process, and the pipeline the end-to-end tests share.

`run_pipeline` materializes, in order, on the tiny configuration (three tickers of the embedded
sample and ^GSPC, history from 2018) with a generous promotion tolerance (so that the LSTM serves
December): raw_prices for 2022-10-03..2022-12-28 with the price checks (the tickers are new, so
their history from 2018 comes in the same run), features, walk_forward_folds, fold_evaluation,
lstm_model for December 2022, daily_forecasts for every December session up to the sample's last
(2022-12-28), forecast_scores, strategy_backtest and the last session's forecast_explanations.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from forecast_assets.checks import PRICE_CHECKS
from forecast_assets.definitions import build_defs
from forecast_core.config import ForecastConfig, load_config
from forecast_core.data import calendar
from tests.support.config import TINY_CONFIG, with_overrides, write_config
from warehouse import read_sql

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
TICKERS = ("AAPL", "MSFT", "KO")
HORIZONS = (1, 5)
PRICES_START, LAST_SESSION = dt.date(2022, 10, 3), dt.date(2022, 12, 28)
PERIOD_START = dt.date(2022, 12, 1)
DECEMBER = calendar.sessions(PERIOD_START, LAST_SESSION)


def defs_on(warehouse: Path, config_file: Path) -> dg.Definitions:
    """The job's definitions on this warehouse file and configuration file (`build_defs`): the
    partitions, the schedules and the data all come from `config_file`."""
    return build_defs(str(config_file), str(warehouse))


def file_source_job(directory: Path, history_start: dt.date) -> tuple[Path, Path, Path, dg.Definitions]:
    """`TINY_CONFIG` reading `directory/prices.csv` (the file source, from `history_start`) with
    the LSTM always served (`promotion_tolerance = 10`): (csv, config file, warehouse, defs)."""
    csv = directory / "prices.csv"
    config = with_overrides(
        TINY_CONFIG,
        {
            "source": {"kind": "file", "path": str(csv), "start_date": history_start.isoformat()},
            "promotion_tolerance": 10.0,
        },
    )
    config_file = write_config(directory / "file.toml", config)
    warehouse = directory / "w.duckdb"
    return csv, config_file, warehouse, defs_on(warehouse, config_file)


def materialize(
    selection: list[str] | dg.AssetSelection,
    defs: dg.Definitions,
    *,
    checks: tuple = tuple(PRICE_CHECKS),
    start: dt.date | None = None,
    end: dt.date | None = None,
    partition_key: str | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """Run the selected assets of `defs` (with `checks`, the price checks unless told) in process, on
    its resources; `start`/`end` make a range run."""
    tags = {RANGE_START: start.isoformat(), RANGE_END: end.isoformat()} if start and end else None
    return dg.materialize(
        [*defs.assets, *checks],
        selection=selection,
        resources=defs.resources,
        tags=tags,
        partition_key=partition_key,
        raise_on_error=raise_on_error,
    )


def table(path: Path, sql: str, params: list | None = None) -> pl.DataFrame:
    return read_sql(sql, params or [], path=path)


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@dataclasses.dataclass
class Pipeline:
    directory: Path
    warehouse: Path
    cfg: ForecastConfig
    defs: dg.Definitions
    results: dict[str, dg.ExecuteInProcessResult]


def checks_passed(result: dg.ExecuteInProcessResult) -> bool:
    """Every asset check of the run passed, or said it evaluated nothing (a warning with
    `evaluated: False`, e.g. `history_matches_source` on a first load)."""

    def ok(e) -> bool:
        evaluated = e.metadata.get("evaluated")
        return e.passed or (evaluated is not None and evaluated.value is False)

    return all(ok(e) for e in result.get_asset_check_evaluations())


def run_pipeline(directory: Path) -> Pipeline:
    """Every asset materialized in `directory` (its warehouse and configuration file), one run each."""
    config_file = write_config(
        directory / "tiny.toml", with_overrides(TINY_CONFIG, {"promotion_tolerance": 10.0})
    )
    warehouse = directory / "w.duckdb"
    defs = defs_on(warehouse, config_file)
    results = {
        "raw_prices": materialize(["raw_prices"], defs, start=PRICES_START, end=LAST_SESSION),
        "features": materialize(["features"], defs),
        "walk_forward_folds": materialize(["walk_forward_folds"], defs),
        "fold_evaluation": materialize(["fold_evaluation"], defs),
        "lstm_model": materialize(["lstm_model"], defs, partition_key=PERIOD_START.isoformat()),
        "daily_forecasts": materialize(["daily_forecasts"], defs, start=DECEMBER[0], end=DECEMBER[-1]),
        "forecast_scores": materialize(["forecast_scores"], defs),
        "strategy_backtest": materialize(["strategy_backtest"], defs),
        "forecast_explanations": materialize(
            ["forecast_explanations"], defs, start=DECEMBER[-1], end=DECEMBER[-1]
        ),
    }
    return Pipeline(directory, warehouse, load_config(config_file), defs, results)
