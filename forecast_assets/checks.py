"""Asset checks. Each returns its evidence as metadata; blocking checks stop downstream assets in
the same run (a bad day of prices never reaches the forecasts, a broken forecast never reaches the
scores). The check logic is plain polars on the rows just written, so it is testable directly."""

import datetime as dt

import dagster as dg
import numpy as np
import polars as pl

from forecast_core import calendar
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_core.columns import ADJ_CLOSE, CLOSE, DATE, HIGH, INGESTED_AT, LOW, OPEN, PRICE, TICKER
from forecast_core.config import ForecastConfig
from forecast_core.features import with_price
from warehouse import read_table

_LIST = 10
# Price checks are standalone asset checks over the stored table (not check_specs of the
# partitioned asset): Dagster plans a check evaluation per partition of a range, which made a
# full-history backfill spend most of its time on bookkeeping. `latest batch` = the rows written
# by the last materialization (they share its ingested_at).


def _show(item: object) -> str:
    """`AAPL 2022-12-01`: a tuple's fields joined by spaces, dates in ISO form (a bare tuple would
    print `('AAPL', datetime.date(2022, 12, 1))`)."""
    if isinstance(item, tuple):
        return " ".join(_show(v) for v in item)
    return item.isoformat() if isinstance(item, dt.date) else str(item)


def _listing(items: list) -> str:
    head = ", ".join(map(_show, items[:_LIST]))
    return head + (f" and {len(items) - _LIST} more" if len(items) > _LIST else "")


def duplicate_sessions(prices: pl.DataFrame) -> pl.DataFrame:
    """(ticker, date, len) for keys stored more than once."""
    return prices.group_by(TICKER, DATE).len().filter(pl.col("len") > 1).sort(TICKER, DATE)


def non_positive_prices(prices: pl.DataFrame) -> pl.DataFrame:
    """Rows with a price present that is not finite or not > 0."""
    bad = pl.lit(False)
    for c in (OPEN, HIGH, LOW, CLOSE, ADJ_CLOSE):
        bad = bad | (pl.col(c).is_not_null() & ~(pl.col(c).is_finite() & (pl.col(c) > 0)))
    return prices.filter(bad).select(TICKER, DATE)


def missing_sessions(prices: pl.DataFrame, tickers: tuple[str, ...], calendar_code: str) -> list[tuple[str, dt.date]]:
    """(ticker, session) pairs absent between each ticker's first and last stored date, and
    configured tickers with no rows at all (as (ticker, None))."""
    spans = prices.group_by(TICKER).agg(pl.col(DATE).min().alias("first"), pl.col(DATE).max().alias("last"),
                                        pl.col(DATE).alias("dates"))
    missing: list[tuple[str, dt.date | None]] = []
    seen = set()
    for t, first, last, dates in spans.iter_rows():
        seen.add(t)
        have = set(dates)
        missing += [(t, d) for d in calendar.sessions(first, last, calendar_code) if d not in have]
    missing += [(t, None) for t in tickers if t not in seen]
    return missing


def price_jumps(prices: pl.DataFrame, since: dt.date, threshold: float) -> pl.DataFrame:
    """(ticker, date, log_return) with |daily log return| > threshold on dates >= since."""
    return (
        with_price(prices)
        .with_columns(pl.col(PRICE).log().diff().over(TICKER).alias("log_return"))
        .filter(pl.col(DATE) >= since, pl.col("log_return").abs() > threshold)
        .select(TICKER, DATE, "log_return")
        .collect()
    )


def _stored_prices(path: str) -> pl.DataFrame:
    return read_table("raw_prices", path=path, order_by="ticker, date")


