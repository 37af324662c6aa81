"""Synthetic multi-ticker price panels (the darts `timeseries_generation` idea, for our schema)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from forecast_core.columns import ADJ_CLOSE, CLOSE, DATE, HIGH, LOW, OPEN, SOURCE, TICKER, VOLUME
from forecast_core.data import calendar


def synthetic_prices(
    tickers: tuple[str, ...] = ("AAA", "BBB", "CCC"),
    start: dt.date = dt.date(2015, 1, 2),
    end: dt.date = dt.date(2019, 12, 31),
    seed: int = 0,
    ohlcv: bool = False,
    vol: float = 0.015,
) -> pl.DataFrame:
    """Geometric random walks with GARCH-like volatility clustering on the NYSE sessions.

    Returns the raw_prices schema (without ingested_at): ticker, date, open/high/low/close,
    adj_close, volume (null unless `ohlcv`), source="synthetic".
    """
    rng = np.random.default_rng(seed)
    days = calendar.sessions(start, end)
    n = len(days)
    frames = []
    for i, t in enumerate(tickers):
        sigma = np.empty(n)
        s = vol
        shocks = rng.standard_normal(n)
        for k in range(n):
            s = np.sqrt(0.05 * vol**2 + 0.90 * s**2 + 0.05 * (shocks[k - 1] * s) ** 2) if k else s
            sigma[k] = s
        r = 0.0002 + sigma * rng.standard_t(5, n) / np.sqrt(5 / 3)
        close = 50.0 * (i + 1) * np.exp(np.cumsum(r))
        cols = {TICKER: [t] * n, DATE: days, ADJ_CLOSE: close}
        if ohlcv:
            spread = np.abs(rng.standard_normal(n)) * sigma * close
            cols |= {
                OPEN: close * np.exp(rng.standard_normal(n) * sigma / 4),
                HIGH: close + spread,
                LOW: np.maximum(close - spread, close * 0.5),
                CLOSE: close,
                VOLUME: rng.integers(1_000_000, 5_000_000, n).astype(float),
            }
        frames.append(pl.DataFrame(cols))
    out = pl.concat(frames, how="diagonal")
    for c in (OPEN, HIGH, LOW, CLOSE, VOLUME):
        if c not in out.columns:
            out = out.with_columns(pl.lit(None, dtype=pl.Float64).alias(c))
    return out.with_columns(pl.lit("synthetic").alias(SOURCE)).select(
        TICKER, DATE, OPEN, HIGH, LOW, CLOSE, ADJ_CLOSE, VOLUME, SOURCE
    )
