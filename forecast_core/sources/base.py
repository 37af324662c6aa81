"""Price sources behind one interface: the embedded sample, Yahoo Finance (yfinance) and files.

Every source's `fetch` returns the raw_prices schema without `ingested_at` (`FETCH_COLUMNS`, in that
order, sorted by ticker and date, only rows in [start, end]) after passing it through
`validate_prices`, the single place that decides a frame is fit to write. Bad data raises
`PriceDataError` naming the tickers and dates concerned and is never retried; a failure worth
retrying (connection error, timeout, rate limit) raises `TransientSourceError`. Requested tickers
are checked with `validate_ticker` (`ConfigError`) before anything is read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import polars as pl

from forecast_core.columns import (
    ADJ_CLOSE,
    CLOSE,
    DATE,
    HIGH,
    INGESTED_AT,
    LOW,
    OPEN,
    PRICE_COLUMNS,
    RAW_PRICE_COLUMNS,
    SOURCE,
    TICKER,
)  # fmt: skip
from forecast_core.config import validate_ticker
from forecast_core.errors import ConfigError

#: The columns `fetch` returns, in order: raw_prices without `ingested_at`.
FETCH_COLUMNS = tuple(c for c in RAW_PRICE_COLUMNS if c != INGESTED_AT)
FETCH_SCHEMA = pl.Schema(
    {TICKER: pl.String, DATE: pl.Date, **{c: pl.Float64 for c in PRICE_COLUMNS}, SOURCE: pl.String}
)

#: Dates are the exchange's local session dates; "today" (for the future-date check) is taken here.
EXCHANGE_TZ = "America/New_York"
SAMPLE_FILE = "sp500_20_adj_close_1990_2022.parquet"

PRICE_FIELDS = (OPEN, HIGH, LOW, CLOSE, ADJ_CLOSE)
LIST_LIMIT = 10


@runtime_checkable
class PriceSource(Protocol):
    """Daily prices for tickers over an inclusive date range, in the `FETCH_COLUMNS` schema."""

    name: str

    def fetch(self, tickers: Sequence[str], start: dt.date, end: dt.date) -> pl.DataFrame: ...


# --- messages -----------------------------------------------------------------------------------


def listing(items: Sequence[object], limit: int = LIST_LIMIT) -> str:
    """`A, B, C and 7 more`: at most `limit` items."""
    shown = ", ".join(str(i) for i in items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def row_listing(frame: pl.DataFrame, *values: str) -> str:
    """`AAPL 2020-01-02 close=-1.0, ...` for the first rows of `frame`, with `values` columns."""
    items = [
        " ".join([f"{row[TICKER]} {row[DATE]}", *(f"{c}={row[c]}" for c in values)])
        for row in frame.head(LIST_LIMIT).iter_rows(named=True)
    ]
    more = frame.height - len(items)
    return ", ".join(items) + (f" and {more} more" if more > 0 else "")


def requested_tickers(tickers: Sequence[str], start: dt.date, end: dt.date) -> list[str]:
    """Validated, de-duplicated tickers; `ConfigError` for a bad ticker or an empty range."""
    if isinstance(tickers, str):
        raise ConfigError(f"tickers must be a sequence of tickers, not the string {tickers!r}")
    requested = [validate_ticker(t) for t in dict.fromkeys(tickers)]
    if not requested:
        raise ConfigError("no tickers requested")
    if start > end:
        raise ConfigError(f"invalid date range {start}..{end}: start is after end")
    return requested


def exchange_today() -> dt.date:
    """Today's date on the exchange (America/New_York)."""
    return dt.datetime.now(ZoneInfo(EXCHANGE_TZ)).date()
