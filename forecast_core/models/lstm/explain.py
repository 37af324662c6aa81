"""Why the LSTM said what it said: attributions of its median forecast to its input window.

For one horizon h, `f(x)` is the ensemble's median forecast (standardised target space, see
`prior.py`) for a window `x <float32>[lookback, inputs]` of scaled inputs (the ticker embedding
and the prior's scale are held fixed).

Integrated gradients (Sundararajan, Taly & Yan, 2017), with baseline `x'`::

    IG(x) = (x - x') * integral_0^1 grad f(x' + a (x - x')) da

approximated by Gauss-Legendre quadrature with `steps` nodes a_k in (0, 1) and weights w_k,
`sum_k w_k grad f(x' + a_k (x - x'))`, exact for polynomials of degree 2 steps - 1. The network is
smooth, so a few dozen nodes leave an error near float32 rounding, where the trapezoidal rule on
as many points is off by O(1/steps^2). They satisfy completeness, `sum(IG(x)) = f(x) - f(x')`,
up to that quadrature error.

The baseline is zeros in scaled space, i.e. the pooled training mean of every input: the
attributions say how this window's departure from the usual state moved the forecast.

Every ticker's window goes through one jitted call: the interpolation steps are `vmap`-ped, so
the network runs once on a `<float32>[steps, tickers, lookback, features]` batch. Windows
are independent rows of the batch, so the gradient of the sum of the forecasts is each
window's own gradient. The jitted functions work in standardised units; `explain_sessions`
multiplies by each row's prior scale, so that stored attributions are in log return, the
forecast's units.

What is stored and what is recomputed: the full grid has lookback x features cells per forecast
(30 x 22 = 660 at the defaults, 1,320 per ticker and session over two horizons; 6.6 million
rows a night at 5,000 tickers). Users read its two margins: which inputs moved the forecast
(`feature_frame`, summed over the window, ranked) and how far back the window mattered
(`lag_frame`, summed over inputs), 22 + 30 = 52 rows per forecast; each margin alone sums to
the median minus the baseline's. The grid itself is recomputed on demand for one forecast from
the stored model (`explain_forecast`; `python -m forecast_assets.explain DATE TICKER`): the
computation is deterministic, so it reproduces the margins that were stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from forecast_core.columns import DATE, HORIZON, TICKER
from forecast_core.errors import InsufficientDataError
from forecast_core.models.lstm.forecaster import LSTMForecaster
from forecast_core.models.lstm.train import ensemble_apply, gather_windows


@partial(jax.jit, static_argnames=("apply_fn", "median_index"))
def median_forecast(
    apply_fn: Callable, params, x: jax.Array, ticker_id: jax.Array, horizon_index, median_index: int
) -> jax.Array:
    """The scaled median forecast `<float32>[tickers]` of horizon `horizon_index` for windows
    `x <float32>[tickers, lookback, features]` and `ticker_id <int32>[tickers]`."""
    out = apply_fn({"params": params}, x, ticker_id, train=False)  # [T, H, Q]
    return out[:, horizon_index, median_index]


def _window_gradients(apply_fn, params, x, ticker_id, horizon_index, median_index):
    """`<float32>[tickers, lookback, features]`: d median_forecast / d x, per window."""

    def total(z):
        return median_forecast(apply_fn, params, z, ticker_id, horizon_index, median_index).sum()

    return jax.grad(total)(x)


@partial(jax.jit, static_argnames=("apply_fn", "median_index", "steps"))
def integrated_gradients(
    apply_fn: Callable,
    params,
    x: jax.Array,
    ticker_id: jax.Array,
    horizon_index: jax.Array | int,
    *,
    median_index: int,
    steps: int = 32,
    baseline: jax.Array | None = None,
) -> jax.Array:
    """Integrated gradients of the scaled median forecast, `<float32>[tickers, lookback, features]`.

    x: windows `<float32>[tickers, lookback, features]` (scaled features); ticker_id
    `<int32>[tickers]`; horizon_index: position of the horizon in the model's output (traced,
    so one compilation serves every horizon); baseline: `<float32>[tickers, lookback, features]`,
    zeros (each ticker's training mean) when None. `attr.sum((1, 2))` equals
    `f(x) - f(baseline)` per ticker up to the quadrature error (`steps` Gauss-Legendre nodes).
    """
    x = jnp.asarray(x, jnp.float32)
    base = jnp.zeros_like(x) if baseline is None else jnp.asarray(baseline, jnp.float32)
    nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1]
    alphas = jnp.asarray((nodes + 1.0) / 2.0, jnp.float32)
    weights = jnp.asarray(weights / 2.0, jnp.float32)

    def grad_at(alpha):
        return _window_gradients(
            apply_fn, params, base + alpha * (x - base), ticker_id, horizon_index, median_index
        )

    grads = jax.vmap(grad_at)(alphas)  # [steps, T, L, F]
    return (x - base) * jnp.tensordot(weights, grads, axes=1)


def per_feature(attributions: np.ndarray) -> np.ndarray:
    """`<float32>[tickers, lookback, features]` -> `[tickers, features]`: summed over the window."""
    return np.asarray(attributions).sum(axis=-2)


def per_lookback_step(attributions: np.ndarray) -> np.ndarray:
    """`<float32>[tickers, lookback, features]` -> `[tickers, lookback]`: summed over features.
    Step `lookback - 1` is the as-of session (lag 0), step 0 the oldest (lag lookback - 1)."""
    return np.asarray(attributions).sum(axis=-1)


def lags(lookback: int) -> np.ndarray:
    """`<int32>[lookback]`: the lag of each window step (sessions before the as-of date)."""
    return np.arange(lookback - 1, -1, -1, dtype=np.int32)


@dataclass(frozen=True)
class SessionExplanation:
    """Attributions of one session's forecasts, in log return.

    attributions `<float32>[horizons, tickers, lookback, features]` (integrated gradients);
    forecast and baseline_forecast `<float32>[horizons, tickers]`: the median forecast for the
    window and for the baseline window (so `attributions.sum((2, 3)) ~ forecast - baseline_forecast`).
    """

    day: dt.date
    tickers: tuple[str, ...]
    features: tuple[str, ...]
    horizons: tuple[int, ...]
    attributions: np.ndarray
    forecast: np.ndarray
    baseline_forecast: np.ndarray

    @property
    def completeness_gap(self) -> float:
        """max |sum of attributions - (forecast - baseline_forecast)| over horizons and tickers."""
        total = self.attributions.sum(axis=(2, 3))
        return float(np.max(np.abs(total - (self.forecast - self.baseline_forecast))))

    def _keys(self, model_version: str, n: int, horizon_idx: np.ndarray, ticker_idx: np.ndarray) -> dict:
        return {
            "as_of_date": pl.Series([self.day] * n, dtype=pl.Date),
            TICKER: np.asarray(self.tickers, dtype=object)[ticker_idx],
            HORIZON: np.asarray(self.horizons, dtype=np.int32)[horizon_idx],
            "model_version": [model_version] * n,
        }

    def feature_frame(self, model_version: str) -> pl.DataFrame:
        """`forecast_explanations` rows: one per horizon, ticker and input, the attribution summed
        over the lookback window, its rank by absolute value within the forecast (1: largest),
        and the forecast's median and the baseline window's (their difference is the sum of
        the forecast's attributions, up to the quadrature error)."""
        totals = self.attributions.sum(axis=2)  # [H, T, F]
        n_h, n_t, n_f = totals.shape
        order = np.argsort(-np.abs(totals), axis=-1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(1, n_f + 1)[None, None, :], axis=-1)
        idx = np.indices((n_h, n_t, n_f)).reshape(3, -1)
        return pl.DataFrame(
            {
                **self._keys(model_version, idx.shape[1], idx[0], idx[1]),
                "feature": np.asarray(self.features, dtype=object)[idx[2]],
                "attribution": totals.reshape(-1).astype(np.float64),
                "rank": rank.reshape(-1).astype(np.int32),
                "median": np.asarray(self.forecast, np.float64)[idx[0], idx[1]],
                "baseline_median": np.asarray(self.baseline_forecast, np.float64)[idx[0], idx[1]],
            }
        )

    def lag_frame(self, model_version: str) -> pl.DataFrame:
        """`forecast_explanation_lags` rows: one per horizon, ticker and lag (sessions before the
        as-of date), the attribution summed over the inputs."""
        totals = self.attributions.sum(axis=3)  # [H, T, L]
        n_h, n_t, n_l = totals.shape
        idx = np.indices((n_h, n_t, n_l)).reshape(3, -1)
        return pl.DataFrame(
            {
                **self._keys(model_version, idx.shape[1], idx[0], idx[1]),
                "lag": lags(n_l)[idx[2]],
                "attribution": totals.reshape(-1).astype(np.float64),
            }
        )

    def frame(self, model_version: str) -> pl.DataFrame:
        """The full grid, long: one row per horizon, ticker, feature and lag (not stored; see
        `explain_forecast`)."""
        n_h, n_t, n_l, n_f = self.attributions.shape
        idx = np.indices((n_h, n_t, n_l, n_f)).reshape(4, -1)
        return pl.DataFrame(
            {
                "as_of_date": pl.Series([self.day] * idx.shape[1], dtype=pl.Date),
                TICKER: np.asarray(self.tickers, dtype=object)[idx[1]],
                HORIZON: np.asarray(self.horizons, dtype=np.int32)[idx[0]],
                "model_version": [model_version] * idx.shape[1],
                "feature": np.asarray(self.features, dtype=object)[idx[3]],
                "lag": lags(n_l)[idx[2]],
                "attribution": self.attributions.reshape(-1).astype(np.float64),
            }
        )


def explain_sessions(
    forecaster: LSTMForecaster, panel: pl.DataFrame, days: list[dt.date], steps: int = 32
) -> list[SessionExplanation]:
    """Integrated-gradient attributions of `forecaster`'s median forecasts on each of `days`.

    `panel` as for `forecaster.predict` (features up to the last day; rows after it are not
    read). One jitted call per session and horizon covers every ticker with a forecast that day.
    Raises `InsufficientDataError` if a ticker's window on a day is shorter than the lookback.
    """
    forecaster.require_fitted()
    task, lookback = forecaster.task, forecaster.cfg.model.lookback
    data = forecaster.windows(
        forecaster.narrow(panel).filter(pl.col(DATE) <= max(days)), min(days), max(days)
    )
    apply_fn, m = ensemble_apply(forecaster.model), task.median_index
    x_all, tid_all = jnp.asarray(data.x), jnp.asarray(data.ticker_id)
    out = []
    for day in days:
        rows = np.flatnonzero(data.dates == np.datetime64(day)).astype(np.int32)
        if len(rows) == 0:
            raise InsufficientDataError(f"no feature rows on {day} to explain")
        if not data.window_ok[rows].all():
            short = data.tickers.gather(rows[~data.window_ok[rows]]).to_list()
            raise InsufficientDataError(f"{short} on {day} have fewer than {lookback} sessions of features")
        x = gather_windows(x_all, jnp.asarray(rows), lookback)
        tid = tid_all[rows]
        scale = data.target_scale[rows].T[:, :, None, None]  # [H, T, 1, 1]
        attr, fx, f0 = [], [], []
        for h in range(len(task.horizons)):
            attr.append(
                np.asarray(
                    integrated_gradients(apply_fn, forecaster.params, x, tid, h, median_index=m, steps=steps)
                )
            )
            fx.append(np.asarray(median_forecast(apply_fn, forecaster.params, x, tid, h, m)))
            f0.append(np.asarray(median_forecast(apply_fn, forecaster.params, jnp.zeros_like(x), tid, h, m)))
        out.append(
            SessionExplanation(
                day=day,
                tickers=tuple(data.tickers.gather(rows).to_list()),
                features=tuple(forecaster.scalers.inputs),
                horizons=tuple(task.horizons),
                attributions=(np.stack(attr) * scale).astype(np.float32),
                forecast=np.stack(fx) * scale[:, :, 0, 0],
                baseline_forecast=np.stack(f0) * scale[:, :, 0, 0],
            )
        )
    return out


def explain_forecast(
    forecaster: LSTMForecaster, panel: pl.DataFrame, day: dt.date, ticker: str, steps: int = 32
) -> SessionExplanation:
    """The full attribution grid of `ticker`'s forecasts made after the close of `day` (every
    horizon): `explain_sessions` on that ticker's rows alone. A window is one ticker's own rows
    (the market inputs are columns of them), so the result equals that ticker's slice of the
    whole session's explanation."""
    if ticker not in forecaster.tickers:
        raise InsufficientDataError(
            f"{ticker!r} is not among the model's tickers ({len(forecaster.tickers)} known)"
        )
    return explain_sessions(forecaster, panel.filter(pl.col(TICKER) == ticker), [day], steps)[0]
