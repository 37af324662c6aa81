"""Volatility models' arithmetic, shared by the volatility baselines and the LSTM's prior.

- `ewma_variance`: RiskMetrics, `s2_t = lam * s2_{t-1} + (1 - lam) * r_t^2`;
- GJR-GARCH(1,1): `fit_gjr` (with `arch`; `fit_gjr_remembered` keeps recent fits),
  `gjr_conditional_variance` (the filter with fixed
  parameters), `gjr_horizon_variance` / `gjr_variance` (the h-session variance, the sum of the h
  one-step forecasts);
- `standardised_quantiles`: the pooled quantiles of targets standardised by a model's scale,
  clipped to a zero median, from which every volatility band (and the LSTM's starting point) is
  built.

Plain numpy; the forecasters live in `baselines.py` (`EwmaVol`) and `garch.py`.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections import OrderedDict
from itertools import pairwise

import numpy as np
import polars as pl
from scipy.signal import lfilter

from forecast_core.columns import TICKER

#: GJR parameters of one ticker in the units of raw daily log returns: (omega, alpha, gamma, beta).
Params = tuple[float, float, float, float]

RETURN_COLUMN = "ret_1"
#: Finite returns dated <= train_end a ticker needs for its own GJR fit (about one year).
MIN_RETURNS = 250
#: Returns before the first variance (the filter starts from their mean square), as `EwmaVol`.
WARMUP = 20
#: arch is fitted on percent returns (100 * r), so omega there is 1e4 times omega in raw units.
_PERCENT2 = 1e4
#: SLSQP meets arch's stationarity constraint alpha + gamma/2 + beta <= 1 only to about 1e-8: a
#: persistence up to 1 + this is on the bound (integrated, kept with persistence exactly 1); above,
#: non-stationary (refused).
STATIONARITY_TOL = 1e-6
#: How far below a GJR constraint an optimiser's solution may lie (rounding) before it is refused.
_CONSTRAINT_TOL = 1e-9


def ewma_variance(returns: np.ndarray, lam: float, warmup: int = 20) -> np.ndarray:
    """RiskMetrics variance of one ticker's daily log returns `[n]` (time order) -> `[n]`.

    Over the finite returns r_1, r_2, ...: `s2_w = mean(r_1^2 .. r_w^2)` (zero-mean variance of the
    first w = `warmup` returns), then `s2_t = lam * s2_{t-1} + (1 - lam) * r_t^2`. Causal: s2_t uses
    returns up to and including t. NaN before the w-th return (warm-up); a row whose return is
    missing carries the last value forward.
    """
    r = np.asarray(returns, dtype=np.float64)
    valid = np.isfinite(r)
    x = r[valid] ** 2
    s2 = np.full(x.size, np.nan)
    if x.size >= warmup:
        s2[warmup - 1] = x[:warmup].mean()
        if x.size > warmup:
            # y_t = lam * y_{t-1} + (1 - lam) * x_t, started from y_{w-1} = s2_w via zi.
            zi = [lam * s2[warmup - 1]]
            s2[warmup:] = lfilter([1.0 - lam], [1.0, -lam], x[warmup:], zi=zi)[0]
    last = np.cumsum(valid) - 1  # index into x of the last finite return at or before each row
    return np.where(last >= 0, s2[np.maximum(last, 0)] if x.size else np.nan, np.nan)


def standardised_quantiles(z: np.ndarray, quantiles: tuple[float, ...]) -> np.ndarray:
    """Pooled tau-quantiles `<float64>[H, Q]` of standardised targets `z <float64>[rows, H]`,
    clipped so that levels below 0.5 are <= 0, above are >= 0, and the median is exactly 0 (a
    volatility model says nothing about the sign)."""
    tau = np.asarray(quantiles)
    zq = np.quantile(z, tau, axis=0).T
    upper = np.where(tau > 0.5, np.maximum(zq, 0.0), 0.0)
    return np.where(tau < 0.5, np.minimum(zq, 0.0), upper)


def ticker_bounds(tickers: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each ticker's run of rows in a frame sorted by (ticker, date)."""
    starts = np.flatnonzero(np.r_[True, tickers[1:] != tickers[:-1]]) if tickers.size else np.empty(0, int)
    return list(pairwise([*starts.tolist(), tickers.size]))


