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
from dataclasses import dataclass
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


def ewma_variance(returns: np.ndarray, lam: float, warmup: int = WARMUP) -> np.ndarray:
    """RiskMetrics variance of one ticker's daily log returns `[n]` (time order) -> `[n]`.

    Over the finite returns r_1, r_2, ...: `s2_w = mean(r_1^2 .. r_w^2)` (zero-mean variance of the
    first w = `warmup` returns), then `s2_t = lam * s2_{t-1} + (1 - lam) * r_t^2`. Causal: s2_t uses
    returns up to and including t. NaN before the w-th return (warm-up); a row whose return is
    missing carries the last value forward. (`aligned_ewma_variance` on a one-ticker panel.)
    """
    r = np.asarray(returns, dtype=np.float64)
    aligned = AlignedReturns.of(r, np.array([r.size]))
    return aligned.to_rows(aligned_ewma_variance(aligned.x, lam, warmup))


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


def gjr_conditional_variance(returns: np.ndarray, params, backcast, start=None) -> np.ndarray:
    """GJR(1,1) conditional variances of finite returns `r [T]` (time order), or of n tickers'
    `[T, n]` with per-ticker parameters and backcasts `[n]` -> `[T + 1]` (`[T + 1, n]`).

    Element t < T is Var(r_t | r_0..r_{t-1}), `arch`'s `conditional_volatility ** 2` for the same
    backcast (its pre-sample r^2 and s2, with I(r < 0) taken as 1/2); element T is the forecast of
    the next return's variance. s2_{t+1} = x_t + beta * s2_t, stepped in time across the tickers
    at once (the arithmetic of `scipy.signal.lfilter([1], [1, -beta])`, to the last bit). `start`
    (`[n]`): Var(r_0) carried from an earlier run, instead of the backcast's.
    """
    omega, alpha, gamma, beta = params
    r = np.asarray(returns, dtype=np.float64)
    out = np.empty((r.shape[0] + 1, *r.shape[1:]))
    out[0] = omega + (alpha + 0.5 * gamma + beta) * backcast if start is None else start
    x = omega + (alpha + gamma * (r < 0)) * r**2
    carry = beta * out[0]
    for t in range(r.shape[0]):
        out[t + 1] = x[t] + carry
        carry = beta * out[t + 1]
    return out


def gjr_horizon_variance(next_variance: np.ndarray, params, horizons: tuple[int, ...]) -> np.ndarray:
    """Variance of the h-session return, the sum of the h one-step-ahead forecasts: `[T, ...] ->
    [T, ..., H]` (parameters scalars, or `[n]` for `[T, n]`).

    `next_variance` is s2_{t+1|t}; later steps follow s2_{t+k+1|t} = omega + phi * s2_{t+k|t} with
    phi = alpha + gamma / 2 + beta (symmetric innovations).
    """
    omega, alpha, gamma, beta = params
    phi = alpha + 0.5 * gamma + beta
    s = np.array(next_variance, dtype=np.float64)  # a copy, stepped in place
    total = np.zeros_like(s)
    out = np.empty((*s.shape, len(horizons)))
    for k in range(1, max(horizons) + 1):
        total += s
        if k in horizons:
            out[..., horizons.index(k)] = total
        s *= phi
        s += omega
    return out


def gjr_variance(
    returns: np.ndarray, params: Params, horizons: tuple[int, ...], warmup: int = WARMUP
) -> np.ndarray:
    """h-session variance forecasts `[n, H]` of one ticker's daily log returns `[n]` (time order).

    Over the finite returns, the filter starts from `backcast = mean(r_1^2 .. r_w^2)` (w = `warmup`)
    and row t forecasts from returns up to and including t (causal once past the warm-up). NaN
    before the w-th return; a row whose return is missing carries the last value forward.
    (`aligned_gjr_variance` on a one-ticker panel.)
    """
    r = np.asarray(returns, dtype=np.float64)
    aligned = AlignedReturns.of(r, np.array([r.size]))
    per_return = aligned_gjr_variance(aligned.x, np.array([params], dtype=np.float64), horizons, warmup)
    return aligned.to_rows(per_return)


