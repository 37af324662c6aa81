"""Evaluation metrics: plain numpy functions, the formula in each docstring, separate from losses.

`y` is the realised forward log return, `y_hat` a point forecast of it, `q` quantile forecasts.
No function drops missing values: callers pass only rows whose target is known, and a NaN in the
input gives a NaN metric (it is not silently skipped).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats


def _pair(y: np.ndarray, y_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y, y_hat = np.asarray(y, dtype=np.float64), np.asarray(y_hat, dtype=np.float64)
    if y.shape != y_hat.shape:
        raise ValueError(f"shapes differ: y {y.shape} vs y_hat {y_hat.shape}")
    if y.size == 0:
        raise ValueError("metric of an empty array")
    return y, y_hat


def mae(y: np.ndarray, y_hat: np.ndarray) -> float:
    """Mean absolute error: `mean(|y - y_hat|)`."""
    y, y_hat = _pair(y, y_hat)
    return float(np.mean(np.abs(y - y_hat)))


def rmse(y: np.ndarray, y_hat: np.ndarray) -> float:
    """Root mean squared error: `sqrt(mean((y - y_hat)^2))`."""
    y, y_hat = _pair(y, y_hat)
    return float(np.sqrt(np.mean((y - y_hat) ** 2)))


def mape_price(last_close: np.ndarray, y: np.ndarray, y_hat: np.ndarray) -> float:
    """MAPE in percent of the reconstructed price, from log-return forecasts.

    actual = last_close * exp(y), predicted = last_close * exp(y_hat),
    `100 * mean(|predicted - actual| / actual)`.

    `last_close` (`[N]`, > 0, broadcastable to `y`) cancels out of each term (the ratio is
    `|exp(y_hat - y) - 1|`); it is kept in the signature so the formula reads as the price MAPE.
    """
    y, y_hat = _pair(y, y_hat)
    last_close = np.broadcast_to(np.asarray(last_close, dtype=np.float64), y.shape)
    if np.any(last_close <= 0):
        raise ValueError("last_close must be positive")
    actual = last_close * np.exp(y)
    predicted = last_close * np.exp(y_hat)
    return float(np.mean(np.abs(predicted - actual) / actual) * 100.0)


def directional_accuracy(y: np.ndarray, y_hat: np.ndarray) -> float:
    """Share of rows whose forecast sign matches the outcome: `mean((y_hat >= 0) == (y >= 0))`.

    Convention: zero counts as "up" on both sides, so the zero_return baseline (y_hat = 0
    everywhere) scores the share of non-negative outcomes, the natural "always up" reference.
    """
    y, y_hat = _pair(y, y_hat)
    return float(np.mean((y_hat >= 0) == (y >= 0)))


def _pinball_terms(y: np.ndarray, q: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """`max(tau_j * (y_n - q_nj), (tau_j - 1) * (y_n - q_nj))` `<float64>[..., Q]`."""
    y = np.asarray(y, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    tau = np.asarray(quantiles, dtype=np.float64)
    if q.shape != (*y.shape, tau.size):
        raise ValueError(f"q must have shape {(*y.shape, tau.size)} (y shape + [Q]), got {q.shape}")
    err = y[..., None] - q
    return np.maximum(tau * err, (tau - 1.0) * err)


def pinball(y: np.ndarray, q: np.ndarray, quantiles: Sequence[float]) -> float:
    """Mean pinball (quantile) loss over rows and quantile levels.

    y `[N]`, q `[N, Q]` (more generally y `[...]` and q `[..., Q]`), quantiles `[Q]`:
    `mean_{n,j} max(tau_j * (y_n - q_nj), (tau_j - 1) * (y_n - q_nj))`. The training loss
    (`models.lstm.train.pinball_loss`) is the same formula in JAX.
    """
    if np.size(y) == 0:
        raise ValueError("metric of an empty array")
    return float(np.mean(_pinball_terms(y, q, quantiles)))


def pinball_per_row(y: np.ndarray, q: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """Each row's pinball loss averaged over the quantile levels: y `[N]`, q `[N, Q]` -> `[N]`
    (the per-forecast loss of `forecast_scores` and of the Diebold-Mariano tests)."""
    return _pinball_terms(y, q, quantiles).mean(axis=-1)


def coverage(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Share of outcomes inside the closed band: `mean(lo <= y <= hi)`."""
    y, lo = _pair(y, lo)
    _, hi = _pair(y, hi)
    return float(np.mean((y >= lo) & (y <= hi)))


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, horizon: int) -> tuple[float, float]:
    """Diebold-Mariano test of equal predictive accuracy, with the HLN small-sample correction.

    loss_a, loss_b `[n]`: per-observation losses of two forecasts of the same targets, in time
    order. With `d_t = loss_a_t - loss_b_t`, `d_bar = mean(d)` and autocovariances
    `gamma_k = (1/n) sum_{t=k+1..n} (d_t - d_bar)(d_{t-k} - d_bar)`:

        V   = (gamma_0 + 2 sum_{k=1..h-1} gamma_k) / n         (h = horizon: an h-step forecast
        DM  = d_bar / sqrt(V)                                   error is MA(h-1) under the null)
        HLN = DM * sqrt((n + 1 - 2h + h(h-1)/n) / n)            (Harvey, Leybourne, Newbold 1997)
        p   = 2 * P(T_{n-1} > |HLN|)                            (Student t, n-1 degrees of freedom)

    Returns `(HLN, p)`. A negative statistic means forecast a has the lower loss.
    Degenerate cases return `(nan, nan)`: fewer than 3 observations, a long-run variance V that
    is not positive (a negative truncated-kernel estimate), a constant d (identical losses, or a
    differential whose spread is at most 1e-12 x the largest |loss|, i.e. rounding noise),
    a non-finite d, or a non-positive HLN factor (horizon too long for n).
    """
    a, b = _pair(loss_a, loss_b)
    if a.ndim != 1:
        raise ValueError(f"losses must be 1-d series, got shape {a.shape}")
    if not (isinstance(horizon, int | np.integer) and horizon >= 1):
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    h = int(horizon)
    d = a - b
    n = d.size
    if n < 3 or not np.all(np.isfinite(d)):
        return math.nan, math.nan
    dc = d - d.mean()
    gamma = [float(dc @ dc) / n] + [float(dc[k:] @ dc[:-k]) / n for k in range(1, min(h, n))]
    v = (gamma[0] + 2.0 * sum(gamma[1:])) / n
    factor = (n + 1 - 2 * h + h * (h - 1) / n) / n
    # A d constant up to rounding (say a - b with b = a + c) is tested explicitly: its computed v
    # is rounding noise, not zero, and would give an absurd statistic.
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))))
    if np.ptp(d) <= 1e-12 * scale or not v > 0 or factor <= 0:
        return math.nan, math.nan
    stat = float(d.mean() / math.sqrt(v) * math.sqrt(factor))
    p = float(2.0 * stats.t.sf(abs(stat), df=n - 1))
    return stat, p