def daily_returns(panel: pl.DataFrame) -> np.ndarray:
    return panel[RETURN_COLUMN].cast(pl.Float64).fill_null(np.nan).to_numpy()


# --- the variance recursions ---------------------------------------------------------------------


def gjr_conditional_variance(returns: np.ndarray, params: Params, backcast: float) -> np.ndarray:
    """GJR(1,1) conditional variances of finite returns `r [n]` (time order) -> `[n + 1]`.

    Element t < n is Var(r_t | r_0..r_{t-1}), `arch`'s `conditional_volatility ** 2` for the same
    backcast (its pre-sample r^2 and s2, with I(r < 0) taken as 1/2); element n is the forecast of
    the next return's variance. Vectorised: s2_{t+1} = x_t + beta * s2_t is a linear filter.
    """
    omega, alpha, gamma, beta = params
    r = np.asarray(returns, dtype=np.float64)
    out = np.empty(r.size + 1)
    out[0] = omega + (alpha + 0.5 * gamma + beta) * backcast
    if r.size:
        x = omega + (alpha + gamma * (r < 0)) * r**2
        out[1:] = lfilter([1.0], [1.0, -beta], x, zi=[beta * out[0]])[0]
    return out


def gjr_horizon_variance(next_variance: np.ndarray, params: Params, horizons: tuple[int, ...]) -> np.ndarray:
    """Variance of the h-session return, the sum of the h one-step-ahead forecasts: `[n] -> [n, H]`.

    `next_variance` is s2_{t+1|t}; later steps follow s2_{t+k+1|t} = omega + phi * s2_{t+k|t} with
    phi = alpha + gamma / 2 + beta (symmetric innovations).
    """
    omega, alpha, gamma, beta = params
    phi = alpha + 0.5 * gamma + beta
    s = np.asarray(next_variance, dtype=np.float64)
    total = np.zeros_like(s)
    out = {}
    for k in range(1, max(horizons) + 1):
        total = total + s
        if k in horizons:
            out[k] = total
        s = omega + phi * s
    return np.column_stack([out[h] for h in horizons]) if s.size else np.empty((0, len(horizons)))


def _by_last_return(r: np.ndarray, per_return: np.ndarray, width: int) -> np.ndarray:
    """Rows `[n]` of a series with gaps -> `[n, width]`: each row takes the value of the last finite
    return at or before it (NaN before the first), as `ewma_variance` carries missing returns."""
    valid = np.isfinite(r)
    last = np.cumsum(valid) - 1
    out = np.full((r.size, width), np.nan)
    if per_return.shape[0]:
        ok = last >= 0
        out[ok] = per_return[last[ok]]
    return out


def gjr_variance(
    returns: np.ndarray, params: Params, horizons: tuple[int, ...], warmup: int = WARMUP
) -> np.ndarray:
    """h-session variance forecasts `[n, H]` of one ticker's daily log returns `[n]` (time order).

    Over the finite returns, the filter starts from `backcast = mean(r_1^2 .. r_w^2)` (w = `warmup`)
    and row t forecasts from returns up to and including t (causal once past the warm-up). NaN
    before the w-th return; a row whose return is missing carries the last value forward.
    """
    r = np.asarray(returns, dtype=np.float64)
    x = r[np.isfinite(r)]
    per_return = np.full((x.size, len(horizons)), np.nan)
    if x.size >= warmup:
        s2 = gjr_conditional_variance(x, params, float(np.mean(x[:warmup] ** 2)))
        per_return = gjr_horizon_variance(s2[1:], params, horizons)
        per_return[: warmup - 1] = np.nan
    return _by_last_return(r, per_return, len(horizons))


def ewma_horizon_variance(
    returns: np.ndarray, lam: float, horizons: tuple[int, ...], warmup: int = WARMUP
) -> np.ndarray:
    """`EwmaVol`'s h-session variance `s2_ewma * h`, `[n] -> [n, H]` (the GJR fallback)."""
    s2 = ewma_variance(returns, lam, warmup)
    return s2[:, None] * np.asarray(horizons, dtype=np.float64)


