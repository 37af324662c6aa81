"""Features computed in calendar blocks, so that a nightly run recomputes one block, not the history.

A feature at t is a function of the ticker's prices from where its computation starts up to t:
rolling means and deviations accumulate online, and the exponentially weighted ones (vol_ewma,
RSI, MACD) carry their start forever (weight (1 - alpha)^n after n sessions). So a computation
started later is not bit-identical to one started at the first price. Blocks fix the start:

    years   ... 2015 2016 2017 | 2018 2019 | 2020 2021 | ...
    block 2018:  w    w    w   |  o    o   |
    block 2020:       w    w   |  w    o   |  o    o   |   (warm-up 2017..2019, output 2020..2021)

Block `Y` (Y a multiple of BLOCK_YEARS) outputs the sessions of years Y .. Y+1 and is computed
from the prices of years Y-3 .. Y+1 (`w`: warm-up, computed and dropped; `o`: output). Its start
is a fixed date, so the features of a block are the same whenever they are computed, from the
whole history or from that block alone: a nightly run recomputes the block of its new session
(3 to 5 years of prices per ticker) and gets exactly what a full recompute would store.

Warm-up, 3 calendar years (at least 752 NYSE sessions since 1988): the slowest decay is vol_ewma's
lambda = 0.94, 0.94^752 = 6.2e-21 (RSI (13/14)^752 = 6e-25, MACD's slow span (25/27)^752 =
7e-26), so a block's values equal the unblocked computation's to well under double rounding
(1e-16 relative) and every rolling window (at most 200 sessions) is full. Block size, 2 years:
a full recompute computes each session 2.5 times (warm-up + output, chunked by ticker) while a
nightly run reads 3 to 5 years of 20; 4-year blocks with a 4-year warm-up (the layout until
2026-12) computed each session twice for a nightly read of 4 to 8 years, 1-year blocks would
compute it 4 times for 3 to 4.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from forecast_core.columns import DATE, TICKER
from forecast_core.config import ForecastConfig
from forecast_core.data.features import Inputs, build_features

#: Calendar years per block; blocks start on 1 January of years divisible by it.
BLOCK_YEARS = 2
#: Calendar years of prices before a block's start that its computation starts from.
WARMUP_YEARS = 3


def block_of(day: dt.date) -> int:
    """The first year of the block holding `day`."""
    return day.year - day.year % BLOCK_YEARS


def block_start(block: int) -> dt.date:
    return dt.date(block, 1, 1)


def warmup_start(block: int) -> dt.date:
    """The first date of the prices block `block` is computed from."""
    return dt.date(block - WARMUP_YEARS, 1, 1)


def prices_needed_from(since: dt.date | None) -> dt.date | None:
    """The first price date that features from `since` on need (None: the whole history)."""
    return None if since is None else warmup_start(block_of(since))


def blocked_features(
    prices: pl.DataFrame, cfg: ForecastConfig, inputs: Inputs, since: dt.date | None = None
) -> pl.DataFrame:
    """`build_features` for the sessions from `since` on (None: all), computed block by block.

    `prices` must hold every price from `prices_needed_from(since)` on for the tickers concerned
    (and the exogenous tickers); earlier rows are ignored. Rows are in (ticker, date) order.
    """
    if prices.is_empty():
        return build_features(prices, cfg, inputs)
    first = prices[DATE].min() if since is None else max(since, prices[DATE].min())
    last = prices[DATE].max()
    parts = []
    for block in range(block_of(first), block_of(last) + 1, BLOCK_YEARS):
        lo, hi = warmup_start(block), block_start(block + BLOCK_YEARS)
        window = prices.filter((pl.col(DATE) >= lo) & (pl.col(DATE) < hi))
        if window.is_empty():
            continue
        out_from = max(block_start(block), first)
        parts.append(build_features(window, cfg, inputs).filter(pl.col(DATE) >= out_from))
    if not parts:
        return build_features(prices.clear(), cfg, inputs)
    return pl.concat(parts).sort(TICKER, DATE, maintain_order=True)


def targets_from(prices: pl.DataFrame, since: dt.date, sessions: int) -> dt.date:
    """The earliest date whose target a price from `since` on can change: per ticker, the date
    `sessions` rows (the longest horizon) before its first row dated >= since; the minimum.

    `prices` in (ticker, date) order."""
    positions = prices.select(TICKER, DATE, pl.int_range(pl.len()).over(TICKER).alias("_i")).with_columns(
        (pl.col("_i").filter(pl.col(DATE) >= since).min().over(TICKER) - sessions).clip(0).alias("_from")
    )
    hit = positions.filter(pl.col("_i") == pl.col("_from"))
    return since if hit.is_empty() else min(hit[DATE].min(), since)