def panel_diebold_mariano(
    loss_a: np.ndarray, loss_b: np.ndarray, dates: np.ndarray, horizon: int
) -> tuple[float, float]:
    """Diebold-Mariano test on a panel: cross-sectional mean per date, then `diebold_mariano`.

    loss_a, loss_b, dates `[rows]` (rows of several tickers, any order). The loss differential is
    averaged across tickers on each date, `dbar_t = mean_{i on date t}(loss_a_it - loss_b_it)`,
    and the test runs on the daily series `dbar_t` in date order. Tickers on one date are
    strongly correlated, so treating every (ticker, date) row as independent would overstate the
    evidence; averaging per date is the standard way to handle that cross-sectional dependence.
    Same return value and degenerate cases as `diebold_mariano`.
    """
    a, b = _pair(loss_a, loss_b)
    dates = np.asarray(dates)
    if dates.shape != a.shape or a.ndim != 1:
        raise ValueError(f"dates {dates.shape} must match the 1-d losses {a.shape}")
    _, inverse = np.unique(dates, return_inverse=True)  # sorted unique dates
    counts = np.bincount(inverse)
    daily_a = np.bincount(inverse, weights=a) / counts
    daily_b = np.bincount(inverse, weights=b) / counts
    return diebold_mariano(daily_a, daily_b, horizon)
