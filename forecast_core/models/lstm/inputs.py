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

The slow EWMAs and the index's sigma are recursions over each ticker's rows (`ewma_runs`); their
values after a row (`InputState`) let a later run continue from that row instead of reading the
ticker's whole history, with the same values (`volatility_inputs(..., carry=)`).
There are no cross-sectional inputs (a mean over the universe on date t): a ticker's forecast
depends on its own history and the market index only, never on which other tickers the panel holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.signal import lfilter

from forecast_core.data.features import DAILY_RETURN
from forecast_core.models.volatility import AlignedReturns, carried, ticker_chunks

#: |shock| above this (in prior sigmas) is clipped: a bad print must not dominate the window.
CLIP = 10.0
#: Half-life (sessions) of the slow variance EWMA that `vol_ratio` compares with, and its alpha.
LONG_HALFLIFE = 126
LONG_HALFLIFE_ALPHA = 1.0 - math.exp(-math.log(2.0) / LONG_HALFLIFE)
#: RiskMetrics decay for the market index's sigma (the index has no prior of its own).
MARKET_LAMBDA = 0.94
#: Index returns before the index's sigma is known.
MARKET_WARMUP = 20
RANGE_COLUMNS = ("parkinson_vol", "overnight_gap")
#: The recursions' values after a row, per row (`InputState`), and the columns of a carry.
STATE_COLUMNS = ("sigma", "slow_variance", "market_variance", "market_slow_variance")


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


def ewma_runs(
    values: np.ndarray,
    lengths: np.ndarray,
    alpha: float,
    start: np.ndarray | None = None,
    min_samples: int = 1,
) -> np.ndarray:
    """`y_k = alpha * x_k + (1 - alpha) * y_{k-1}` over each ticker's finite values `[rows]` (runs
    of `lengths [n]` rows), from `y_0 = x_0` or, with `start [n]`, from a value carried from an
    earlier run. Per row: the value after the row's last finite value (carried over a missing
    one), NaN before the first or, without `start`, before `min_samples` values."""
    lead = 0 if start is None else 1
    aligned = AlignedReturns.of(values, lengths, lead)
    x, y = aligned.x[:, lead:], np.full(aligned.x.shape, np.nan)
    if start is not None:
        y[:, 0] = start
        first = start
    elif x.shape[1]:
        y[:, 0] = first = x[:, 0]
        x = x[:, 1:]
    if x.shape[1]:
        y[:, y.shape[1] - x.shape[1] :] = lfilter(
            [alpha], [1.0, alpha - 1.0], x, axis=1, zi=(1.0 - alpha) * first[:, None]
        )[0]
    if start is None:
        y[:, : min_samples - 1] = np.nan
    return aligned.to_rows(y)


@dataclass(frozen=True)
class InputState:
    """The recursions behind the inputs, after each row `[rows]`: the prior's one-session scale
    `sigma`, the slow EWMA of its square, the index's RiskMetrics variance (NaN where the row has
    no index return or in its warm-up) and its slow EWMA (NaN without an index). Where all four
    are finite at a ticker's row, they are what `volatility_inputs(..., carry=)` continues from
    (`STATE_COLUMNS`)."""

    sigma: np.ndarray
    slow_variance: np.ndarray
    market_variance: np.ndarray
    market_slow_variance: np.ndarray


def volatility_inputs(
    panel: pl.DataFrame,
    sigma: np.ndarray,
    names: tuple[str, ...] | None = None,
    carry: pl.DataFrame | None = None,
) -> tuple[tuple[str, ...], np.ndarray]:
    """Inputs `<float32>[rows, F]` for `panel` (sorted by ticker, date) given the prior's
    one-session scale `sigma <float64>[rows]` (same order). `names` fixes the inputs (a fitted
    model's), else `input_names(panel)`; a missing column then raises naming it. `carry`: each
    ticker's `InputState` at the row before its first here (columns ticker and `STATE_COLUMNS`)."""
    names, x, _ = inputs_and_state(panel, sigma, names, carry)
    return names, x