def ewma_horizon_variance(
    returns: np.ndarray, lam: float, horizons: tuple[int, ...], warmup: int = WARMUP
) -> np.ndarray:
    """`EwmaVol`'s h-session variance `s2_ewma * h`, `[n] -> [n, H]` (the GJR fallback)."""
    s2 = ewma_variance(returns, lam, warmup)
    return s2[:, None] * np.asarray(horizons, dtype=np.float64)


def panel_variance(
    sorted_panel: pl.DataFrame,
    lam: float,
    horizons: tuple[int, ...],
    gjr: dict[str, Params] | None = None,
    warmup: int = WARMUP,
) -> np.ndarray:
    """h-session variance `[rows, H]` of every row of a panel sorted by (ticker, date): GJR with
    `gjr[ticker]`'s parameters for the tickers there, `EwmaVol`'s `s2_ewma * h` for the rest
    (every ticker without `gjr`). A chunk of `CHUNK_TICKERS` tickers at a time, vectorised across
    them; the same values as `gjr_variance` / `ewma_horizon_variance` ticker by ticker."""
    return panel_variances(sorted_panel, lam, horizons, gjr, warmup, with_ewma=False).model


@dataclass(frozen=True)
class PanelVariances:
    """The variances of every row of a (ticker, date)-sorted panel, and the recursions' state.

    ewma `[rows, H]`: `EwmaVol`'s `s2_ewma * h` (None unless asked for); model `[rows, H]`: GJR
    where the ticker has parameters, else the EWMA's; s2 `[rows]`: the RiskMetrics variance after
    the row; next_variance `[rows]`: GJR's variance forecast for the ticker's next return (NaN
    for a ticker without parameters). Both NaN in warm-up. (s2, next_variance) at a row is all a
    later run needs to continue the recursions from that row (`CARRY_COLUMNS`)."""

    ewma: np.ndarray | None
    model: np.ndarray
    s2: np.ndarray
    next_variance: np.ndarray


#: The columns of a variance carry: each ticker's `PanelVariances.s2` and `.next_variance` at a row.
CARRY_COLUMNS = ("s2", "next_variance")


def carried(carry: pl.DataFrame, names: list[str], columns: tuple[str, ...]) -> np.ndarray:
    """`<float64>[len(names), len(columns)]`: the carry frame's `columns` for each of `names` (its
    rows keyed by ticker); raises naming a ticker without a row."""
    rows = dict(
        zip(carry[TICKER].to_list(), carry.select(columns).to_numpy().astype(np.float64), strict=True)
    )
    missing = [t for t in names if t not in rows]
    if missing:
        raise ValueError(f"no recursion state for tickers {missing[:10]} to continue from")
    return np.array([rows[t] for t in names], dtype=np.float64).reshape(len(names), len(columns))


