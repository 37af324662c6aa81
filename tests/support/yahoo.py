"""A fake Yahoo Finance, and the stored warehouse the provider scenarios start from.

`yahoo_frame` builds frames shaped like `yf.download(group_by="column")`'s; `FakeYahoo` stands in for
`yfinance.download`, serving synthetic prices and injecting a fault (a `Corruption`) into its first
calls. The scenarios of tests/reliability ingest RUN through `raw_prices` on the tiny
configuration with a yfinance source (`defs_for`), each from a `fresh_copy` of the warehouse
the `seeded` fixture (tests/reliability/conftest.py) stores: every ticker from HISTORY_START to
SEED's end.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import polars as pl

from forecast_core.columns import ADJ_CLOSE, CLOSE, DATE, HIGH, LOW, OPEN, TICKER, VOLUME
from tests.support.config import TINY_CONFIG, with_overrides, write_config
from tests.support.pipeline import defs_on, materialize
from tests.support.synthetic import synthetic_prices

TICKERS = ("AAPL", "MSFT", "KO", "^GSPC")
HISTORY_START = dt.date(2022, 11, 1)
SEED = (dt.date(2022, 12, 5), dt.date(2022, 12, 9))
RUN = (dt.date(2022, 12, 12), dt.date(2022, 12, 16))
#: yfinance's price fields -> raw_prices columns.
FIELDS = {"Open": OPEN, "High": HIGH, "Low": LOW, "Close": CLOSE, "Adj Close": ADJ_CLOSE, "Volume": VOLUME}

Corruption = Callable[[pd.DataFrame, list[str]], pd.DataFrame]


def yahoo_frame(
    data: dict[str, dict[str, list[float]]],
    dates: list[str],
    tz: str | None = None,
    ticker_first: bool = False,
) -> pd.DataFrame:
    """Columns MultiIndex (Price, Ticker) sorted as `yf.download(group_by="column")` returns."""
    columns = sorted((f, t) for t, fields in data.items() for f in fields)
    frame = pd.DataFrame(
        {col: data[col[1]][col[0]] for col in columns},
        index=pd.DatetimeIndex(pd.to_datetime(dates), name="Date"),
    )
    frame.columns = pd.MultiIndex.from_tuples(columns, names=["Price", "Ticker"])
    if tz is not None:
        frame.index = frame.index.tz_localize(tz)
    if ticker_first:
        frame.columns = frame.columns.swaplevel(0, 1)
    return frame


def to_yahoo(prices: pl.DataFrame, tickers: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
    """What `yf.download(tickers, start, end, group_by="column")` returns: columns (Price, Ticker),
    one row per date in [start, end) (end exclusive, like Yahoo's)."""
    rows = prices.filter(pl.col(TICKER).is_in(tickers), pl.col(DATE) >= start, pl.col(DATE) < end)
    dates = sorted(set(rows[DATE].to_list()))
    if not dates:
        return pd.DataFrame()
    data = {
        t: {f: rows.filter(pl.col(TICKER) == t).sort(DATE)[c].to_list() for f, c in FIELDS.items()}
        for t in tickers
    }
    return yahoo_frame(data, [d.isoformat() for d in dates])


class FakeYahoo:
    """`yfinance.download` stand-in: serves `prices`; `fault` corrupts (or raises on) the first
    `times` calls (every call when None)."""

    def __init__(self, prices: pl.DataFrame, fault: Corruption | None = None, times: int | None = None):
        self.prices, self.fault, self.times = prices, fault, times
        self.calls: list[tuple[list[str], dt.date, dt.date]] = []

    def __call__(self, tickers: list[str], *, start: dt.date, end: dt.date, **_: Any) -> pd.DataFrame:
        self.calls.append((list(tickers), start, end))
        frame = to_yahoo(self.prices, list(tickers), start, end)
        if self.fault is not None and (self.times is None or len(self.calls) <= self.times):
            return self.fault(frame, list(tickers))
        return frame


def raises(exc: BaseException) -> Corruption:
    def fault(frame: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
        raise exc

    return fault


# --- the warehouse each scenario starts from ------------------------------------------------------


def truth(tickers: tuple[str, ...] = (*TICKERS, "PEP")) -> pl.DataFrame:
    """The source's prices: synthetic OHLCV on every session (adj_close a little below close)."""
    prices = synthetic_prices(tickers, HISTORY_START, dt.date(2022, 12, 30), seed=6, ohlcv=True)
    return prices.with_columns((pl.col(CLOSE) * 0.98).alias(ADJ_CLOSE))


def defs_for(directory: Path, add: tuple[str, ...] = ()) -> dg.Definitions:
    """The job's definitions on `directory`'s warehouse, with a yfinance source from HISTORY_START and
    `add` joining the universe."""
    config = with_overrides(
        TINY_CONFIG,
        {
            "universe": {"tickers": ["AAPL", "MSFT", "KO", *add], "exogenous": ["^GSPC"]},
            "source": {"kind": "yfinance", "start_date": HISTORY_START.isoformat()},
        },
    )
    return defs_on(directory / "w.duckdb", write_config(directory / "yf.toml", config))


def fresh_copy(seeded: Path, directory: Path) -> Path:
    target = directory / "w.duckdb"
    shutil.copy(seeded, target)  # a committed write leaves no WAL (the replica is published)
    return target


def ingest(defs: dg.Definitions, span: tuple[dt.date, dt.date]) -> dg.ExecuteInProcessResult:
    if span[0] == span[1]:
        return materialize(["raw_prices"], defs, partition_key=span[0].isoformat(), raise_on_error=False)
    return materialize(["raw_prices"], defs, start=span[0], end=span[1], raise_on_error=False)