@dg.asset_check(asset="raw_prices", blocking=True, description="At most one row per (ticker, date).")
def no_duplicate_sessions(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    dup = duplicate_sessions(_stored_prices(warehouse.resolved_path))
    examples = _listing([(t, d, f"x{n}") for t, d, n in dup.rows()])
    return dg.AssetCheckResult(passed=dup.height == 0, metadata={"duplicates": dup.height, "examples": examples})


@dg.asset_check(asset="raw_prices", blocking=True,
                description="Every price present in the latest batch is finite and > 0.")
def positive_prices(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    prices = _stored_prices(warehouse.resolved_path)
    latest = prices.filter(pl.col(INGESTED_AT) == pl.col(INGESTED_AT).max())
    bad = non_positive_prices(latest)
    return dg.AssetCheckResult(passed=bad.height == 0,
                               metadata={"checked_rows": latest.height, "bad_rows": bad.height,
                                         "examples": _listing(bad.rows())})


@dg.asset_check(asset="raw_prices", blocking=True,
                description="Every configured ticker has a row on every session between its first and last date.")
def no_missing_sessions(warehouse: WarehouseResource, pipeline: PipelineConfig) -> dg.AssetCheckResult:
    cfg = pipeline.load()
    missing = missing_sessions(_stored_prices(warehouse.resolved_path), cfg.universe.all_tickers, cfg.calendar)
    return dg.AssetCheckResult(passed=not missing,
                               metadata={"missing": len(missing),
                                         "examples": _listing([(t, d or "no rows") for t, d in missing])})


@dg.asset_check(asset="raw_prices", blocking=False,
                description="No daily |log return| above max_daily_log_return in the latest batch "
                            "(a warning: it can be real news or a bad print).")
def plausible_jumps(warehouse: WarehouseResource, pipeline: PipelineConfig) -> dg.AssetCheckResult:
    cfg = pipeline.load()
    prices = _stored_prices(warehouse.resolved_path)
    since = prices.filter(pl.col(INGESTED_AT) == pl.col(INGESTED_AT).max())[DATE].min()
    jumps = price_jumps(prices, since, cfg.max_daily_log_return) if since else pl.DataFrame()
    return dg.AssetCheckResult(
        passed=jumps.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"jumps": jumps.height, "threshold": cfg.max_daily_log_return,
                  "examples": _listing([(t, str(d), round(r, 3)) for t, d, r in jumps.rows()])},
    )


PRICE_CHECKS = [no_duplicate_sessions, positive_prices, no_missing_sessions, plausible_jumps]


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
    non_finite_rows = forecasts.filter(pl.Series((~np.isfinite(values)).any(axis=1)))
    non_finite = non_finite_rows.height
    crossed = forecasts.filter((pl.col("q10") > pl.col("q50")) | (pl.col("q50") > pl.col("q90")))

    def keys(rows: pl.DataFrame) -> list[tuple[str, str, int]]:
        return [(str(d), t, h) for d, t, h in rows.select("as_of_date", TICKER, "horizon").iter_rows()]

    have = set(zip(forecasts["as_of_date"].to_list(), forecasts[TICKER].to_list(), forecasts["horizon"].to_list()))
    missing = [(str(d), t, h) for d in dates for t in cfg.universe.tickers for h in cfg.horizons
               if (d, t, h) not in have]
    return [
        dg.AssetCheckResult(check_name="forecasts_finite", passed=non_finite == 0,
                            metadata={"non_finite_rows": non_finite,
                                      "examples": _listing(keys(non_finite_rows))}),
        dg.AssetCheckResult(check_name="quantiles_ordered", passed=crossed.height == 0,
                            metadata={"crossed_rows": crossed.height, "examples": _listing(keys(crossed))}),
        dg.AssetCheckResult(check_name="complete_forecasts", passed=not missing,
                            metadata={"missing": len(missing), "examples": _listing(missing)}),
    ]


MODEL_CHECKS = [
    dg.AssetCheckSpec("promotion_gate", asset="lstm_model", blocking=False,
                      description="The LSTM beat zero_return (and the previous model) on validation "
                                  "pinball loss; if not, the period is served by the best baseline."),
]