def panel_variances(
    sorted_panel: pl.DataFrame,
    lam: float,
    horizons: tuple[int, ...],
    gjr: dict[str, Params] | None = None,
    warmup: int = WARMUP,
    with_ewma: bool = True,
    carry: pl.DataFrame | None = None,
) -> PanelVariances:
    """Every row's variances (`PanelVariances`) from one pass over the returns: the EWMA of each
    ticker, and GJR's filter with `gjr[ticker]`'s parameters where it has them. With `carry` (per
    ticker, `CARRY_COLUMNS` at the row before its first here), each ticker's recursions continue
    from there (no warm-up), so a panel of a ticker's last rows gives the values its whole
    history would on those rows, to the bit."""
    r = daily_returns(sorted_panel)
    h = np.asarray(horizons, dtype=np.float64)
    shape = (r.size, len(horizons))
    ewma_out, model_out = (np.full(shape, np.nan) if with_ewma else None), np.full(shape, np.nan)
    s2_out, next_out = np.full(r.size, np.nan), np.full(r.size, np.nan)
    gjr = gjr or {}
    for a, b, names, lengths in ticker_chunks(sorted_panel):
        lead = 0 if carry is None else 1
        aligned = AlignedReturns.of(r[a:b], lengths, lead)
        has = np.array([t in gjr for t in names], dtype=bool)
        params = np.array([gjr.get(t, (np.nan,) * 4) for t in names], dtype=np.float64).reshape(-1, 4)
        x = aligned.x[:, lead:]
        if carry is None:
            s2 = aligned_ewma_variance(x, lam, warmup)
        else:
            c_s2, c_nv = carried(carry, names, CARRY_COLUMNS).T
            s2 = np.concatenate([c_s2[:, None], ewma_continued(x, lam, c_s2)], axis=1)
        s2_rows = aligned.to_rows(s2)
        ewma = s2_rows[:, None] * h
        if with_ewma:
            ewma_out[a:b] = ewma
        if has.any():  # (next_out stays NaN for a chunk without GJR parameters)
            nv = np.full(aligned.x.shape, np.nan)
            if carry is None:
                nv[has] = aligned_gjr_next_variance(x[has], params[has], warmup)
            else:
                start = aligned_gjr_next_variance(x[has], params[has], warmup, c_nv[has])
                nv[has] = np.concatenate([c_nv[has, None], start], axis=1)
            nv_rows = aligned.to_rows(nv)
            has_rows = np.repeat(has, lengths)
            nv_rows[~has_rows | np.isnan(s2_rows)] = np.nan
            p = tuple(np.repeat(params[:, i], lengths)[has_rows] for i in range(4))
            ewma[has_rows] = gjr_horizon_variance(nv_rows[has_rows], p, horizons)
            next_out[a:b] = nv_rows
        model_out[a:b], s2_out[a:b] = ewma, s2_rows
    return PanelVariances(ewma_out, model_out, s2_out, next_out)


# --- the variance recursions, a chunk of tickers at a time ---------------------------------------

#: Tickers whose recursions run together as one `[returns, tickers]` matrix (about 40 MB each at
#: 20 years of sessions): vectorised across tickers, with memory bounded whatever the universe.
CHUNK_TICKERS = 1024


@dataclass(frozen=True)
class AlignedReturns:
    """The finite daily returns of consecutive tickers of a (ticker, date)-sorted panel, aligned on
    their own count: `x <float64>[n, T]` holds ticker j's k-th finite return at [j, k] (NaN past
    its last; T = the most finite returns of any of them). `row_index <int64>[rows]` gives each
    panel row the flat index j * T + k of the last finite return at or before it (-1 before the
    first): a row whose return is missing carries the last value forward."""

    x: np.ndarray
    row_index: np.ndarray

    @classmethod
    def of(cls, returns: np.ndarray, lengths: np.ndarray, lead: int = 0) -> AlignedReturns:
        """From the rows' returns `[rows]` of tickers holding consecutive runs of `lengths [n]` rows.
        `lead`: that many NaN columns before each ticker's first return, for values carried from an
        earlier run (rows before the first finite return then read column `lead - 1`)."""
        r = np.asarray(returns, dtype=np.float64)
        n = lengths.size
        ticker = np.repeat(np.arange(n), lengths)
        valid = np.isfinite(r)
        seen = np.r_[0, np.cumsum(valid)]
        ends = np.cumsum(lengths)
        before = seen[ends - lengths]  # finite returns of earlier tickers
        width = int((seen[ends] - before).max()) + lead if n else lead
        last = seen[1:] - before[ticker] - 1 + lead
        index = np.where(last >= 0, ticker * width + last, -1)
        x = np.full(n * width, np.nan)
        x[index[valid]] = r[valid]
        return cls(x.reshape(n, width), index)

    def to_rows(self, per_return: np.ndarray) -> np.ndarray:
        """Values per finite return `[n, T, ...]` -> per panel row `[rows, ...]` (NaN before a
        ticker's first finite return)."""
        flat = per_return.reshape(-1, *per_return.shape[2:])
        if not flat.shape[0]:  # no ticker has a finite return
            return np.full((self.row_index.size, *flat.shape[1:]), np.nan)
        out = np.take(flat, np.maximum(self.row_index, 0), axis=0)
        out[self.row_index < 0] = np.nan
        return out


