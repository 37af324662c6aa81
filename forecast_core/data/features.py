"""Point-in-time features and forward-return targets from a long price panel.

Every feature at (ticker, date t) is a polars expression over the ticker's own history up to and
including t: rolling windows look backwards only, and nothing is shifted forwards. Targets are the
only forward-looking columns and are built by a separate function, so that a feature list can never
pick one up by accident.

Input: the `raw_prices` schema (ticker, date, open, high, low, close, adj_close, volume, ...).
Returns are computed on `price` = adj_close where present, else close. Features that need columns
the source lacks (volume, high/low) are simply not produced.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import polars as pl

from forecast_core.columns import (
    ADJ_CLOSE,
    CLOSE,
    DATE,
    HIGH,
    LOW,
    OPEN,
    PRICE,
    TICKER,
    VOLUME,
    target_column,
)
from forecast_core.config import FeatureConfig, ForecastConfig
from forecast_core.data.row_order import TICKER_RUN as _BY
from forecast_core.data.row_order import sorted_by_ticker_date, ticker_run

#: Parkinson's constant: E[ln(H/L)^2] = 4 ln 2 sigma^2 for a driftless Brownian motion.
PARKINSON = 1.0 / (2.0 * math.sqrt(math.log(2.0)))

#: The one-session log return; the baselines (ewma_vol) and the price reconstruction rely on it.
DAILY_RETURN = "ret_1"


def with_price(prices: pl.DataFrame) -> pl.LazyFrame:
    """The panel in (ticker, date) order, lazy, with a `price` column (adj_close, else close).

    Rows keep that order through `select`s of window expressions (`.over(ticker)`), so frames built
    from it need no sort of their own."""
    present = [c for c in (ADJ_CLOSE, CLOSE) if c in prices.columns]
    return sorted_by_ticker_date(prices).lazy().with_columns(pl.coalesce(present).alias(PRICE))


def _by_ticker(prices: pl.DataFrame) -> pl.LazyFrame:
    """`with_price` plus the column the window expressions group by (`.over(_BY)`): each
    ticker's run of rows as an integer, grouped far faster than the ticker's string."""
    return with_price(prices).with_columns(ticker_run())


def _log_price() -> pl.Expr:
    return pl.col(PRICE).log()


def _ret(window: int) -> pl.Expr:
    return (_log_price() - _log_price().shift(window)).over(_BY)


def _has_values(prices: pl.DataFrame, column: str) -> bool:
    return column in prices.columns and prices[column].null_count() < prices.height


@dataclass(frozen=True)
class Inputs:
    """Which optional source columns the features use (volume, high/low range, open and close).

    Decided once for the whole universe (`available_inputs`), so that every chunk and every block
    of a blocked computation produces the same columns."""

    volume: bool = False
    range: bool = False
    open: bool = False


def available_inputs(prices: pl.DataFrame) -> Inputs:
    """The optional columns that hold at least one value in `prices`."""
    return Inputs(
        volume=_has_values(prices, VOLUME),
        range=_has_values(prices, HIGH) and _has_values(prices, LOW),
        open=_has_values(prices, OPEN) and _has_values(prices, CLOSE),
    )


def price_feature_exprs(cfg: FeatureConfig, ewma_lambda: float) -> list[pl.Expr]:
    """Features from the price alone: returns, volatility, moving averages, RSI, MACD, Bollinger."""
    r1 = _ret(1)
    exprs = [_ret(w).alias(f"ret_{w}") for w in cfg.return_windows if w != 1]
    exprs.append(r1.alias(DAILY_RETURN))
    exprs += [r1.rolling_std(w).over(_BY).alias(f"vol_{w}") for w in cfg.volatility_windows if w > 1]
    # RiskMetrics volatility (EWMA of squared returns, the ewma_vol baseline's `ewma_lambda`).
    exprs.append(
        (r1**2)
        .ewm_mean(alpha=1.0 - ewma_lambda, adjust=False, min_samples=20)
        .over(_BY)
        .sqrt()
        .alias("vol_ewma")
    )
    exprs += [
        (pl.col(PRICE) / pl.col(PRICE).rolling_mean(w).over(_BY) - 1.0).alias(f"ma_ratio_{w}")
        for w in cfg.moving_average_windows
    ]
    # Wilder's RSI: smoothed gains over smoothed absolute moves, rescaled to [-0.5, 0.5].
    change = pl.col(PRICE).diff().over(_BY)
    alpha = 1.0 / cfg.rsi_window
    gain = change.clip(lower_bound=0).ewm_mean(alpha=alpha, adjust=False, min_samples=cfg.rsi_window)
    move = change.abs().ewm_mean(alpha=alpha, adjust=False, min_samples=cfg.rsi_window)
    exprs.append((gain.over(_BY) / move.over(_BY) - 0.5).alias(f"rsi_{cfg.rsi_window}"))
    # MACD on log price (scale-free): fast EMA - slow EMA, its signal line and the histogram.
    fast, slow, signal = cfg.macd_spans
    macd = (
        _log_price().ewm_mean(span=fast, adjust=False, min_samples=slow)
        - _log_price().ewm_mean(span=slow, adjust=False, min_samples=slow)
    ).over(_BY)
    macd_signal = macd.ewm_mean(span=signal, adjust=False, min_samples=signal).over(_BY)
    exprs += [macd.alias("macd"), (macd - macd_signal).alias("macd_hist")]
    w = cfg.bollinger_window
    mean, std = pl.col(PRICE).rolling_mean(w).over(_BY), pl.col(PRICE).rolling_std(w).over(_BY)
    exprs.append(((pl.col(PRICE) - mean) / (2.0 * std)).alias(f"bb_position_{w}"))
    return exprs


def volume_feature_exprs(
    cfg: FeatureConfig, has_volume: bool, has_range: bool, has_open: bool = False
) -> list[pl.Expr]:
    """Volume z-score, intraday range (and its Parkinson volatility) and the overnight gap, only
    where the source provides the columns."""
    exprs: list[pl.Expr] = []
    w = cfg.volume_window
    if has_volume:
        logv = (pl.col(VOLUME) + 1.0).log()
        z = (logv - logv.rolling_mean(w).over(_BY)) / logv.rolling_std(w).over(_BY)
        exprs.append(z.alias(f"volume_z_{w}"))
    if has_range:
        exprs.append(((pl.col(HIGH) - pl.col(LOW)) / pl.col(PRICE)).alias("hl_range"))
        # Parkinson (1980): sigma = ln(H/L) / (2 sqrt(ln 2)), one session's range-based volatility.
        exprs.append((pl.col(HIGH) / pl.col(LOW)).log().mul(PARKINSON).alias("parkinson_vol"))
    if has_open:
        # Overnight gap: log(open_t / close_{t-1}), the open adjusted like the close (adj/close) so
        # that a split or dividend between the sessions is not a gap.
        adjusted_open = pl.col(OPEN) * pl.col(PRICE) / pl.col(CLOSE)
        exprs.append((adjusted_open.log() - pl.col(PRICE).log().shift(1).over(_BY)).alias("overnight_gap"))
    return exprs


def calendar_feature_exprs() -> list[pl.Expr]:
    """Day of week (0-4) and the month as a point on the unit circle, of the session itself
    (known in advance). Cyclic, so December sits next to January instead of 11 units away."""
    angle = (pl.col(DATE).dt.month() - 1).cast(pl.Float64) * (2.0 * math.pi / 12.0)
    return [
        (pl.col(DATE).dt.weekday() - 1).cast(pl.Float64).alias("day_of_week"),
        angle.sin().alias("month_sin"),
        angle.cos().alias("month_cos"),
    ]


def exogenous_prefix(ticker: str) -> str:
    """Column prefix for an exogenous ticker: `^GSPC` -> `mkt_gspc`."""
    return "mkt_" + re.sub(r"[^a-z0-9]+", "_", ticker.lower()).strip("_")


def _exogenous_features(prices: pl.LazyFrame, ticker: str) -> pl.LazyFrame:
    prefix = exogenous_prefix(ticker)
    r1 = _ret(1)
    return prices.filter(pl.col(TICKER) == ticker).select(
        DATE,
        r1.alias(f"{prefix}_ret_1"),
        _ret(5).alias(f"{prefix}_ret_5"),
        r1.rolling_std(20).over(_BY).alias(f"{prefix}_vol_20"),
        (pl.col(PRICE) / pl.col(PRICE).rolling_mean(50).over(_BY) - 1.0).alias(f"{prefix}_ma_ratio_50"),
    )


def build_features(prices: pl.DataFrame, cfg: ForecastConfig, inputs: Inputs | None = None) -> pl.DataFrame:
    """Features per (ticker, date) for the target tickers; one column per feature.

    Warm-up rows (where a rolling window is not yet full) keep nulls; `feature_columns` names the
    columns and `complete_rows` drops the warm-up. Exogenous features are joined by date (a target
    session without an exogenous price gets nulls there, never a value from another day).
    `inputs` (default: what `prices` holds) says which optional source columns to use.

    This is the computation over the whole of `prices`; the features asset stores it computed by
    calendar blocks (`forecast_core.data.blocks`), equal to it to rounding.
    """
    lazy = _by_ticker(prices)
    inputs = available_inputs(prices) if inputs is None else inputs
    has_volume, has_range, has_open = inputs.volume, inputs.range, inputs.open
    targets = lazy.filter(pl.col(TICKER).is_in(list(cfg.universe.tickers)))
    out = targets.select(
        TICKER,
        DATE,
        *price_feature_exprs(cfg.features, cfg.ewma_lambda),
        *volume_feature_exprs(cfg.features, has_volume, has_range, has_open),
        *calendar_feature_exprs(),
    )
    for exo in cfg.universe.exogenous:
        out = out.join(_exogenous_features(lazy, exo), on=DATE, how="left", maintain_order="left")
    return out.collect()


def feature_columns(features: pl.DataFrame) -> tuple[str, ...]:
    """The model-input columns of a features frame (everything but the keys)."""
    return tuple(c for c in features.columns if c not in (TICKER, DATE))


def build_targets(prices: pl.DataFrame, horizons: tuple[int, ...]) -> pl.DataFrame:
    """Forward log returns log(price_{t+h} / price_t) per ticker; null where t+h is unknown.

    Kept apart from `build_features`: targets are labels, never model inputs.
    """
    logp = _log_price()
    return (
        _by_ticker(prices)
        .select(
            TICKER,
            DATE,
            *[(logp.shift(-h) - logp).over(_BY).alias(target_column(h)) for h in horizons],
        )
        .collect()
    )


def complete_rows(features: pl.DataFrame) -> pl.DataFrame:
    """Rows with every feature present (drops each ticker's warm-up)."""
    cols = feature_columns(features)
    return features.filter(pl.all_horizontal(pl.col(cols).is_not_null() & pl.col(cols).is_finite()))
