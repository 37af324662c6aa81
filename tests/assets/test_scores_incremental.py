"""forecast_scores is incremental and writes what a full rebuild would, through the real assets.

A `file` source is ingested up to 2022-12-02, December's first forecasts are made and scored (a
full rebuild: nothing says what was scored yet). Then, one step at a time, each followed by
`forecast_scores` and compared with every score rebuilt from all forecasts and all prices
(`score_forecasts`, `scored_at` aside): two more sessions' prices and forecasts (forecasts mature);
AAPL's 2:1 split restates its whole history (a price vintage rewrites it: every AAPL score is
redone, no other); the first sessions' forecasts are made again; one session's forecasts are
removed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecast_core.columns import ADJ_CLOSE, DATE, TICKER
from forecast_core.config import load_config
from forecast_core.serving.forecasts import score_forecasts
from tests.support.pipeline import file_source_job, materialize, table
from tests.support.synthetic import synthetic_prices
from warehouse import read_table, reads, transaction

pytestmark = pytest.mark.slow

TICKERS = ("AAPL", "MSFT", "KO", "^GSPC")
HISTORY_START = dt.date(2018, 1, 2)
FIRST, SECOND, SPLIT, LAST = (
    dt.date(2022, 12, 1),
    dt.date(2022, 12, 2),
    dt.date(2022, 12, 7),
    dt.date(2022, 12, 9),
)
KEY = ["as_of_date", "ticker", "horizon", "model_version"]


def source_file(path: Path, until: dt.date, restated: bool = False) -> None:
    """Synthetic adjusted closes 2018..`until`; `restated`: after AAPL's 2:1 split on SPLIT (every
    AAPL close halved, as the source then delivers them)."""
    prices = synthetic_prices(TICKERS, HISTORY_START, LAST).select(TICKER, DATE, ADJ_CLOSE)
    if restated:
        prices = prices.with_columns(
            pl.when(pl.col(TICKER) == "AAPL").then(pl.col(ADJ_CLOSE) / 2).otherwise(pl.col(ADJ_CLOSE))
        )
    prices.filter(pl.col(DATE) <= until).write_csv(path)


def full_rebuild(warehouse: Path, quantiles) -> pl.DataFrame:
    """Every score from every forecast and every price, as the asset computed them before."""
    forecasts = read_table("forecasts", path=warehouse)
    return score_forecasts(forecasts, reads.prices(warehouse), quantiles, dt.datetime.now(dt.UTC))


def assert_scores_are_a_full_rebuild(warehouse: Path, quantiles) -> pl.DataFrame:
    stored = table(warehouse, "SELECT * FROM forecast_scores")
    assert_frame_equal(
        stored.drop("scored_at").sort(KEY),
        full_rebuild(warehouse, quantiles).drop("scored_at").sort(KEY),
        check_exact=True,
    )
    return stored


def scored(result) -> dict:
    metadata = result.asset_materializations_for_node("forecast_scores")[-1].metadata
    return {k: metadata[k].value for k in ("mode", "rows_written", "scored_rows", "tickers_rewritten")}


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("scores")
    csv, config_file, warehouse, defs = file_source_job(directory, HISTORY_START)
    source_file(csv, SECOND)
    materialize(["raw_prices"], defs, start=dt.date(2022, 11, 1), end=SECOND)
    materialize(["features"], defs)
    materialize(["lstm_model"], defs, partition_key=FIRST.isoformat())
    materialize(["daily_forecasts"], defs, start=FIRST, end=SECOND, checks=())
    return warehouse, defs, csv, load_config(config_file)


def test_the_first_scoring_is_a_full_rebuild(nights):
    warehouse, defs, _, cfg = nights
    result = materialize(["forecast_scores"], defs)
    assert scored(result)["mode"] == "full"
    stored = assert_scores_are_a_full_rebuild(warehouse, cfg.quantiles)
    assert stored.height == scored(result)["rows_written"] > 0
    state = table(warehouse, "SELECT * FROM forecast_scores_state")
    assert state.height == 1 and state["prices_vintage"][0] == 1


def test_a_night_scores_only_the_forecasts_that_matured(nights):
    warehouse, defs, csv, cfg = nights
    before = table(warehouse, "SELECT * FROM forecast_scores")
    source_file(csv, dt.date(2022, 12, 6))
    materialize(["raw_prices"], defs, start=dt.date(2022, 12, 5), end=dt.date(2022, 12, 6))
    materialize(["features"], defs)
    materialize(["daily_forecasts"], defs, start=dt.date(2022, 12, 5), end=dt.date(2022, 12, 6), checks=())
    result = materialize(["forecast_scores"], defs)
    meta = scored(result)
    stored = assert_scores_are_a_full_rebuild(warehouse, cfg.quantiles)
    new = stored.join(before.select(KEY), on=KEY, how="anti")
    assert meta["mode"] == "incremental" and meta["tickers_rewritten"] == 0
    assert meta["rows_written"] == new.height > 0
    # The scores already there were kept as they were (not rewritten).
    kept = stored.join(before.select(KEY), on=KEY, how="semi").sort(KEY)
    assert_frame_equal(kept, before.sort(KEY), check_exact=True)
    assert set(new["target_date"]) <= {dt.date(2022, 12, 5), dt.date(2022, 12, 6)}


def test_a_restatement_rescores_the_rewritten_ticker(nights):
    warehouse, defs, csv, cfg = nights
    before = table(warehouse, "SELECT * FROM forecast_scores")
    source_file(csv, LAST, restated=True)
    materialize(["raw_prices"], defs, start=HISTORY_START, end=LAST)
    materialize(["features"], defs)
    materialize(["daily_forecasts"], defs, start=SPLIT, end=LAST, checks=())
    assert table(warehouse, "SELECT tickers_changed FROM price_vintages ORDER BY vintage DESC LIMIT 1")[
        "tickers_changed"
    ].to_list() == [["AAPL"]]
    result = materialize(["forecast_scores"], defs)
    meta = scored(result)
    stored = assert_scores_are_a_full_rebuild(warehouse, cfg.quantiles)
    assert meta["mode"] == "incremental" and meta["tickers_rewritten"] == 1
    # AAPL's scores were redone on the restated prices; the others' stayed as they were.
    others = stored.filter(pl.col(TICKER) != "AAPL").join(before.select(KEY), on=KEY, how="semi")
    assert_frame_equal(others.sort(KEY), before.filter(pl.col(TICKER) != "AAPL").sort(KEY), check_exact=True)
    aapl = stored.filter(pl.col(TICKER) == "AAPL").join(before, on=KEY, suffix="_before")
    assert aapl.height and (aapl["actual_close"] == aapl["actual_close_before"] / 2).all()


def test_forecasts_made_again_or_removed_are_rescored(nights):
    warehouse, defs, _, cfg = nights
    materialize(["daily_forecasts"], defs, start=FIRST, end=SECOND, checks=())
    result = materialize(["forecast_scores"], defs)
    assert scored(result)["mode"] == "incremental" and scored(result)["rows_written"] > 0
    assert_scores_are_a_full_rebuild(warehouse, cfg.quantiles)

    none = table(warehouse, "SELECT * FROM forecasts LIMIT 0")
    with transaction(warehouse) as w:
        w.replace("forecasts", none, "as_of_date = ?", [FIRST])
    result = materialize(["forecast_scores"], defs)
    stored = assert_scores_are_a_full_rebuild(warehouse, cfg.quantiles)
    assert FIRST not in set(stored["as_of_date"]) and scored(result)["rows_written"] == 0
