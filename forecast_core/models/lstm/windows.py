"""Panel frames -> device arrays for the LSTM, with scalers fitted on the training slice only.

The panel (features joined with wide targets, sorted by ticker and date) becomes one matrix of
scaled features `<float32>[rows, F]`; a window is the `lookback` consecutive rows of one ticker
ending at a given row, gathered by index inside the jitted step, so windows are never materialized
all at once. Scaling is per ticker: each feature's mean and standard deviation and each horizon's
target standard deviation are measured on that ticker's training rows, and applied to every row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from forecast_core.columns import DATE, TICKER
from forecast_core.errors import InsufficientDataError
from forecast_core.models.forecaster import ForecastTask

_EPS = 1e-8


@dataclass(frozen=True)
class Scalers:
    """Per-ticker statistics from a training slice.

    tickers: the vocabulary (ticker id = position); feature_mean/std `<float32>[T, F]`;
    target_scale `<float32>[T, H]` (standard deviation of each horizon's target).
    """

    tickers: tuple[str, ...]
    feature_mean: np.ndarray
    feature_std: np.ndarray
    target_scale: np.ndarray

    def ticker_ids(self, tickers: pl.Series) -> np.ndarray:
        """`<int32>[rows]` ids; raises naming any ticker the scalers never saw in training."""
        vocab = {t: i for i, t in enumerate(self.tickers)}
        unknown = sorted(set(tickers.unique().to_list()) - vocab.keys())
        if unknown:
            raise InsufficientDataError(
                f"tickers {unknown} have no training rows for this model (known: {list(self.tickers)})"
            )
        return np.asarray([vocab[t] for t in tickers.to_list()], dtype=np.int32)


def fit_scalers(train_rows: pl.DataFrame, task: ForecastTask) -> Scalers:
    """Per-ticker feature mean/std and target scale from `train_rows` (training slice only)."""
    if train_rows.height == 0:
        raise InsufficientDataError("no training rows to fit scalers on")
    feats, targets = list(task.feature_columns), list(task.target_columns)
    stats = (
        train_rows.group_by(TICKER, maintain_order=True)
        .agg(
            *[pl.col(c).mean().alias(f"m_{c}") for c in feats],
            *[pl.col(c).std().fill_null(0.0).alias(f"s_{c}") for c in feats],
            *[pl.col(c).std().fill_null(0.0).alias(f"t_{c}") for c in targets],
        )
        .sort(TICKER)
    )
    mean = stats.select([f"m_{c}" for c in feats]).to_numpy().astype(np.float32)
    std = stats.select([f"s_{c}" for c in feats]).to_numpy().astype(np.float32)
    scale = stats.select([f"t_{c}" for c in targets]).to_numpy().astype(np.float32)
    return Scalers(
        tickers=tuple(stats[TICKER].to_list()),
        feature_mean=mean,
        feature_std=np.where(std > _EPS, std, 1.0).astype(np.float32),
        target_scale=np.where(scale > _EPS, scale, 1.0).astype(np.float32),
    )


@dataclass(frozen=True)
class WindowData:
    """A panel as arrays. Row r's window is rows [r - lookback + 1, r] (same ticker).

    x `<float32>[rows, F]` scaled features; y `<float32>[rows, H]` scaled targets (NaN unknown);
    ticker_id `<int32>[rows]`; target_scale `<float32>[rows, H]`; window_ok `<bool>[rows]` (the
    row has `lookback - 1` earlier rows of its own ticker); dates, tickers: the row keys.
    """

    x: np.ndarray
    y: np.ndarray
    ticker_id: np.ndarray
    target_scale: np.ndarray
    window_ok: np.ndarray
    dates: np.ndarray
    tickers: pl.Series

    def rows_where(self, start: dt.date, end: dt.date, need_target: bool) -> np.ndarray:
        """`<int32>[n]` indices of window-complete rows dated in [start, end]."""
        mask = self.window_ok & (self.dates >= np.datetime64(start)) & (self.dates <= np.datetime64(end))
        if need_target:
            mask &= np.isfinite(self.y).all(axis=1)
        return np.flatnonzero(mask).astype(np.int32)


def make_windows(panel: pl.DataFrame, task: ForecastTask, scalers: Scalers, lookback: int) -> WindowData:
    """Scale `panel` (sorted by ticker, date; complete feature rows) with `scalers`."""
    panel = panel.sort(TICKER, DATE)
    ids = scalers.ticker_ids(panel[TICKER])
    x = panel.select(task.feature_columns).to_numpy().astype(np.float32)
    x = (x - scalers.feature_mean[ids]) / scalers.feature_std[ids]
    y = panel.select(task.target_columns).fill_null(np.nan).to_numpy().astype(np.float32)
    scale = scalers.target_scale[ids]
    position = panel.select(pl.int_range(pl.len()).over(TICKER)).to_series().to_numpy()
    return WindowData(
        x=np.ascontiguousarray(x),
        y=y / scale,
        ticker_id=ids,
        target_scale=scale,
        window_ok=position >= lookback - 1,
        dates=panel[DATE].to_numpy(),
        tickers=panel[TICKER],
    )