def ticker_chunks(sorted_panel: pl.DataFrame, size: int = CHUNK_TICKERS):
    """`(start, stop, names, lengths)` per run of up to `size` tickers of a panel sorted by
    (ticker, date): its rows [start, stop), the tickers' names and row counts `<int64>[n]`."""
    runs = sorted_panel[TICKER].rle().struct.unnest()
    names, lengths = runs["value"].cast(pl.String).to_list(), runs["len"].to_numpy().astype(np.int64)
    ends = np.cumsum(lengths)
    for i in range(0, len(names), size):
        part = lengths[i : i + size]
        stop = int(ends[i + part.size - 1])
        yield stop - int(part.sum()), stop, names[i : i + size], part


def _warmup_mean_square(x: np.ndarray, warmup: int) -> np.ndarray:
    """Mean of each ticker's first `warmup` squared returns `x [n, T]` -> `[n]` (NaN with fewer),
    reduced along contiguous rows as a single series' `np.mean` is (the same rounding)."""
    if x.shape[1] < warmup:
        return np.full(x.shape[0], np.nan)
    return np.mean(x[:, :warmup] ** 2, axis=1)


def aligned_ewma_variance(x: np.ndarray, lam: float, warmup: int = WARMUP) -> np.ndarray:
    """RiskMetrics variance per finite return `[n, T] -> [n, T]`: `s2` of the w-th return
    (w = `warmup`) is the mean of the first w squares, then `s2_k = lam * s2_{k-1} + (1 - lam) *
    r_k^2`; NaN before the w-th return."""
    s2 = np.full(x.shape, np.nan)
    if x.shape[1] >= warmup:
        s2[:, warmup - 1] = _warmup_mean_square(x, warmup)
        s2[:, warmup:] = ewma_continued(x[:, warmup:], lam, s2[:, warmup - 1])
    return s2


def ewma_continued(x: np.ndarray, lam: float, s2: np.ndarray) -> np.ndarray:
    """The RiskMetrics recursion over returns `x [n, T]` from each ticker's variance `s2 [n]`
    before them: `y_k = lam * y_{k-1} + (1 - lam) * x_k^2` -> `[n, T]` (one `lfilter`, started
    from y_{-1} = s2 via its state, so a continued run repeats the whole one's arithmetic)."""
    if x.shape[1] == 0:
        return np.empty(x.shape)
    return lfilter([1.0 - lam], [1.0, -lam], x**2, axis=1, zi=lam * s2[:, None])[0]


def aligned_gjr_next_variance(
    x: np.ndarray, params: np.ndarray, warmup: int = WARMUP, start: np.ndarray | None = None
) -> np.ndarray:
    """GJR's forecast of the next return's variance after each finite return `[n, T] -> [n, T]`
    with each ticker's parameters `params <float64>[n, 4]`: the filter starts from `backcast =
    mean(r_1^2 .. r_w^2)`, or from `start [n]` (the variance of the first return, carried)."""
    p = tuple(params[:, i] for i in range(4))
    backcast = _warmup_mean_square(x, warmup) if start is None else None
    # The recursion steps in time: run it on [T, n] rows, contiguous per step.
    s2 = gjr_conditional_variance(np.ascontiguousarray(x.T), p, backcast, start)
    return np.ascontiguousarray(s2[1:].T)


def aligned_gjr_variance(
    x: np.ndarray, params: np.ndarray, horizons: tuple[int, ...], warmup: int = WARMUP
) -> np.ndarray:
    """h-session GJR variance per finite return `[n, T] -> [n, T, H]` with each ticker's
    parameters `params <float64>[n, 4]`: the filter starts from `backcast = mean(r_1^2 .. r_w^2)`
    and return k's value forecasts from returns up to and including k; NaN before the w-th."""
    p = tuple(params[:, i : i + 1] for i in range(4))
    out = gjr_horizon_variance(aligned_gjr_next_variance(x, params, warmup), p, horizons)
    out[:, : warmup - 1] = np.nan
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
