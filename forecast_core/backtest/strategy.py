"""Strategy backtest of the horizon-1 forecasts: rules, timing, costs, risk metrics and the
deflated Sharpe ratio. Pure polars and numpy; the Dagster asset only reads, calls and writes.

Timing. Dates are sessions of the ticker's own price series and `P_d` is the (adjusted) close of
session `d`. A forecast dated `t` was made after the close of `t` from data up to `P_t`, so the
earliest price it can trade at is the next session's close::

    close of t        close of t+1                 close of t+2
    forecast made --> order filled, position w_t --> held until here
                      (trade_date)                   (date of the return row)
    strategy return over the row: w_t * r,  r = P_{t+2} / P_{t+1} - 1

`align_next_session` builds exactly that pairing and `check_timing` rejects any row whose forecast
is not strictly older than the trade that uses it (`forecast_date < trade_date < date`): a
forecast dated the day of (or after) the close it trades at would be using a price it could not
have known. Forecasts whose t+2 close is not known yet are left out (pending).

Rules (the same for every model; `BacktestConfig` holds the numbers)::

    long     when q50 > 0 and q10 > -max_downside, flat otherwise (no shorting)
    sigma    = (q90 - q10) / (2 * z_0.9) * sqrt(A)       the 80% band read as a normal band,
                                                         annualised; z_0.9 = 1.2816
    position = min(max_position, vol_target / sigma)     (max_position if sigma = 0)

`buy_and_hold` holds a position of 1 on the same rows. Costs: trading from w_{t-1} to w_t costs
`(cost_bps + slippage_bps) / 10^4 * |w_t - w_{t-1}|` of the capital, charged on the row the trade
opens; each (strategy, ticker, period) starts flat, so its first row pays for entering. Returns
are simple returns of the capital (the unused part earns nothing):
`net = w_t * r - cost`. The portfolio gives every ticker the same capital, rebalanced each session
(its rows are the cross-sectional means, ticker `portfolio`).

Periods: `fold_<k>` (the forecasts of fold k's test slice), `all` (every fold's forecasts in one
run) and `published` (the daily forecasts of the `forecasts` table). Metrics, with `r` the net
returns of n sessions, `A` sessions a year, equity `E_t = prod_{s<=t}(1 + r_s)`, `E_0 = 1`, are in
the docstrings of the functions below.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import polars as pl

from forecast_core.backtest.risk import (
    annual_turnover,
    annualised_volatility,
    cagr,
    deflated_sharpe_ratio,
    hit_rate,
    max_drawdown,
    per_period_sharpe,
    probabilistic_sharpe_ratio,
    profit_factor,
    sharpe_ratio,
    sortino_ratio,
    total_return,
)  # fmt: skip
from forecast_core.columns import DATE, PRICE, TICKER
from forecast_core.config import BacktestConfig
from forecast_core.data.features import with_price
from forecast_core.errors import ForecastError

STRATEGY = "strategy"
PERIOD = "period"
FORECAST_DATE = "forecast_date"
TRADE_DATE = "trade_date"
ASSET_RETURN = "asset_return"
POSITION = "position"
TURNOVER = "turnover"
GROSS = "gross_return"
COST = "cost"
NET = "net_return"
METRIC = "metric"
VALUE = "value"

BUY_AND_HOLD = "buy_and_hold"
PORTFOLIO = "portfolio"
ALL = "all"
PUBLISHED = "published"

#: Columns of the `backtest_returns` table, in order.
RETURN_COLUMNS = (STRATEGY, TICKER, DATE, PERIOD, POSITION, TURNOVER, GROSS, COST, NET)
#: The metrics stored per (strategy, ticker, period), in the order the view shows them.
METRICS = (
    "n_sessions", "total_return", "cagr", "ann_volatility", "sharpe", "sortino", "max_drawdown",
    "max_drawdown_duration", "hit_rate", "profit_factor", "turnover", "exposure", "psr", "dsr",
    "n_trials",
)  # fmt: skip

Z90 = NormalDist().inv_cdf(0.9)


class LookAheadError(ForecastError, ValueError):
    """A forecast would trade at a price that was not known when it was made."""


# -- timing -----------------------------------------------------------------------------------


def asset_returns(prices: pl.DataFrame) -> pl.DataFrame:
    """Close-to-close simple returns per ticker: (ticker, trade_date, date, asset_return).

    `prices` has ticker, date and adj_close and/or close (the raw_prices schema). Row `date` = d
    holds `P_d / P_{d-1} - 1` with `trade_date` = d-1, the ticker's previous session.
    """
    return (
        with_price(prices)
        .select(
            TICKER,
            pl.col(DATE).shift(1).over(TICKER).alias(TRADE_DATE),
            DATE,
            (pl.col(PRICE) / pl.col(PRICE).shift(1).over(TICKER) - 1.0).alias(ASSET_RETURN),
        )
        .filter(pl.col(TRADE_DATE).is_not_null())
        .collect()
    )


def align_next_session(signals: pl.DataFrame, returns: pl.DataFrame) -> pl.DataFrame:
    """Pair each forecast with the return it may trade: made at t, filled at t+1, held to t+2.

    signals: one row per (strategy, period, ticker, date) with q10, q50, q90 (`date` = t, the
    forecast's as-of session). returns: `asset_returns` output. Returns the signals' columns with
    `date` renamed `forecast_date`, plus `trade_date` (t+1), `date` (t+2) and `asset_return`
    (P_{t+2} / P_{t+1} - 1); rows whose t+2 is not known yet are dropped. Raises
    `LookAheadError` if the result fails `check_timing`, and `ValueError` if a forecast is dated
    on a session the ticker has no price for.
    """
    sessions = (
        returns.select(TICKER, pl.col(TRADE_DATE).alias(DATE))
        .vstack(returns.select(TICKER, DATE))
        .unique()
        .sort(TICKER, DATE)
        .with_columns(pl.col(DATE).shift(-1).over(TICKER).alias(TRADE_DATE))
    )
    dated = signals.join(sessions, on=[TICKER, DATE], how="left")
    unknown = dated.filter(pl.col(TRADE_DATE).is_null()).join(
        sessions.select(TICKER, DATE), on=[TICKER, DATE], how="anti"
    )
    if unknown.height:
        rows = unknown.select(TICKER, DATE).unique().sort(TICKER, DATE).head(5).rows()
        raise ValueError(f"forecasts dated on sessions without a price (ticker, date): {rows}")
    aligned = (
        dated.rename({DATE: FORECAST_DATE})
        .join(returns, on=[TICKER, TRADE_DATE], how="inner")
        .sort(*[c for c in (STRATEGY, PERIOD) if c in signals.columns], TICKER, DATE)
    )
    check_timing(aligned)
    return aligned


def check_timing(aligned: pl.DataFrame) -> None:
    """Reject rows where a forecast is not strictly older than the trade it drives.

    Every row must satisfy `forecast_date < trade_date < date`: the position is set at the close
    of `trade_date` from a forecast made at an earlier close, and held over the return from
    `trade_date` to `date`. A forecast dated `trade_date` or later has seen the price it trades
    at (or later ones): a look-ahead, raised as `LookAheadError` naming the first rows. Each
    (strategy, period, ticker, date) must also be unique (no return traded twice).
    """
    bad = aligned.filter(
        ~((pl.col(FORECAST_DATE) < pl.col(TRADE_DATE)) & (pl.col(TRADE_DATE) < pl.col(DATE)))
    )
    if bad.height:
        rows = bad.select(TICKER, FORECAST_DATE, TRADE_DATE, DATE).head(5).rows()
        raise LookAheadError(
            f"{bad.height} forecasts are applied to returns that start on or before their own "
            f"date (ticker, forecast_date, trade_date, return date): {rows}; a forecast made at "
            "the close of t can first trade at the close of the next session"
        )
    keys = [c for c in (STRATEGY, PERIOD) if c in aligned.columns] + [TICKER, DATE]
    dup = aligned.group_by(keys).len().filter(pl.col("len") > 1)
    if dup.height:
        raise LookAheadError(f"returns traded more than once: {dup.head(5).rows()}")


# -- rules and simulation ---------------------------------------------------------------------


def rule_position(cfg: BacktestConfig) -> pl.Expr:
    """The position of the documented rule, from columns q10, q50, q90 (log returns, horizon 1).

    `long = q50 > 0 and q10 > -max_downside`; `sigma = (q90 - q10) / (2 z_0.9) sqrt(A)`;
    `position = min(max_position, vol_target / sigma)` when long (max_position if sigma = 0), else 0.
    """
    sigma = (pl.col("q90") - pl.col("q10")) / (2.0 * Z90) * math.sqrt(cfg.periods_per_year)
    size = (
        pl.when(sigma > 0)
        .then(pl.min_horizontal(pl.lit(cfg.max_position), cfg.vol_target / sigma))
        .otherwise(pl.lit(cfg.max_position))
    )
    long = (pl.col("q50") > 0) & (pl.col("q10") > -cfg.max_downside)
    return pl.when(long).then(size).otherwise(0.0).cast(pl.Float64).alias(POSITION)


def with_buy_and_hold(aligned: pl.DataFrame) -> pl.DataFrame:
    """`aligned` with positions from `rule_position` already in `position`, plus a `buy_and_hold`
    strategy (position 1) on every (period, ticker, date) that any strategy trades."""
    bench = (
        aligned.select(PERIOD, TICKER, FORECAST_DATE, TRADE_DATE, DATE, ASSET_RETURN)
        .unique(subset=[PERIOD, TICKER, DATE], keep="first")
        .with_columns(pl.lit(BUY_AND_HOLD).alias(STRATEGY), pl.lit(1.0).alias(POSITION))
    )
    return pl.concat([aligned, bench], how="diagonal_relaxed")


def simulate(
    positions: pl.DataFrame, cfg: BacktestConfig, exits: dict[str, dt.date] | None = None
) -> pl.DataFrame:
    """Per-ticker strategy returns with costs, one row per (strategy, ticker, date, period).

    positions: aligned rows (see `align_next_session`) with a `position` column. Per (strategy,
    period, ticker) in date order, starting flat:
    `turnover_t = |w_t - w_{t-1}|` (w_0 = 0), `gross = w_t * r`,
    `cost = (cost_bps + slippage_bps) / 10^4 * turnover_t`, `net = gross - cost`.
    `exits`: tickers delisted (their last session as members); the position is sold at the close
    of the ticker's last traded row, which therefore also trades `|w_t|` out (turnover and cost).
    Checks the timing first (`check_timing`).
    """
    check_timing(positions)
    rate = (cfg.cost_bps + cfg.slippage_bps) / 1e4
    by = [STRATEGY, PERIOD, TICKER]
    delisted = list(exits or {})
    # A delisted ticker's last traded row (in each strategy and period that reaches it).
    exiting = (
        pl.col(TICKER).is_in(delisted)
        & (pl.col(DATE) == pl.col(DATE).max().over(by))
        & (pl.col(DATE) == pl.col(DATE).max().over(TICKER))
    )
    return (
        positions.sort(*by, DATE)
        .with_columns(
            (pl.col(POSITION) - pl.col(POSITION).shift(1, fill_value=0.0).over(by)).abs().alias(TURNOVER),
            (pl.col(POSITION) * pl.col(ASSET_RETURN)).alias(GROSS),
        )
        .with_columns(
            pl.when(exiting)
            .then(pl.col(TURNOVER) + pl.col(POSITION).abs())
            .otherwise(pl.col(TURNOVER))
            .alias(TURNOVER)
        )
        .with_columns((pl.col(TURNOVER) * rate).alias(COST))
        .with_columns((pl.col(GROSS) - pl.col(COST)).alias(NET))
        .select(RETURN_COLUMNS)
    )


#: The columns a portfolio row averages over its tickers.
_AVERAGED = (POSITION, TURNOVER, GROSS, COST, NET)


def portfolio_sums(returns: pl.DataFrame) -> pl.DataFrame:
    """Per (strategy, period, date), the sums over `returns`' tickers of the averaged columns and
    their count `n`: a part of the universe's share of the portfolio (`portfolio_from_sums`)."""
    return returns.group_by(STRATEGY, PERIOD, DATE).agg(
        *[pl.col(c).sum() for c in _AVERAGED], pl.len().alias("n")
    )


def portfolio_from_sums(sums: list[pl.DataFrame]) -> pl.DataFrame:
    """Equal-weight portfolio rows (ticker `portfolio`) from the parts' `portfolio_sums`: per
    (strategy, period, date), the mean of the tickers' position, turnover, gross return, cost and
    net return (each ticker's sleeve holds the same capital, rebalanced every session)."""
    return (
        pl.concat(sums)
        .group_by(STRATEGY, PERIOD, DATE)
        .agg(*[pl.col(c).sum() for c in _AVERAGED], pl.col("n").sum())
        .with_columns(*[pl.col(c) / pl.col("n") for c in _AVERAGED], pl.lit(PORTFOLIO).alias(TICKER))
        .select(RETURN_COLUMNS)
    )


# -- metrics tables ---------------------------------------------------------------------------


def performance(
    net: np.ndarray, position: np.ndarray, turnover: np.ndarray, periods_per_year: int = 252
) -> dict[str, float]:
    """Every metric of one return series but the DSR (which needs the other trials)."""
    depth, duration = max_drawdown(net)
    return {
        "n_sessions": float(len(net)),
        "total_return": total_return(net),
        "cagr": cagr(net, periods_per_year),
        "ann_volatility": annualised_volatility(net, periods_per_year),
        "sharpe": sharpe_ratio(net, periods_per_year),
        "sortino": sortino_ratio(net, periods_per_year),
        "max_drawdown": depth,
        "max_drawdown_duration": float(duration),
        "hit_rate": hit_rate(net, position),
        "profit_factor": profit_factor(net),
        "turnover": annual_turnover(turnover, periods_per_year),
        "exposure": float(np.mean(np.abs(position))) if len(position) else math.nan,
        "psr": probabilistic_sharpe_ratio(net),
    }


def metrics_frame(returns: pl.DataFrame, cfg: BacktestConfig) -> pl.DataFrame:
    """Long `backtest_metrics` rows (strategy, ticker, period, metric, value) of `returns`.

    The DSR of a strategy counts as trials every strategy backtested on the same ticker and
    period (the models, and buy_and_hold): `n_trials` is stored beside it. An undefined metric
    (the Sharpe ratio of a strategy that never trades, say) is null, not NaN.
    """
    rows = []
    for (ticker, period), block in returns.group_by(TICKER, PERIOD, maintain_order=True):
        series = {}
        for (strategy,), part in block.sort(DATE).group_by(STRATEGY, maintain_order=True):
            net = part[NET].to_numpy()
            series[strategy] = (
                net,
                performance(net, part[POSITION].to_numpy(), part[TURNOVER].to_numpy(), cfg.periods_per_year),
            )
        trial_sharpes = np.asarray([per_period_sharpe(net) for net, _ in series.values()])
        for strategy, (net, values) in series.items():
            values = values | {
                "dsr": deflated_sharpe_ratio(net, trial_sharpes, len(series)),
                "n_trials": float(len(series)),
            }
            rows += [(strategy, ticker, period, m, values[m]) for m in METRICS]
    return (
        pl.DataFrame(
            rows,
            schema={
                STRATEGY: pl.String,
                TICKER: pl.String,
                PERIOD: pl.String,
                METRIC: pl.String,
                VALUE: pl.Float64,
            },
            orient="row",
        )
        .with_columns(pl.col(VALUE).fill_nan(None))
        .sort(PERIOD, TICKER, STRATEGY, METRIC)
    )


# -- the whole backtest -----------------------------------------------------------------------


@dataclass
class BacktestResult:
    """`returns`: `backtest_returns` rows (tickers and portfolio); `metrics`: `backtest_metrics`."""

    returns: pl.DataFrame
    metrics: pl.DataFrame


def fold_signals(fold_predictions: pl.DataFrame, horizon: int = 1) -> pl.DataFrame:
    """Signals from `fold_predictions` rows of `horizon`: strategy = model, period `fold_<k>`,
    and the same rows again as period `all` (the folds' test slices must not overlap)."""
    rows = fold_predictions.filter(pl.col("horizon") == horizon)
    if rows.height == 0:
        raise ValueError(f"no fold predictions of horizon {horizon} to backtest")
    per_fold = rows.select(
        pl.col("model").alias(STRATEGY),
        pl.format("fold_{}", pl.col("fold")).alias(PERIOD),
        TICKER,
        DATE,
        "q10",
        "q50",
        "q90",
    )
    dup = per_fold.group_by(STRATEGY, TICKER, DATE).len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"fold test slices overlap (strategy, ticker, date): {dup.head(5).rows()}")
    return pl.concat([per_fold, per_fold.with_columns(pl.lit(ALL).alias(PERIOD))])


