"""Asset checks. Each returns its evidence as metadata; blocking checks stop downstream assets in
the same run (a bad day of prices never reaches the forecasts, a broken forecast never reaches the
scores). The check logic is plain polars on the rows just written, so it is testable directly."""


import datetime as dt

import dagster as dg
import numpy as np
import polars as pl

from forecast_core import calendar
from forecast_core.columns import ADJ_CLOSE, CLOSE, DATE, HIGH, LOW, OPEN, PRICE, TICKER
from forecast_core.config import ForecastConfig
from forecast_core.features import with_price

_LIST = 10

PRICE_CHECKS = [
    dg.AssetCheckSpec("no_duplicate_sessions", asset="raw_prices", blocking=True,
                      description="At most one row per (ticker, date)."),
    dg.AssetCheckSpec("positive_prices", asset="raw_prices", blocking=True,
                      description="Every price present is finite and > 0."),
    dg.AssetCheckSpec("no_missing_sessions", asset="raw_prices", blocking=True,
                      description="Every configured ticker has a row on every session of the partition."),
    dg.AssetCheckSpec("plausible_jumps", asset="raw_prices", blocking=False,
                      description="No daily |log return| above max_daily_log_return (warning: may be real)."),
]


def _listing(items: list) -> str:
    head = ", ".join(map(str, items[:_LIST]))
    return head + (f" and {len(items) - _LIST} more" if len(items) > _LIST else "")


def price_check_results(
    stored: pl.DataFrame, previous: pl.DataFrame, cfg: ForecastConfig, start: dt.date, end: dt.date
) -> list[dg.AssetCheckResult]:
    """Checks on the stored rows of a partition range; `previous` holds each ticker's last row
    before `start` (so the first session's jump is measured too)."""
    dup = stored.group_by(TICKER, DATE).len().filter(pl.col("len") > 1)
    prices = pl.concat_list([pl.col(c) for c in (OPEN, HIGH, LOW, CLOSE, ADJ_CLOSE)])
    bad = stored.filter(
        prices.list.eval(pl.element().is_not_null() & ~(pl.element().is_finite() & (pl.element() > 0))).list.any()
    )
    expected = calendar.sessions(start, end, cfg.calendar)
    have = set(zip(stored[TICKER].to_list(), stored[DATE].to_list()))
    missing = [(t, d) for t in cfg.universe.all_tickers for d in expected if (t, d) not in have]
    both = pl.concat([previous.select(stored.columns), stored]) if previous.height else stored
    jumps = (
        with_price(both)
        .with_columns(pl.col(PRICE).log().diff().over(TICKER).alias("log_return"))
        .filter(pl.col(DATE) >= start, pl.col("log_return").abs() > cfg.max_daily_log_return)
        .select(TICKER, DATE, "log_return")
        .collect()
    )
    return [
        dg.AssetCheckResult(
            check_name="no_duplicate_sessions",
            passed=dup.height == 0,
            metadata={"duplicates": dup.height, "examples": _listing(dup.rows())},
        ),
        dg.AssetCheckResult(
            check_name="positive_prices",
            passed=bad.height == 0,
            metadata={"bad_rows": bad.height, "examples": _listing(bad.select(TICKER, DATE).rows())},
        ),
        dg.AssetCheckResult(
            check_name="no_missing_sessions",
            passed=not missing,
            metadata={"missing": len(missing), "expected_sessions": len(expected),
                      "examples": _listing(missing)},
        ),
        dg.AssetCheckResult(
            check_name="plausible_jumps",
            passed=jumps.height == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"jumps": jumps.height, "threshold": cfg.max_daily_log_return,
                      "examples": _listing([(t, str(d), round(r, 3)) for t, d, r in jumps.rows()])},
        ),
    ]


FORECAST_CHECKS = [
    dg.AssetCheckSpec("forecasts_finite", asset="daily_forecasts", blocking=True,
                      description="Every forecast value and price is finite."),
    dg.AssetCheckSpec("quantiles_ordered", asset="daily_forecasts", blocking=True,
                      description="q10 <= q50 <= q90 on every row."),
    dg.AssetCheckSpec("complete_forecasts", asset="daily_forecasts", blocking=True,
                      description="Every ticker and horizon has a forecast on every session of the partition."),
]


def forecast_check_results(
    forecasts: pl.DataFrame, cfg: ForecastConfig, dates: list[dt.date]
) -> list[dg.AssetCheckResult]:
    numeric = [c for c in forecasts.columns if forecasts[c].dtype == pl.Float64]
    values = forecasts.select(numeric).to_numpy() if forecasts.height else np.zeros((0, 1))
    non_finite = int((~np.isfinite(values)).any(axis=1).sum())
    crossed = forecasts.filter((pl.col("q10") > pl.col("q50")) | (pl.col("q50") > pl.col("q90")))
    have = set(zip(forecasts["as_of_date"].to_list(), forecasts[TICKER].to_list(), forecasts["horizon"].to_list()))
    missing = [(str(d), t, h) for d in dates for t in cfg.universe.tickers for h in cfg.horizons
               if (d, t, h) not in have]
    return [
        dg.AssetCheckResult(check_name="forecasts_finite", passed=non_finite == 0,
                            metadata={"non_finite_rows": non_finite}),
        dg.AssetCheckResult(check_name="quantiles_ordered", passed=crossed.height == 0,
                            metadata={"crossed_rows": crossed.height}),
        dg.AssetCheckResult(check_name="complete_forecasts", passed=not missing,
                            metadata={"missing": len(missing), "examples": _listing(missing)}),
    ]


MODEL_CHECKS = [
    dg.AssetCheckSpec("promotion_gate", asset="lstm_model", blocking=False,
                      description="The LSTM beat zero_return (and the previous model) on validation "
                                  "pinball loss; if not, the period is served by the best baseline."),
]