def panel_ewma_variance(sorted_panel: pl.DataFrame, lam: float, horizons: tuple[int, ...]) -> np.ndarray:
    """`ewma_horizon_variance` of every ticker of a panel sorted by (ticker, date): `[rows, H]`."""
    r = daily_returns(sorted_panel)
    out = np.full((r.size, len(horizons)), np.nan)
    for a, b in ticker_bounds(sorted_panel[TICKER].to_numpy()):
        out[a:b] = ewma_horizon_variance(r[a:b], lam, horizons)
    return out


# --- estimation ----------------------------------------------------------------------------------


def fit_gjr(returns: np.ndarray, min_returns: int = MIN_RETURNS) -> tuple[Params | None, str | None]:
    """Fit a zero-mean GJR-GARCH(1,1) to one ticker's daily log returns with `arch`.

    Returns `(params, None)` in raw-return units, or `(None, reason)` when the fit is not usable
    (the module docstring lists the reasons).
    """
    from arch import arch_model

    x = np.asarray(returns, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < min_returns:
        return None, f"{x.size} returns dated <= train_end, fewer than the {min_returns} a fit needs"
    if np.ptp(x) == 0.0:
        return None, "constant returns (GJR-GARCH is not identified)"
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # arch's ConvergenceWarning: checked just below
            model = arch_model(100.0 * x, mean="Zero", vol="GARCH", p=1, o=1, q=1, rescale=False)
            res = model.fit(disp="off", show_warning=False)
    except Exception as e:  # any failure of the optimiser is a fallback, with its message
        return None, f"arch raised {type(e).__name__}: {e}"
    if res.convergence_flag != 0:
        message = getattr(res.optimization_result, "message", "")
        return None, f"the optimiser did not converge (flag {res.convergence_flag}: {message})"
    omega, alpha, gamma, beta = (float(v) for v in res.params.to_numpy())
    params = (omega / _PERCENT2, alpha, gamma, beta)
    if not all(math.isfinite(v) for v in params):
        return None, f"non-finite parameters {params}"
    if params[0] <= 0 or min(alpha, alpha + gamma, beta) < -_CONSTRAINT_TOL:
        return None, f"parameters outside the GJR constraints {params}"
    # SLSQP meets its bounds only to rounding (alpha = -2e-17): clip onto them.
    alpha = max(alpha, 0.0)
    gamma, beta = max(gamma, -alpha), max(beta, 0.0)
    params = (params[0], alpha, gamma, beta)
    persistence = alpha + 0.5 * gamma + beta
    if persistence > 1.0 + STATIONARITY_TOL:
        return None, f"non-stationary: persistence alpha + gamma/2 + beta = {persistence:.9f} > 1"
    if persistence > 1.0:  # on the bound to rounding: integrated, exactly
        params = (params[0], alpha, gamma, beta - (persistence - 1.0))
    return params, None


#: How many fits `fit_gjr_remembered` keeps (a few hundred bytes each): one retrain's universe.
REMEMBERED_FITS = 20_000
_remembered: OrderedDict[tuple[bytes, int], tuple[Params | None, str | None]] = OrderedDict()


def fit_gjr_remembered(
    returns: np.ndarray, min_returns: int = MIN_RETURNS
) -> tuple[Params | None, str | None]:
    """`fit_gjr`, remembered by the returns' bytes (the last `REMEMBERED_FITS` distinct inputs).

    A retrain fits every ticker's returns up to one `train_end` three times (the LSTM's `blend`
    prior, `gjr_garch` and `vol_blend`), and so does each fold: about 40 ms per ticker each time,
    200 s at 5,000 tickers. The fit is deterministic, so a repeat returns the same result."""
    x = np.ascontiguousarray(returns, dtype=np.float64)
    key = (hashlib.blake2b(x.tobytes(), digest_size=16).digest(), min_returns)
    if key in _remembered:
        _remembered.move_to_end(key)
        return _remembered[key]
    result = _remembered[key] = fit_gjr(x, min_returns)
    if len(_remembered) > REMEMBERED_FITS:
        _remembered.popitem(last=False)
    return result
