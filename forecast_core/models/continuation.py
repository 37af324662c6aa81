"""Forecasting from a stored recursion state, so that a night reads each ticker's last rows
instead of its whole history.

The volatility models (`ewma_vol`, `gjr_garch`, `vol_blend`) and the LSTM's prior and inputs are
recursions over each ticker's rows: their value at a row depends on the whole history before it
only through a few numbers (`volatility.CARRY_COLUMNS`, the LSTM's `RECURSION_COLUMNS`). A
continuable forecaster's `forecast(panel, start, end, carry)` returns the quantiles of the rows
dated in [start, end] and the state to store: each ticker's recursion values after a row `as_of`
some rows before its newest (`state_at`). Given that state back (`carry`), `panel` need only
hold each ticker's rows after `as_of`, and the recursions continue from the carried values with
the arithmetic of the whole history, so the forecasts are the same to the bit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import numpy as np
import polars as pl

from forecast_core.columns import DATE, TICKER
from forecast_core.errors import InsufficientDataError

#: Rows kept between a stored state and the newest forecast row beyond what a forecast reads
#: before its row (the LSTM's window): a rerun of any of the last few sessions, or a night with a
#: ticker's late row, still continues.
STATE_SLACK = 5


def state_at(
    panel: pl.DataFrame, values: Mapping[str, np.ndarray], back: int, needed: tuple[str, ...]
) -> pl.DataFrame:
    """(ticker, as_of, `values`' columns) at each ticker's row `back` rows before its newest, of a
    (ticker, date)-sorted `panel` whose rows `values` `[rows]` follow; only where the `needed`
    columns are finite there (past the recursions' warm-up)."""
    lengths = panel[TICKER].rle().struct.field("len").to_numpy().astype(np.int64)
    ends = np.cumsum(lengths)
    at = ends - 1 - back
    at = at[at >= ends - lengths]
    state = (
        panel[at]
        .select(TICKER, pl.col(DATE).alias("as_of"))
        .with_columns(pl.Series(name, v[at], pl.Float64) for name, v in values.items())
    )
    return state.filter(*(pl.col(c).is_finite() for c in needed))


def with_carried(state: pl.DataFrame, carry: pl.DataFrame | None) -> pl.DataFrame:
    """`state`, and the carried row of every ticker it lacks: a rerun of the same sessions reads no
    row far enough back for a newer state, and the one it continued from is still valid."""
    if carry is None:
        return state
    kept = carry.filter(~pl.col(TICKER).is_in(state[TICKER].implode()))
    return pl.concat([state, kept.select(state.columns)]).sort(TICKER)


def continuable(
    panel: pl.DataFrame, carry: pl.DataFrame, start: dt.date, need: int | pl.Expr = 0
) -> list[str]:
    """The tickers of `carry` (ticker, as_of, ...) that a forecast from `start` can continue: their
    state lies before `start` and `panel` (each ticker's rows after its `as_of`) holds at least
    `need` rows before `start` (the LSTM's window: lookback - 1; a column of `carry` may say it)."""
    carry = carry.with_columns(pl.lit(need).alias("_need") if isinstance(need, int) else need.alias("_need"))
    counts = (
        panel.select(TICKER, DATE)
        .join(carry.select(TICKER, "as_of", "_need"), on=TICKER)
        .filter(pl.col(DATE) > pl.col("as_of"), pl.col(DATE) < start)
        .group_by(TICKER)
        .len()
    )
    ready = carry.filter(pl.col("as_of") < start).join(counts, on=TICKER, how="left")
    return sorted(ready.filter(pl.col("len").fill_null(0) >= pl.col("_need"))[TICKER].to_list())


def volatility_forecast(
    model, history: pl.DataFrame, start: dt.date, end: dt.date, carry: pl.DataFrame | None
) -> tuple[np.ndarray, pl.DataFrame]:
    """`forecast` of a volatility model whose bands are `scale_h * z_` (`ewma_vol`, `gjr_garch`,
    `vol_blend` blending variances): its `scales_and_state` over `history` (keys, targets and
    returns of the rows dated <= `end`, sorted), continued from `carry` where given. Quantiles
    `<float32>[rows in [start, end], H, Q]`, as its `predict`; the state `STATE_SLACK` rows
    before each ticker's newest (`volatility.CARRY_COLUMNS`)."""
    scales, variances = model.scales_and_state(history, carry)
    keep = history[DATE].is_between(start, end).to_numpy()
    scale = scales[keep]
    bad = ~np.isfinite(scale).all(axis=1)
    if bad.any():
        first = history.filter(pl.Series(keep))[int(np.flatnonzero(bad)[0])]
        raise InsufficientDataError(
            f"{model.name}: variance still in warm-up for {first[TICKER][0]} on {first[DATE][0]}"
        )
    q = (scale[:, :, None] * model.z_[None]).astype(np.float32)
    values = {"s2": variances.s2, "next_variance": variances.next_variance}
    return q, with_carried(state_at(history, values, STATE_SLACK, ("s2",)), carry)