def published_signals(forecasts: pl.DataFrame, horizon: int = 1) -> pl.DataFrame:
    """Signals from the `forecasts` table's rows of `horizon` (the newest per as-of date and
    ticker): strategy and period `published`, whichever model served."""
    rows = (
        forecasts.filter(pl.col("horizon") == horizon)
        .sort("as_of_date", TICKER, "created_at")
        .unique(subset=["as_of_date", TICKER], keep="last")
    )
    return rows.select(
        pl.lit(PUBLISHED).alias(STRATEGY),
        pl.lit(PUBLISHED).alias(PERIOD),
        TICKER,
        pl.col("as_of_date").alias(DATE),
        "q10",
        "q50",
        "q90",
    )


def ticker_returns(
    signals: pl.DataFrame, prices: pl.DataFrame, cfg: BacktestConfig, exits: dict[str, dt.date] | None = None
) -> pl.DataFrame:
    """Per-ticker `backtest_returns` rows: the rules and buy-and-hold for `signals` (strategy,
    period, ticker, date, q10, q50, q90) traded on `prices` (raw_prices rows of members only), with
    costs; a ticker in `exits` is sold at the close of its last session (`simulate`)."""
    aligned = align_next_session(signals, asset_returns(prices)).with_columns(rule_position(cfg))
    return simulate(with_buy_and_hold(aligned), cfg, exits)