def inputs_and_state(
    panel: pl.DataFrame,
    sigma: np.ndarray,
    names: tuple[str, ...] | None = None,
    carry: pl.DataFrame | None = None,
) -> tuple[tuple[str, ...], np.ndarray, InputState]:
    """`volatility_inputs` and the `InputState` after every row."""
    names = names or input_names(panel)
    runs = list(ticker_chunks(panel))
    start = _run_starts(runs, panel.height)
    state = carried(carry, _tickers(runs), STATE_COLUMNS) if carry is not None else None
    s = np.asarray(sigma, dtype=np.float64)
    x = np.full((panel.height, len(names)), np.nan, dtype=np.float32)
    filled: set[str] = set()

    def put(name: str, values: np.ndarray) -> None:
        """Column `name` of x, if the model reads it (each input is written as soon as it is
        computed, so that its float64 temporaries do not pile up over a long panel)."""
        if name in names:
            x[:, names.index(name)] = values
            filled.add(name)

    with np.errstate(divide="ignore", invalid="ignore"):
        prev = _previous(s, start, None if state is None else state[:, 0])
        shock = np.clip(_column(panel, DAILY_RETURN) / prev, -CLIP, CLIP)
        put("shock", shock)
        put("abs_shock", np.abs(shock))
        put("leverage", np.fmin(shock, 0.0))  # 0 where the shock is unknown, as before
        del shock
        slow = _ewma(runs, s**2, LONG_HALFLIFE_ALPHA, None if state is None else state[:, 1])
        put("vol_ratio", 0.5 * np.log(s**2 / slow))
        mv = mv_slow = np.full(panel.height, np.nan)
        if "mkt_shock" in names:
            col = _market_return_column(panel)
            if col is None:
                raise ValueError("the model reads market inputs but the panel has no mkt_*_ret_1 column")
            m = _column(panel, col)
            carried_mv = None if state is None else state[:, 2]
            mv = _ewma(runs, m**2, 1.0 - MARKET_LAMBDA, carried_mv, MARKET_WARMUP)
            mv[~np.isfinite(m)] = np.nan
            m_shock = np.clip(m / np.sqrt(_previous(mv, start, carried_mv)), -CLIP, CLIP)
            del m
            put("mkt_shock", m_shock)
            put("mkt_abs_shock", np.abs(m_shock))
            del m_shock
            mv_slow = _ewma(runs, mv, LONG_HALFLIFE_ALPHA, None if state is None else state[:, 3])
            put("mkt_vol_ratio", 0.5 * np.log(mv / mv_slow))
        if "range_ratio" in names:
            missing = [c for c in RANGE_COLUMNS if c not in panel.columns]
            if missing:
                raise ValueError(f"the model reads range inputs but the panel lacks {missing}")
            put("range_ratio", np.clip(np.log(_column(panel, "parkinson_vol") / prev), -CLIP, CLIP))
            put("gap", np.clip(_column(panel, "overnight_gap") / prev, -CLIP, CLIP))
    unknown = [n for n in names if n not in filled]
    if unknown:
        raise ValueError(f"unknown LSTM inputs {unknown}: this code builds {input_names(panel)}")
    return names, x, InputState(s, slow, mv, mv_slow)


def _column(panel: pl.DataFrame, name: str) -> np.ndarray:
    return panel[name].cast(pl.Float64).fill_null(np.nan).to_numpy()


def _tickers(runs: list) -> list[str]:
    return [t for _, _, names, _ in runs for t in names]


def _run_starts(runs: list, rows: int) -> np.ndarray:
    """`<bool>[rows]`: the first row of each ticker's run."""
    first = np.zeros(rows, dtype=bool)
    for a, _, _, lengths in runs:
        first[a + np.r_[0, np.cumsum(lengths)[:-1]]] = True
    return first


def _previous(values: np.ndarray, run_start: np.ndarray, carried_values: np.ndarray | None) -> np.ndarray:
    """Each row's previous row of the same ticker; at a ticker's first row the carried value (NaN
    without a carry)."""
    prev = np.r_[np.nan, values[:-1]]
    prev[run_start] = np.nan if carried_values is None else carried_values
    return prev


def _ewma(
    runs: list, values: np.ndarray, alpha: float, start: np.ndarray | None, min_samples: int = 1
) -> np.ndarray:
    """`ewma_runs` a chunk of tickers at a time (`runs` from `ticker_chunks`), `start` `[tickers]`."""
    out, i = np.full(values.size, np.nan), 0
    for a, b, names, lengths in runs:
        part = None if start is None else start[i : i + len(names)]
        out[a:b] = ewma_runs(values[a:b], lengths, alpha, part, min_samples)
        i += len(names)
    return out
