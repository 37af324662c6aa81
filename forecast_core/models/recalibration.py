"""Online recalibration of a forecaster's bands: adaptive conformal inference per horizon and level.

Gibbs & Candes (2021) adapt a forecaster's miscoverage online. Here, for each horizon h and
quantile level tau != 0.5, a factor `c` stretches the distance of the quantile from the median,
`q'_tau = q_0.5 + c * (q_tau - q_0.5)`, and after every session it moves with the misses of the
forecasts whose outcome became known that session (those made h sessions earlier):

    log c <- log c + gamma * (miss_rate - target),   target = tau (below the median) or 1 - tau,
    miss = y < q'_tau below the median, y > q'_tau above it (the share over tickers that session).

Only outcomes known at each date are used (a forecast's outcome counts h sessions after it was
made), so the recalibrated band at t is point in time. The factor starts at 1 at `warm_start`
and runs through the sessions before the range it returns; the median is never moved.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from forecast_core.columns import DATE
from forecast_core.models.forecaster import Forecaster, rows_between


def recalibrate(
    q: np.ndarray,
    y: np.ndarray,
    day_index: np.ndarray,
    horizons: tuple[int, ...],
    quantiles: tuple[float, ...],
    gamma: float,
) -> np.ndarray:
    """Recalibrated quantiles `[rows, H, Q]` of `q` `[rows, H, Q]` with outcomes `y` `[rows, H]`
    (NaN unknown) and each row's session index `day_index` `[rows]` (0, 1, ... in time order).
    The factor at session t uses the outcomes of rows with `day_index <= t - h` only."""
    tau = np.asarray(quantiles)
    m = quantiles.index(0.5)
    below, above = tau < 0.5, tau > 0.5
    target = np.where(below, tau, 1.0 - tau)
    out = q.astype(np.float64).copy()
    n_days = int(day_index.max()) + 1 if len(day_index) else 0
    order = np.argsort(day_index, kind="stable")
    bounds = np.searchsorted(day_index[order], np.arange(n_days + 1))
    for h_i, h in enumerate(horizons):
        log_c = np.zeros(len(tau))
        for t in range(n_days):
            today = order[bounds[t] : bounds[t + 1]]
            med = out[today, h_i, m][:, None]
            out[today, h_i] = med + np.exp(log_c) * (q[today, h_i] - med)
            if t - h >= 0:
                matured = order[bounds[t - h] : bounds[t - h + 1]]
                outcome = y[matured, h_i]
                known = np.isfinite(outcome)
                if known.any():
                    qq, yy = out[matured[known], h_i], outcome[known][:, None]
                    miss = np.where(below, yy < qq, np.where(above, yy > qq, False)).mean(axis=0)
                    log_c += np.where(below | above, gamma * (miss - target), 0.0)
    return out.astype(np.float32)


class Recalibrated(Forecaster):
    """A fitted forecaster's bands recalibrated online (`recalibrate`), from `warm_start` on.

    `fit` fits the base model; `predict(panel, start, end)` predicts from `warm_start` (default:
    the validation slice's start given to `fit`) to `end`, reads the outcomes the panel holds for
    those rows (only the ones known at each date enter the factor), and returns the rows in
    [start, end]. The name is the base's plus `_aci`.
    """

    def __init__(self, base: Forecaster, gamma: float = 0.02, warm_start: dt.date | None = None) -> None:
        super().__init__(base.task)
        self.base, self.gamma, self.warm_start = base, gamma, warm_start
        self.name = f"{base.name}_aci"

    @property
    def fitted(self) -> bool:
        return self.base.fitted

    def fit(self, panel: pl.DataFrame, train_end: dt.date, val: tuple[dt.date, dt.date] | None = None):
        self.base.fit(panel, train_end, val)
        if self.warm_start is None:
            self.warm_start = val[0] if val is not None else train_end
        return self

    def predict(self, panel: pl.DataFrame, start: dt.date, end: dt.date) -> np.ndarray:
        self.require_fitted()
        warm = min(self.warm_start, start)
        rows = rows_between(panel, warm, end)
        q = self.base.predict(panel, warm, end)
        if rows.height == 0:
            return q
        y = rows.select(self.task.target_columns).fill_null(np.nan).to_numpy().astype(np.float64)
        days = rows[DATE].rank("dense").cast(pl.Int64).to_numpy() - 1
        out = recalibrate(q, y, days, self.task.horizons, self.task.quantiles, self.gamma)
        keep = (rows[DATE] >= start).to_numpy()
        return out[keep]