@dataclass
class PartedBacktest:
    """`run_backtest_in_parts`' result: the portfolio's `backtest_returns` rows, every
    `backtest_metrics` row (tickers and portfolio) and how many ticker rows went to the sink."""

    portfolio: pl.DataFrame
    metrics: pl.DataFrame
    ticker_rows: int


def run_backtest_in_parts(
    parts: Iterable[tuple[pl.DataFrame, pl.DataFrame]],
    cfg: BacktestConfig,
    exits: dict[str, dt.date] | None,
    sink: Callable[[pl.DataFrame], None],
) -> PartedBacktest:
    """`run_backtest` a part of the universe at a time, so that memory holds one part's rows: each
    part is (signals, prices) of some tickers (a ticker in one part only); its per-ticker rows go
    to `sink` as they are made, and only their metrics and portfolio sums are kept. A ticker's
    rows and metrics are those of the whole backtest (a ticker's trades and its DSR's trials are
    its own); the portfolio averages every part's tickers."""
    sums, metrics, rows = [], [], 0
    for signals, prices in parts:
        returns = ticker_returns(signals, prices, cfg, exits)
        if returns.is_empty():
            continue
        sums.append(portfolio_sums(returns))
        metrics.append(metrics_frame(returns, cfg))
        rows += returns.height
        sink(returns)
    if not sums:
        raise ValueError("no forecast could be traded: no signal has a next session's return to trade")
    book = portfolio_from_sums(sums).sort(STRATEGY, PERIOD, DATE)
    every = pl.concat([*metrics, metrics_frame(book, cfg)]).sort(PERIOD, TICKER, STRATEGY, METRIC)
    return PartedBacktest(portfolio=book, metrics=every, ticker_rows=rows)


