"""The serving model's recursion state per model version and ticker (`forecast_state`), so that a
night's forecasts read each ticker's last rows instead of its whole history.

The LSTM's prior and inputs and the volatility baselines are recursions over each ticker's rows
(EWMA and GJR variances, slow EWMAs: `forecast_core.models.continuation`). `daily_forecasts`
stores where they stood after a row `as_of` some way back and, on the next run, continues from
there over the rows after it, with the same values as the whole history gives. A state is only as good as the
rows before it: `invalidate` (called by the features asset in its own transaction) deletes every
state taken at or after the first row a features write replaced, so such a ticker is forecast from
its whole history once and gets a new state.
"""

from __future__ import annotations

import datetime as dt
import os

import polars as pl

from forecast_core.columns import TICKER
from warehouse.io import Writer, read_sql, table_exists

TABLE = "forecast_state"
_IN_TICKERS = "ticker IN (SELECT unnest(?::VARCHAR[]))"


def write(w: Writer, model_version: str, state: pl.DataFrame) -> int:
    """Replace `model_version`'s states of the tickers in `state` (ticker, model, as_of and the
    recursion columns; NaN stored as null). Another ticker's state stays: one not forecast this
    run (no complete row on its sessions) continues from it next time, and a state is valid
    while the features before its `as_of` are (`invalidate`)."""
    if state.height == 0:  # nothing served could continue (a point baseline served)
        return 0
    rows = state.with_columns(pl.col(pl.Float64).fill_nan(None), pl.lit(model_version).alias("model_version"))
    return w.replace(
        TABLE, rows, f"model_version = ? AND {_IN_TICKERS}", [model_version, rows[TICKER].to_list()]
    )


def invalidate(w: Writer, tickers: list[str] | None, since: dt.date | None) -> None:
    """Delete the states that a features write of `tickers` (None: every ticker) from `since`
    (None: their whole history) makes stale: those taken after a row it replaced."""
    where, params = ("TRUE", []) if tickers is None else (_IN_TICKERS, [tickers])
    if since is not None:
        where, params = f"{where} AND as_of >= ?", [*params, since]
    w.replace(TABLE, pl.DataFrame(), where, params)


def stored(path: str | os.PathLike[str], model_version: str) -> pl.DataFrame:
    """`model_version`'s states (ticker, model, as_of, recursion columns; null read back as NaN),
    sorted by ticker; empty where there are none (or the table is not there yet)."""
    if not table_exists(TABLE, path):
        return pl.DataFrame()
    state = read_sql(
        f"SELECT * EXCLUDE (model_version) FROM {TABLE} WHERE model_version = ? ORDER BY ticker",
        [model_version],
        path,
    )
    return state.with_columns(pl.col(pl.Float64).fill_null(float("nan"))).sort(TICKER)
