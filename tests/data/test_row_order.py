"""Row order: the (ticker, date) row key, and frames put in that order, against plain polars sorts."""

from __future__ import annotations

import datetime as dt

import polars as pl
from polars.testing import assert_frame_equal

from forecast_core.columns import DATE, TICKER
from forecast_core.data.row_order import ROW_KEY, in_row_order, row_key, sorted_by_ticker_date, ticker_enum


def test_row_key_orders_like_ticker_then_date_across_1970() -> None:
    days = [dt.date(1962, 7, 2), dt.date(1969, 12, 31), dt.date(1970, 1, 1), dt.date(2038, 1, 20)]
    frame = pl.DataFrame({TICKER: ["B"] * 4 + ["A"] * 4, DATE: days * 2}).sample(
        fraction=1.0, shuffle=True, seed=0
    )
    by_pair = frame.with_columns(row_key(ticker_enum(frame))).sort(TICKER, DATE)
    assert by_pair[ROW_KEY].is_sorted() and by_pair[ROW_KEY].n_unique() == by_pair.height == 8
    assert in_row_order(frame.with_columns(pl.lit("Z").alias(TICKER)), ticker_enum(frame)).height == 0


def test_in_row_order_sorts_drops_unknown_tickers_and_flags_the_key(shuffled_prices: pl.DataFrame) -> None:
    tickers = ticker_enum(shuffled_prices.filter(pl.col(TICKER) != "^MKT"))
    ordered = in_row_order(shuffled_prices, tickers)
    expected = shuffled_prices.filter(pl.col(TICKER) != "^MKT").sort(TICKER, DATE)
    assert_frame_equal(ordered.drop(ROW_KEY), expected)
    assert ordered[ROW_KEY].flags["SORTED_ASC"]
    assert_frame_equal(sorted_by_ticker_date(shuffled_prices), shuffled_prices.sort(TICKER, DATE))
    already = shuffled_prices.sort(TICKER, DATE)
    assert_frame_equal(sorted_by_ticker_date(already), already)
