"""`validate_prices`, the one place that decides a fetched frame is fit to write: schema, order,
and every kind of bad row named by ticker and date."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import polars as pl
import pytest

from forecast_core.columns import ADJ_CLOSE, CLOSE, DATE, SOURCE, TICKER, VOLUME
from forecast_core.errors import ConfigError, PriceDataError
from forecast_core.sources import (
    FETCH_SCHEMA,
    validate_prices,
)  # fmt: skip
from tests.support.sources import D1, D2, END, START, TODAY

# --- validate_prices ------------------------------------------------------------------------------


def good_frame() -> pl.DataFrame:
    return pl.DataFrame({TICKER: ["AAPL", "AAPL", "MSFT"], DATE: [D1, D2, D1], ADJ_CLOSE: [10.0, 11.0, 20.0]})


def check(frame: pl.DataFrame, tickers: tuple[str, ...] = ("AAPL", "MSFT")) -> pl.DataFrame:
    return validate_prices(frame, tickers, START, END, "test", today=TODAY)


def test_validate_normalises_schema_order_and_sorting() -> None:
    out = check(good_frame().reverse().with_columns(pl.col(DATE).cast(pl.Datetime)))
    assert out.schema == FETCH_SCHEMA
    assert out.get_column(TICKER).to_list() == ["AAPL", "AAPL", "MSFT"]
    assert out.get_column(DATE).to_list() == [D1, D2, D1]
    assert out.get_column(SOURCE).unique().to_list() == ["test"]
    assert out.get_column(CLOSE).null_count() == 3


@pytest.mark.parametrize(
    ("mutate", "pattern"),
    [
        (lambda f: f.drop(DATE), r"lack required column\(s\) date"),
        (lambda f: f.drop(ADJ_CLOSE), r"close or adj_close"),
        (
            lambda f: f.with_columns(
                pl.when(pl.col(TICKER) == "MSFT").then(None).otherwise(pl.col(DATE)).alias(DATE)
            ),
            r"null .*row 2 \(ticker=MSFT",
        ),
        (
            lambda f: f.with_columns(
                pl.lit(None, pl.Float64).alias(ADJ_CLOSE), pl.Series(CLOSE, [1.0, 1.0, None])
            ),
            r"neither close nor adj_close: MSFT 2024-01-02",
        ),
        (
            lambda f: f.with_columns(pl.Series(ADJ_CLOSE, [10.0, float("nan"), 20.0])),
            r"non-finite or non-positive adj_close: AAPL 2024-01-03 adj_close=nan",
        ),
        (
            lambda f: f.with_columns(pl.Series(VOLUME, [1.0, -1.0, 1.0])),
            r"negative or non-finite volume: AAPL 2024-01-03 volume=-1.0",
        ),
        (
            lambda f: f.with_columns(pl.Series(DATE, [D1, dt.date(2023, 12, 29), D1])),
            r"outside the requested range 2024-01-02\.\.2024-01-05: AAPL 2023-12-29",
        ),
        (lambda f: pl.concat([f, f.tail(1)]), r"duplicate \(ticker, date\) rows: MSFT 2024-01-02"),
        (lambda f: f.filter(pl.col(TICKER) == "AAPL"), r"MSFT came back empty for 2024-01-02\.\.2024-01-05"),
        (lambda f: f.clear(), r"no rows at all for AAPL, MSFT in 2024-01-02\.\.2024-01-05"),
        (lambda f: f.with_columns(pl.lit("'; DROP").alias(TICKER)), r"not requested: \"'; DROP\""),
        (lambda f: f.with_columns(pl.Series(ADJ_CLOSE, ["a", "b", "c"])), r"adj_close has type"),
    ],
    ids=[
        "no-date",
        "no-price-column",
        "null-date",
        "no-close",
        "nan",
        "neg-volume",
        "range",
        "duplicate",
        "empty-ticker",
        "empty-frame",
        "unrequested",
        "string-prices",
    ],
)
def test_validate_rejects(mutate: Callable[[pl.DataFrame], pl.DataFrame], pattern: str) -> None:
    with pytest.raises(PriceDataError, match=pattern):
        check(mutate(good_frame()))


def test_validate_rejects_future_dates() -> None:
    future = pl.DataFrame({TICKER: ["AAPL"], DATE: [D2], ADJ_CLOSE: [1.0]})
    with pytest.raises(PriceDataError, match=r"future dates \(after 2024-01-02\): AAPL 2024-01-03"):
        validate_prices(future, ["AAPL"], START, END, "test", today=D1)


def test_validate_caps_the_listing() -> None:
    days = [dt.date(2024, 1, d) for d in range(2, 17)]
    frame = pl.DataFrame({TICKER: ["AAPL"] * 15, DATE: days, ADJ_CLOSE: [-1.0] * 15})
    with pytest.raises(PriceDataError, match=r"AAPL 2024-01-11 adj_close=-1.0 and 5 more$"):
        validate_prices(frame, ["AAPL"], D1, days[-1], "test", today=TODAY)


def test_validate_rejects_bad_requested_tickers_and_ranges() -> None:
    with pytest.raises(ConfigError, match="DROP TABLE"):
        check(good_frame(), ("AAPL", "A'; DROP TABLE x;--"))
    with pytest.raises(ConfigError, match="start is after end"):
        validate_prices(good_frame(), ["AAPL"], END, START, "test")
