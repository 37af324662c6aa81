"""Panel frames -> device arrays for the LSTM, with the input scaler fitted on training rows only.

The panel (features joined with wide targets, sorted by ticker and date) becomes one matrix of
scaled inputs `<float32>[rows, F]` (`inputs.volatility_inputs`, standardised by their pooled
training mean and standard deviation); a window is the `lookback` consecutive rows of one ticker
ending at a given row, gathered by index inside the jitted step, so windows are never materialized
all at once. Targets are standardised by the volatility prior's h-session scale of their row,
`z = R_h / scale_h`; the scale is kept to turn forecasts (and the loss) back into log returns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from forecast_core.columns import DATE, TICKER
from forecast_core.errors import InsufficientDataError
from forecast_core.models.forecaster import ForecastTask
from forecast_core.models.lstm.inputs import volatility_inputs

_EPS = 1e-8


@dataclass(frozen=True)
class Scalers:
    """The ticker vocabulary and the input scaler, from a training slice.

    tickers: the vocabulary (ticker id = position); input_mean / input_std `<float32>[F]`: pooled
    over the training rows of every ticker (the inputs are already in units of each ticker's own
    volatility, so one scaler serves all); inputs: their names, in order.
    """

    tickers: tuple[str, ...]
    inputs: tuple[str, ...]
    input_mean: np.ndarray
    input_std: np.ndarray

    def ticker_ids(self, tickers: pl.Series) -> np.ndarray:
        """`<int32>[rows]` ids; raises naming any ticker the scalers never saw in training."""
        vocab = {t: i for i, t in enumerate(self.tickers)}
        unknown = sorted(set(tickers.unique().to_list()) - vocab.keys())
        if unknown:
            raise InsufficientDataError(
                f"tickers {unknown} have no training rows for this model (known: {list(self.tickers)})"
            )
        return tickers.replace_strict(vocab, return_dtype=pl.Int32).to_numpy()


def fit_scalers(tickers: list[str], names: tuple[str, ...], x_train: np.ndarray) -> Scalers:
    """The vocabulary `tickers` (sorted) and the pooled mean/std of training inputs `x_train
    <float32>[rows, F]` (non-finite values ignored)."""
    if len(tickers) == 0 or x_train.shape[0] == 0:
        raise InsufficientDataError("no training rows to fit the LSTM's input scaler on")
    mean = np.nanmean(x_train, axis=0)
    std = np.nanstd(x_train, axis=0)
    return Scalers(
        tickers=tuple(sorted(tickers)),
        inputs=tuple(names),
        input_mean=np.nan_to_num(mean).astype(np.float32),
        input_std=np.where(np.isfinite(std) & (std > _EPS), std, 1.0).astype(np.float32),
    )


@dataclass(frozen=True)
class WindowData:
    """A panel as arrays. Row r's window is rows [r - lookback + 1, r] (same ticker).

    x `<float32>[rows, F]` scaled inputs (0 where unknown); y `<float32>[rows, H]` standardised
    targets z (NaN unknown); target_scale `<float32>[rows, H]` the prior's h-session scale;
    ticker_id `<int32>[rows]`; window_ok `<bool>[rows]` (the row has `lookback - 1` earlier rows of
    its own ticker and every input in the window is known); dates, tickers: the row keys.
    """

    x: np.ndarray
    y: np.ndarray
    ticker_id: np.ndarray
    target_scale: np.ndarray
    window_ok: np.ndarray
    dates: np.ndarray
    tickers: pl.Series

    @classmethod
    def concat(cls, parts: list[WindowData]) -> WindowData:
        """The parts' rows as one, in order (parts of whole tickers: no window crosses two)."""
        if len(parts) == 1:
            return parts[0]
        return cls(
            x=np.concatenate([p.x for p in parts]),
            y=np.concatenate([p.y for p in parts]),
            ticker_id=np.concatenate([p.ticker_id for p in parts]),
            target_scale=np.concatenate([p.target_scale for p in parts]),
            window_ok=np.concatenate([p.window_ok for p in parts]),
            dates=np.concatenate([p.dates for p in parts]),
            tickers=pl.concat([p.tickers for p in parts]),
        )

    def rows_where(self, start: dt.date, end: dt.date, need_target: bool) -> np.ndarray:
        """`<int32>[n]` indices of window-complete rows dated in [start, end]."""
        mask = self.window_ok & (self.dates >= np.datetime64(start)) & (self.dates <= np.datetime64(end))
        if need_target:
            mask &= np.isfinite(self.y).all(axis=1)
        return np.flatnonzero(mask).astype(np.int32)


def raw_inputs(
    panel: pl.DataFrame, scales: np.ndarray, task: ForecastTask, names: tuple[str, ...] | None = None
) -> tuple[tuple[str, ...], np.ndarray]:
    """Unscaled inputs `[rows, F]` of a sorted panel from the prior's scales `[rows, H]`."""
    h0 = float(task.horizons[0])
    return volatility_inputs(panel, scales[:, 0] / np.sqrt(h0), names)


def make_windows(
    panel: pl.DataFrame,
    task: ForecastTask,
    scalers: Scalers,
    lookback: int,
    scales: np.ndarray,
    raw: np.ndarray | None = None,
    window_ends: np.ndarray | None = None,
) -> WindowData:
    """Arrays for `panel` (sorted by ticker, date) with the prior's `scales <float64>[rows, H]`
    (and its `raw_inputs`, when the caller has them already). With `window_ends <bool>[rows]`,
    only the rows of windows ending at those rows are kept (a night's forecasts read the last
    `lookback` rows of each ticker, not its history); `window_ok` is the full panel's either way."""
    if raw is None:
        _, raw = raw_inputs(panel, scales, task, scalers.inputs)
    known = np.isfinite(raw).all(axis=1) & np.isfinite(scales).all(axis=1) & (scales > 0).all(axis=1)
    run = panel[TICKER].rle_id().to_numpy()
    first = np.flatnonzero(np.r_[True, run[1:] != run[:-1]]) if run.size else np.empty(0, np.int64)
    position = np.arange(run.size) - first[run] if run.size else np.empty(0, np.int64)
    # Unknown rows inside each window: a running count, differenced over the lookback (a window
    # with a full lookback lies within its own ticker, so the difference counts only its rows).
    unknown = np.cumsum(~known)
    back = np.arange(len(known)) - lookback
    before = np.where(back >= 0, unknown[np.maximum(back, 0)], 0)
    window_ok = (position >= lookback - 1) & (unknown - before == 0)
    if window_ends is not None:
        # Row i is read by a window ending within [i, i + lookback - 1].
        ends = np.r_[0, np.cumsum(window_ends)]
        ahead = np.minimum(np.arange(run.size) + lookback, run.size)
        keep = ends[ahead] - ends[: run.size] > 0
        panel, raw, scales = panel.filter(pl.Series(keep)), raw[keep], scales[keep]
        known, window_ok = known[keep], window_ok[keep]
    ids = scalers.ticker_ids(panel[TICKER])
    x = np.where(np.isfinite(raw), (raw - scalers.input_mean) / scalers.input_std, 0.0).astype(np.float32)
    targets = panel.select(task.target_columns).fill_null(np.nan).to_numpy().astype(np.float64)
    safe = np.where(known[:, None], scales, 1.0)
    return WindowData(
        x=np.ascontiguousarray(x),
        y=np.where(known[:, None], targets / safe, np.nan).astype(np.float32),
        ticker_id=ids,
        target_scale=safe.astype(np.float32),
        window_ok=window_ok,
        dates=panel[DATE].to_numpy(),
        tickers=panel[TICKER],
    )
