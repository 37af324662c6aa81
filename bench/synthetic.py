"""Synthetic universes for the scaling items: tickers made by block bootstrap of the sample.

Each synthetic ticker draws one of the sample's 20 stocks and strings together random blocks of
`BLOCK` consecutive daily log returns of that stock (from anywhere in its 1990-2022 history),
which keeps volatility clustering within blocks, then compounds them into an adjusted close on
the last `years` of the sample's NYSE sessions. The exogenous `^GSPC` is the real index.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import polars as pl

from forecast_core.columns import ADJ_CLOSE, CLOSE, DATE, HIGH, LOW, OPEN, SOURCE, TICKER, VOLUME
from forecast_core.config import ForecastConfig, UniverseConfig
from forecast_core.sources import SampleSource

BLOCK = 20
SESSIONS_PER_YEAR = 252


def ticker_names(n: int) -> tuple[str, ...]:
    return tuple(f"S{i:04d}" for i in range(n))


def synthetic_sessions(n: int) -> list[dt.date]:
    """The last `n` sessions of the sample: the dates of every synthetic ticker."""
    source = SampleSource()
    stock = next(t for t in source.tickers() if not t.startswith("^"))
    return source.fetch([stock], dt.date(1990, 1, 2), source.last_date())[DATE].to_list()[-n:]


def synthetic_prices(n_tickers: int, years: int = 20, seed: int = 0) -> pl.DataFrame:
    """raw_prices-shaped frame: `n_tickers` bootstrapped tickers plus the real `^GSPC`."""
    source = SampleSource()
    last = source.last_date()
    sample = source.fetch(source.tickers(), dt.date(1990, 1, 2), last)
    stocks = [t for t in source.tickers() if not t.startswith("^")]
    sessions = synthetic_sessions(years * SESSIONS_PER_YEAR)
    returns = {t: np.diff(np.log(sample.filter(pl.col(TICKER) == t)[ADJ_CLOSE].to_numpy())) for t in stocks}
    rng = np.random.default_rng(seed)
    n, blocks = len(sessions), -(-len(sessions) // BLOCK)
    names = ticker_names(n_tickers)
    closes = np.empty((n_tickers, n))
    for i in range(n_tickers):
        r = returns[stocks[rng.integers(len(stocks))]]
        starts = rng.integers(0, len(r) - BLOCK, blocks)
        path = np.concatenate([r[s : s + BLOCK] for s in starts])[:n]
        closes[i] = 50.0 * np.exp(np.cumsum(path))
    frame = pl.DataFrame(
        {TICKER: np.repeat(names, n), DATE: sessions * n_tickers, ADJ_CLOSE: closes.round(4).ravel()}
    )
    index = sample.filter((pl.col(TICKER) == "^GSPC") & (pl.col(DATE) >= sessions[0]))
    frame = pl.concat([frame, index.select(TICKER, DATE, ADJ_CLOSE)])
    return (
        frame.with_columns(
            *[pl.lit(None, pl.Float64).alias(c) for c in (OPEN, HIGH, LOW, CLOSE, VOLUME)],
            pl.lit("synthetic").alias(SOURCE),
        )
        .select(TICKER, DATE, OPEN, HIGH, LOW, CLOSE, ADJ_CLOSE, VOLUME, SOURCE)
        .sort(TICKER, DATE)
    )


def config_for(n_tickers: int) -> ForecastConfig:
    """The default configuration over a synthetic universe of `n_tickers`."""
    cfg = ForecastConfig()
    universe = UniverseConfig(tickers=ticker_names(n_tickers), exogenous=cfg.universe.exogenous)
    return dataclasses.replace(cfg, universe=universe)
