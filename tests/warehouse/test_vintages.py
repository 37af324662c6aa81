"""What a price vintage records about the history it rewrote (`warehouse.vintages`)."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl

from forecast_core.columns import ADJ_CLOSE, DATE, INGESTED_AT, TICKER
from tests.support.synthetic import synthetic_prices
from warehouse import transaction

NOW = dt.datetime(2024, 1, 10, tzinfo=dt.UTC)
WHERE = "date >= ? AND list_contains(?::VARCHAR[], ticker)"


def _store(path, frame: pl.DataFrame, since: dt.date, tickers: list[str]):
    stamped = frame.with_columns(pl.lit(NOW, pl.Datetime("us", "UTC")).alias(INGESTED_AT))
    with transaction(path) as w:
        return w.store_prices(stamped, WHERE, [since, tickers], "test", NOW)


def test_a_vintage_that_rewrites_and_removes_rows_of_one_ticker_records_both(tmp_path):
    """One ingest corrects AAA's close of a session and drops its last session: the vintage counts
    both, and its revision names the corrected close's log change (the removed row has none)."""
    path = tmp_path / "w.duckdb"
    prices = synthetic_prices(("AAA", "BBB"), dt.date(2024, 1, 2), dt.date(2024, 1, 9), seed=1)
    _store(path, prices, dt.date(2024, 1, 2), ["AAA", "BBB"])
    days = prices[DATE].unique().sort().to_list()
    aaa = prices.filter(pl.col(TICKER) == "AAA", pl.col(DATE) >= days[-2], pl.col(DATE) < days[-1])
    change = _store(path, aaa.with_columns(pl.col(ADJ_CLOSE) * 1.05), days[-2], ["AAA"])
    assert (change.rows_changed, change.rows_removed, change.rows_inserted) == (1, 1, 0)
    revision = change.revisions.row(0, named=True)
    assert revision[TICKER] == "AAA" and revision["sessions"] == 2
    assert (revision["first_date"], revision["last_date"]) == (days[-2], days[-1])
    assert math.isclose(revision["largest_log_change"], math.log(1.05), rel_tol=1e-12)
    only_removed = _store(path, aaa.head(0), days[-2], ["AAA"])
    assert only_removed.rows_removed == 1 and only_removed.revisions["largest_log_change"].to_list() == [None]
