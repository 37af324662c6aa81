"""The LSTM's inputs: volatility-standardised state of each ticker and of the market, per session.

Every input at (ticker, t) uses data up to the close of t only. With `s_t` the prior's one-session
scale known after the close of t (`sigma_prior`, see `prior.py`) and `r_t` the daily log return:

- `shock`        e_t = r_t / s_{t-1}, clipped to +-`CLIP` (the return in units of what the prior
                 expected; its lags are the window's earlier steps)
- `abs_shock`    |e_t|
- `leverage`     min(e_t, 0) (negative returns raise volatility more than positive ones)
- `vol_ratio`    log(s_t / s_long_t), s_long = the slow EWMA (`LONG_HALFLIFE`) of s_t^2, square-rooted
- `mkt_shock`, `mkt_abs_shock`, `mkt_vol_ratio`: the same for the first exogenous index (its
                 RiskMetrics sigma over the ticker's own sessions), where the panel has its
                 `mkt_*_ret_1` column
- `range_ratio`  log(parkinson_t / s_{t-1}) and `gap` = overnight gap / s_{t-1}, where the source
                 has open, high and low (features `parkinson_vol` and `overnight_gap`)

Rows whose prior is still in warm-up are NaN; the window code marks windows containing them.
There are no cross-sectional inputs (a mean over the universe on date t): a ticker's forecast
depends on its own history and the market index only, never on which other tickers the panel holds.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from forecast_core.data.features import DAILY_RETURN
from forecast_core.data.row_order import TICKER_RUN as _RUN
from forecast_core.data.row_order import ticker_run

#: |shock| above this (in prior sigmas) is clipped: a bad print must not dominate the window.
CLIP = 10.0
#: Half-life (sessions) of the slow variance EWMA that `vol_ratio` compares with.
LONG_HALFLIFE = 126
#: RiskMetrics decay for the market index's sigma (the index has no prior of its own).
MARKET_LAMBDA = 0.94
RANGE_COLUMNS = ("parkinson_vol", "overnight_gap")


def _market_return_column(panel: pl.DataFrame) -> str | None:
    cols = [c for c in panel.columns if c.startswith("mkt_") and c.endswith("_ret_1")]
    return cols[0] if cols else None


def input_names(panel: pl.DataFrame) -> tuple[str, ...]:
    """The inputs `volatility_inputs` builds for this panel's columns, in order."""
    names = ["shock", "abs_shock", "leverage", "vol_ratio"]
    if _market_return_column(panel) is not None:
        names += ["mkt_shock", "mkt_abs_shock", "mkt_vol_ratio"]
    if all(c in panel.columns for c in RANGE_COLUMNS):
        names += ["range_ratio", "gap"]
    return tuple(names)


def input_columns(panel: pl.DataFrame) -> tuple[str, ...]:
    """The panel columns `volatility_inputs` may read (those of them the panel has): the daily
    return, the market index's and the range features."""
    market = _market_return_column(panel)
    wanted = (DAILY_RETURN, *([market] if market else []), *RANGE_COLUMNS)
    return tuple(c for c in wanted if c in panel.columns)


def _slow_ratio(var: pl.Expr, by: str | None) -> pl.Expr:
    slow = var.ewm_mean(half_life=LONG_HALFLIFE, adjust=False, ignore_nulls=True)
    slow = slow.over(by) if by else slow
    return (var / slow).log() * 0.5


def volatility_inputs(
    panel: pl.DataFrame, sigma: np.ndarray, names: tuple[str, ...] | None = None
) -> tuple[tuple[str, ...], np.ndarray]:
    """Inputs `<float32>[rows, F]` for `panel` (sorted by ticker, date) given the prior's
    one-session scale `sigma <float64>[rows]` (same order). `names` fixes the inputs (a fitted
    model's), else `input_names(panel)`; a missing column then raises naming it."""
    names = names or input_names(panel)
    s = pl.Series("s", sigma, dtype=pl.Float64).fill_nan(None)
    ranges = [
        pl.col(c).cast(pl.Float64) for c in RANGE_COLUMNS if "range_ratio" in names and c in panel.columns
    ]
    frame = panel.select(
        ticker_run(), pl.col(DAILY_RETURN).cast(pl.Float64).alias("r"), *ranges
    ).with_columns(s)
    prev = pl.col("s").shift(1).over(_RUN)
    shock = (pl.col("r") / prev).clip(-CLIP, CLIP)
    frame = frame.with_columns(shock.alias("shock")).with_columns(
        pl.col("shock").abs().alias("abs_shock"),
        pl.min_horizontal(pl.col("shock"), pl.lit(0.0)).alias("leverage"),
        _slow_ratio(pl.col("s") ** 2, _RUN).alias("vol_ratio"),
    )
    if "mkt_shock" in names:
        col = _market_return_column(panel)
        if col is None:
            raise ValueError("the model reads market inputs but the panel has no mkt_*_ret_1 column")
        frame = _with_market_inputs(frame.with_columns(panel[col].cast(pl.Float64).alias("m")))
    if "range_ratio" in names:
        missing = [c for c in RANGE_COLUMNS if c not in panel.columns]
        if missing:
            raise ValueError(f"the model reads range inputs but the panel lacks {missing}")
        frame = frame.with_columns(
            (pl.col("parkinson_vol") / prev).log().clip(-CLIP, CLIP).alias("range_ratio"),
            (pl.col("overnight_gap") / prev).clip(-CLIP, CLIP).alias("gap"),
        )
    x = frame.select(pl.col(list(names)).cast(pl.Float32).fill_null(float("nan"))).to_numpy()
    return names, np.ascontiguousarray(x, dtype=np.float32)


def _with_market_inputs(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` (with `_RUN` and the index's return `m`) plus, per row, the index's shock, |shock|
    and vol ratio from its RiskMetrics sigma, computed over each ticker's own rows (so a ticker's
    inputs depend on its own dates only, never on which other tickers the panel holds or when
    they were listed)."""
    alpha = 1.0 - MARKET_LAMBDA
    mv = (pl.col("m") ** 2).ewm_mean(alpha=alpha, adjust=False, min_samples=20, ignore_nulls=True)
    frame = frame.with_columns(mv.over(_RUN).alias("mv"))
    shock = (pl.col("m") / pl.col("mv").shift(1).over(_RUN).sqrt()).clip(-CLIP, CLIP)
    return frame.with_columns(
        shock.alias("mkt_shock"),
        shock.abs().alias("mkt_abs_shock"),
        _slow_ratio(pl.col("mv"), _RUN).alias("mkt_vol_ratio"),
    )
