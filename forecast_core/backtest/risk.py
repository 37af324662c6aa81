"""Risk and performance statistics of a return series: CAGR, volatility, Sharpe, Sortino,
drawdown, hit rate, profit factor, turnover, and the probabilistic and deflated Sharpe ratios.

`r` is a series of n net simple returns, `A` sessions a year, equity `E_t = prod_{s<=t}(1 + r_s)`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

#: Euler-Mascheroni constant (expected maximum of Gaussian trials, Bailey & Lopez de Prado 2014).
EULER_GAMMA = 0.5772156649015329


def _returns(r: np.ndarray) -> np.ndarray:
    return np.asarray(r, dtype=np.float64)


def total_return(r: np.ndarray) -> float:
    """`E_n - 1 = prod(1 + r) - 1`."""
    return float(np.prod(1.0 + _returns(r)) - 1.0)


def cagr(r: np.ndarray, periods_per_year: int = 252) -> float:
    """Compound annual growth rate: `E_n^(A / n) - 1` (n sessions, A a year)."""
    r = _returns(r)
    growth = float(np.prod(1.0 + r))
    if r.size == 0 or growth <= 0:
        return -1.0 if r.size else math.nan
    return growth ** (periods_per_year / r.size) - 1.0


def annualised_volatility(r: np.ndarray, periods_per_year: int = 252) -> float:
    """`std(r) * sqrt(A)`, sample standard deviation (ddof 1)."""
    r = _returns(r)
    return float(np.std(r, ddof=1) * math.sqrt(periods_per_year)) if r.size > 1 else math.nan


def per_period_sharpe(r: np.ndarray) -> float:
    """`mean(r) / std(r)` (ddof 1, risk-free rate 0); NaN for fewer than 2 returns or std 0."""
    r = _returns(r)
    if r.size < 2:
        return math.nan
    sd = float(np.std(r, ddof=1))
    return float(np.mean(r)) / sd if sd > 1e-15 else math.nan


def sharpe_ratio(r: np.ndarray, periods_per_year: int = 252) -> float:
    """Annualised Sharpe ratio: `mean(r) / std(r) * sqrt(A)` (risk-free rate 0, ddof 1)."""
    return per_period_sharpe(r) * math.sqrt(periods_per_year)


def sortino_ratio(r: np.ndarray, periods_per_year: int = 252) -> float:
    """`mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(A)` (downside deviation about 0, over all n)."""
    r = _returns(r)
    if r.size == 0:
        return math.nan
    dd = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    return float(np.mean(r)) / dd * math.sqrt(periods_per_year) if dd > 0 else math.nan


def max_drawdown(r: np.ndarray) -> tuple[float, int]:
    """Deepest fall from a peak and the longest time under water.

    `drawdown_t = 1 - E_t / max_{s<=t} E_s` (with E_0 = 1 as the first peak);
    returns `(max_t drawdown_t, duration)`, duration = the longest run of consecutive sessions
    with `E_t` below its running peak (sessions from the peak to the recovery, the recovery
    session excluded, or to the end if not recovered).
    """
    r = _returns(r)
    if r.size == 0:
        return math.nan, 0
    equity = np.concatenate([[1.0], np.cumprod(1.0 + r)])
    peak = np.maximum.accumulate(equity)
    depth = float(np.max(1.0 - equity / peak))
    under = equity < peak * (1 - 1e-12)
    longest = run = 0
    for u in under:
        run = run + 1 if u else 0
        longest = max(longest, run)
    return depth, longest


def hit_rate(r: np.ndarray, position: np.ndarray) -> float:
    """Share of sessions in the market (`position != 0`) with a positive net return."""
    r, position = _returns(r), np.asarray(position)
    active = position != 0
    return float(np.mean(r[active] > 0)) if active.any() else math.nan


def profit_factor(r: np.ndarray) -> float:
    """`sum(r | r > 0) / |sum(r | r < 0)|`; inf with gains and no loss, NaN with neither."""
    r = _returns(r)
    gains, losses = float(r[r > 0].sum()), float(-r[r < 0].sum())
    if losses > 0:
        return gains / losses
    return math.inf if gains > 0 else math.nan


def annual_turnover(turnover: np.ndarray, periods_per_year: int = 252) -> float:
    """One-way turnover a year, in multiples of the capital: `sum|w_t - w_{t-1}| / n * A`."""
    t = _returns(turnover)
    return float(t.sum() / t.size * periods_per_year) if t.size else math.nan


def probabilistic_sharpe_ratio(r: np.ndarray, sr_benchmark: float = 0.0) -> float:
    """Probability that the true (per-session) Sharpe ratio exceeds `sr_benchmark`.

    Bailey & Lopez de Prado (2012), with `SR = per_period_sharpe(r)`, skewness `g3` and
    (non-excess) kurtosis `g4` of r (population moments) and n returns::

        PSR(SR*) = Phi( (SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2) )

    NaN when the Sharpe ratio is undefined (fewer than 2 returns, or constant returns).
    """
    r = _returns(r)
    sr = per_period_sharpe(r)
    if not math.isfinite(sr) or not math.isfinite(sr_benchmark):
        return math.nan
    g3 = float(stats.skew(r))
    g4 = float(stats.kurtosis(r, fisher=False))
    denom = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr**2
    if not denom > 0:
        return math.nan
    return float(stats.norm.cdf((sr - sr_benchmark) * math.sqrt(r.size - 1) / math.sqrt(denom)))


def expected_max_sharpe(sr_variance: float, n_trials: int) -> float:
    """Expected maximum of `n_trials` per-session Sharpe ratios whose true value is 0.

    `SR0 = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))`, V the variance of
    the trials' Sharpe ratios, gamma the Euler-Mascheroni constant (Bailey & Lopez de Prado
    2014). 0 for a single trial or an unknown variance (the PSR against 0).
    """
    if n_trials < 2 or not math.isfinite(sr_variance) or sr_variance <= 0:
        return 0.0
    inv = stats.norm.ppf
    return math.sqrt(sr_variance) * (
        (1.0 - EULER_GAMMA) * inv(1.0 - 1.0 / n_trials) + EULER_GAMMA * inv(1.0 - 1.0 / (n_trials * math.e))
    )


def deflated_sharpe_ratio(r: np.ndarray, trial_sharpes: np.ndarray, n_trials: int) -> float:
    """PSR against the Sharpe ratio the best of `n_trials` skill-less strategies would show.

    `DSR = PSR(SR0)`, `SR0 = expected_max_sharpe(var(trial_sharpes), n_trials)` with
    `trial_sharpes` the per-session Sharpe ratios of the strategies tried (the finite ones; the
    variance with ddof 1). Bailey & Lopez de Prado, "The Deflated Sharpe Ratio" (2014).
    """
    finite = np.asarray(trial_sharpes, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    variance = float(np.var(finite, ddof=1)) if finite.size > 1 else math.nan
    return probabilistic_sharpe_ratio(r, expected_max_sharpe(variance, n_trials))