def run_backtest(
    signals: pl.DataFrame,
    prices: pl.DataFrame,
    cfg: BacktestConfig,
    exits: dict[str, dt.date] | None = None,
) -> BacktestResult:
    """Rules, buy-and-hold, costs, the portfolio and every metric for `signals` (strategy,
    period, ticker, date, q10, q50, q90) traded on `prices` (raw_prices rows of members only);
    a ticker in `exits` is sold at the close of its last session (`simulate`)."""
    per_ticker: list[pl.DataFrame] = []
    parted = run_backtest_in_parts([(signals, prices)], cfg, exits, per_ticker.append)
    returns = pl.concat([*per_ticker, parted.portfolio]).sort(STRATEGY, PERIOD, TICKER, DATE)
    return BacktestResult(returns=returns, metrics=parted.metrics)


def equity_curves(returns: pl.DataFrame) -> pl.DataFrame:
    """Equity `E_t` and drawdown `1 - E_t / max E` per (strategy, ticker, period), by date."""
    by = [STRATEGY, TICKER, PERIOD]
    return (
        returns.sort(*by, DATE)
        .with_columns((1.0 + pl.col(NET)).cum_prod().over(by).alias("equity"))
        .with_columns(
            (
                1.0 - pl.col("equity") / pl.max_horizontal(pl.col("equity").cum_max().over(by), pl.lit(1.0))
            ).alias("drawdown")
        )
    )
