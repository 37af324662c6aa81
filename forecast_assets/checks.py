"""Asset checks. Each returns its evidence as metadata; blocking checks stop downstream assets in
the same run (a bad day of prices never reaches the forecasts, a broken forecast never reaches the
scores). The check logic is plain polars on the rows just written, so it is testable directly."""

import datetime as dt
import hashlib

import dagster as dg
import jax
import numpy as np
import polars as pl

from forecast_assets.periods import PeriodBatch
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_core.columns import ADJ_CLOSE, CLOSE, DATE, HIGH, INGESTED_AT, LOW, OPEN, PRICE, TICKER
from forecast_core.config import ForecastConfig
from forecast_core.data import calendar
from forecast_core.data.features import with_price
from forecast_core.errors import ForecastError
from forecast_core.models.lstm import artifacts
from forecast_core.serving.periods import period_start_of
from forecast_core.sources import make_source
from warehouse import read_sql, read_table, reads

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


def missing_sessions(
    prices: pl.DataFrame, tickers: tuple[str, ...], calendar_code: str
) -> list[tuple[str, dt.date]]:
    """(ticker, session) pairs absent between each ticker's first and last stored date, and
    configured tickers with no rows at all (as (ticker, None))."""
    spans = prices.group_by(TICKER).agg(
        pl.col(DATE).min().alias("first"), pl.col(DATE).max().alias("last"), pl.col(DATE).alias("dates")
    )
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
    return dg.AssetCheckResult(
        passed=dup.height == 0, metadata={"duplicates": dup.height, "examples": examples}
    )


@dg.asset_check(
    asset="raw_prices",
    blocking=True,
    description="Every price present in the latest batch is finite and > 0.",
)
def positive_prices(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    prices = _stored_prices(warehouse.resolved_path)
    latest = prices.filter(pl.col(INGESTED_AT) == pl.col(INGESTED_AT).max())
    bad = non_positive_prices(latest)
    return dg.AssetCheckResult(
        passed=bad.height == 0,
        metadata={"checked_rows": latest.height, "bad_rows": bad.height, "examples": _listing(bad.rows())},
    )


@dg.asset_check(
    asset="raw_prices",
    blocking=True,
    description="Every configured ticker has a row on every session between its first and last "
    "date (a ticker listed after the stored prices end is not expected yet).",
)
def no_missing_sessions(warehouse: WarehouseResource, pipeline: PipelineConfig) -> dg.AssetCheckResult:
    cfg = pipeline.load()
    stored = _stored_prices(warehouse.resolved_path)
    last = stored[DATE].max()
    # A ticker whose listing lies after the stored prices is not expected to have any yet.
    expected = tuple(
        t for t in cfg.universe.all_tickers if last is None or (cfg.universe.listing(t)[0] or last) <= last
    )
    missing = missing_sessions(stored, expected, cfg.calendar)
    return dg.AssetCheckResult(
        passed=not missing,
        metadata={"missing": len(missing), "examples": _listing([(t, d or "no rows") for t, d in missing])},
    )


@dg.asset_check(
    asset="raw_prices",
    blocking=False,
    description="No daily |log return| above max_daily_log_return in the latest batch "
    "(a warning: it can be real news or a bad print).",
)
def plausible_jumps(warehouse: WarehouseResource, pipeline: PipelineConfig) -> dg.AssetCheckResult:
    cfg = pipeline.load()
    prices = _stored_prices(warehouse.resolved_path)
    since = prices.filter(pl.col(INGESTED_AT) == pl.col(INGESTED_AT).max())[DATE].min()
    jumps = price_jumps(prices, since, cfg.max_daily_log_return) if since else pl.DataFrame()
    return dg.AssetCheckResult(
        passed=jumps.height == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "jumps": jumps.height,
            "threshold": cfg.max_daily_log_return,
            "examples": _listing([(t, str(d), round(r, 3)) for t, d, r in jumps.rows()]),
        },
    )


#: Stored sessions just before the latest batch that `history_matches_source` downloads again; the
#: relative change of a price that counts as a revision (a dividend moves the adjusted closes of
#: every earlier session by its yield: a warning); and the |log ratio| above which a revision blocks
#: the run (a split or a restatement: features would mix two price scales).
REVISION_SESSIONS = 5
REVISION_TOLERANCE = 1e-4
REVISION_BLOCKING_LOG_RATIO = 0.05


def history_revisions(stored: pl.DataFrame, fresh: pl.DataFrame, tolerance: float) -> pl.DataFrame:
    """(ticker, date, column, stored, source, ratio) for every close or adj_close present in both
    frames whose relative change source / stored - 1 exceeds `tolerance`, by ticker and date."""
    joined = stored.join(fresh, on=[TICKER, DATE], suffix="_source")
    frames = [
        joined.select(
            TICKER,
            DATE,
            pl.lit(c).alias("column"),
            pl.col(c).alias("stored"),
            pl.col(f"{c}_source").alias("source"),
        )
        for c in (CLOSE, ADJ_CLOSE)
    ]
    long = pl.concat(frames).drop_nulls(["stored", "source"])
    return (
        long.with_columns((pl.col("source") / pl.col("stored")).alias("ratio"))
        .filter((pl.col("ratio") - 1).abs() > tolerance)
        .sort(TICKER, DATE, "column")
    )


@dg.asset_check(
    asset="raw_prices",
    blocking=True,
    description=f"The {REVISION_SESSIONS} sessions stored just before the latest batch still "
    "match the source. A split or restatement that rewrote history (|log ratio| > "
    f"{REVISION_BLOCKING_LOG_RATIO}) fails and blocks the run; smaller revisions "
    "(dividends) warn. Remedy: re-materialize raw_prices over the stored range.",
)
def history_matches_source(warehouse: WarehouseResource, pipeline: PipelineConfig) -> dg.AssetCheckResult:
    cfg = pipeline.load()
    prices = _stored_prices(warehouse.resolved_path)
    latest_first = prices.filter(pl.col(INGESTED_AT) == pl.col(INGESTED_AT).max())[DATE].min()
    earlier = prices.filter(pl.col(DATE) < latest_first) if latest_first else prices.clear()
    dates = earlier[DATE].unique().sort().tail(REVISION_SESSIONS).to_list()
    window = earlier.filter(pl.col(DATE).is_in(dates), pl.col(TICKER).is_in(list(cfg.universe.all_tickers)))
    if window.height == 0:
        # Nothing was compared: say so rather than pass (a first load has no earlier sessions).
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="not evaluated: nothing was stored before the latest batch (a first load), "
            "so there was no history to compare with the source",
            metadata={"compared_rows": 0, "evaluated": False},
        )
    tickers = sorted(window[TICKER].unique().to_list())
    try:
        fresh = make_source(cfg).fetch(tickers, dates[0], dates[-1])
    except ForecastError as exc:  # evidence, not a crash: this warning must not fail the nightly run
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"not evaluated: could not download the history again: {exc}",
            metadata={"compared_rows": 0, "evaluated": False, "error": f"could not download again: {exc}"},
        )
    revised = history_revisions(window, fresh, REVISION_TOLERANCE)
    examples = [(t, d, c, f"{s:.6g} -> {n:.6g} (x{r:.4g})") for t, d, c, s, n, r in revised.rows()]
    rewritten = revised.filter(pl.col("ratio").log().abs() > REVISION_BLOCKING_LOG_RATIO)
    return dg.AssetCheckResult(
        passed=revised.height == 0,
        severity=dg.AssetCheckSeverity.ERROR if rewritten.height else dg.AssetCheckSeverity.WARN,
        description=(
            f"history rewritten by the source for {_listing(sorted(set(rewritten[TICKER])))}: "
            "re-materialize raw_prices from the first stored session to replace it"
            if rewritten.height
            else f"compared {window.height} stored prices of {dates[0]}..{dates[-1]} with the source"
        ),
        metadata={
            "compared_rows": window.height,
            "evaluated": True,
            "sessions": f"{dates[0]}..{dates[-1]}",
            "revised_values": revised.height,
            "tickers_revised": dg.MetadataValue.json(sorted(set(revised[TICKER].to_list()))),
            "examples": _listing(examples),
            "tolerance": REVISION_TOLERANCE,
        },
    )


PRICE_CHECKS = [
    no_duplicate_sessions,
    positive_prices,
    no_missing_sessions,
    plausible_jumps,
    history_matches_source,
]


FORECAST_CHECKS = [
    dg.AssetCheckSpec(
        "forecasts_finite",
        asset="daily_forecasts",
        blocking=True,
        description="Every forecast value and price is finite.",
    ),
    dg.AssetCheckSpec(
        "quantiles_ordered",
        asset="daily_forecasts",
        blocking=True,
        description="q10 <= q50 <= q90 on every row.",
    ),
    dg.AssetCheckSpec(
        "complete_forecasts",
        asset="daily_forecasts",
        blocking=True,
        description="Every ticker and horizon has a forecast on every session of the partition on "
        "which the ticker is a member of the universe (universe.membership).",
    ),
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

    have = set(
        zip(forecasts["as_of_date"].to_list(), forecasts[TICKER].to_list(), forecasts["horizon"].to_list())
    )
    missing = [
        (str(d), t, h)
        for d in dates
        for t in cfg.universe.tickers
        for h in cfg.horizons
        if cfg.universe.is_member(t, d) and (d, t, h) not in have
    ]
    return [
        dg.AssetCheckResult(
            check_name="forecasts_finite",
            passed=non_finite == 0,
            metadata={"non_finite_rows": non_finite, "examples": _listing(keys(non_finite_rows))},
        ),
        dg.AssetCheckResult(
            check_name="quantiles_ordered",
            passed=crossed.height == 0,
            metadata={"crossed_rows": crossed.height, "examples": _listing(keys(crossed))},
        ),
        dg.AssetCheckResult(
            check_name="complete_forecasts",
            passed=not missing,
            metadata={"missing": len(missing), "examples": _listing(missing)},
        ),
    ]


MODEL_CHECKS = [
    dg.AssetCheckSpec(
        "promotion_gate",
        asset="lstm_model",
        blocking=False,
        description="The LSTM beat zero_return (and the previous model) on validation "
        "pinball loss; if not, the period is served by the best baseline.",
    ),
]


# --- reproducibility ---------------------------------------------------------------------------


#: Tickers whose forecasts `forecasts_reproducible` recomputes for a night where the LSTM served
#: every ticker (a ticker's LSTM forecast depends on its own rows and the market index's only, so
#: a subset recomputes exactly): a sample that rotates with the date. Every ticker where a
#: baseline served any (the recompute refits it, and a refit pools the tickers) or the universe is
#: no larger. At 5,000 tickers the whole recompute took 59 s and most of a 16 GB peak.
REPRODUCIBLE_TICKERS = 100


def reproducible_sample(day: dt.date, tickers: list[str], served_by_lstm: bool) -> list[str]:
    """The tickers `forecasts_reproducible` recomputes for `day` (see `REPRODUCIBLE_TICKERS`):
    a sample where the LSTM served every one of `tickers` (their forecasts' `model`), all else."""
    if len(tickers) <= REPRODUCIBLE_TICKERS or not served_by_lstm:
        return sorted(tickers)
    rank = {t: hashlib.blake2b(f"{day}:{t}".encode(), digest_size=8).digest() for t in tickers}
    return sorted(sorted(tickers, key=rank.__getitem__)[:REPRODUCIBLE_TICKERS])


def recompute_forecasts(
    path: str,
    cfg: ForecastConfig,
    day: dt.date,
    model_version: str,
    prices_vintage: int,
    tickers: list[str] | None = None,
) -> pl.DataFrame:
    """The forecasts of session `day` as `daily_forecasts` made them: from the stored artifact of
    `model_version` and the panel rebuilt from the prices of `prices_vintage` known after the
    close of `day` (so a later rewrite of history does not change the answer); of `tickers` only
    where given (exact where the LSTM serves them: `reproducible_sample`)."""
    row = reads.model(path, model_version)
    if row is None:
        raise ValueError(f"model {model_version} of the forecasts of {day} is not in the warehouse")
    panel, feature_cols = reads.panel_from_vintage(path, cfg, day, prices_vintage, tickers)
    batch = PeriodBatch(
        period_start_of(day),
        [day],
        row,
        artifacts.from_bytes(row["artifact"]),
        panel,
        feature_cols,
        prices_vintage,
    )
    return batch.forecasts(cfg, dt.datetime.now(dt.UTC))[0]


def forecast_differences(stored: pl.DataFrame, recomputed: pl.DataFrame) -> tuple[list[tuple], float]:
    """Keys (as_of_date, ticker, horizon) whose rows differ in any bit (created_at aside), and the
    largest absolute difference of a float column."""
    key = ["as_of_date", TICKER, "horizon"]
    columns = [c for c in stored.columns if c != "created_at"]
    a = stored.select(columns).sort(key)
    b = recomputed.select(columns).sort(key).cast(dict(a.schema))
    if a.select(key).rows() != b.select(key).rows():
        extra = set(a.select(key).rows()) ^ set(b.select(key).rows())
        return sorted(extra), float("inf")
    differs = np.zeros(a.height, dtype=bool)
    worst = 0.0
    for c in columns:
        if a[c].dtype == pl.Float64:
            x, y = a[c].to_numpy(), b[c].to_numpy()
            differs |= x.view(np.uint64) != y.view(np.uint64)
            worst = max(worst, float(np.nanmax(np.abs(x - y), initial=0.0)))
        else:
            differs |= (a[c] != b[c]).fill_null(True).to_numpy()
    return [r for r, d in zip(a.select(key).rows(), differs) if d], worst


@dg.asset_check(
    asset="daily_forecasts",
    blocking=False,
    description="Re-computes the latest session's forecasts from the stored model artifact and "
    "the prices of the vintage they were made from (features rebuilt from them), and compares "
    "them bit for bit with the published rows (exact on the device that trained the model). "
    f"Where the LSTM served every ticker, a sample of {REPRODUCIBLE_TICKERS} tickers that rotates "
    "with the date (each ticker's forecast depends on its own rows only); every ticker otherwise.",
)
def forecasts_reproducible(warehouse: WarehouseResource, pipeline: PipelineConfig) -> dg.AssetCheckResult:
    cfg = pipeline.load()
    path = warehouse.resolved_path
    latest = read_sql("SELECT max(as_of_date) AS day FROM forecasts", path=path)["day"][0]
    if latest is None:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="not evaluated: there are no forecasts yet",
            metadata={"rows": 0, "evaluated": False},
        )
    stored = read_table("forecasts", "as_of_date = ?", [latest], path)
    versions = sorted(stored["model_version"].unique().to_list())
    checked, recomputed = [], []
    for version, vintage in (
        stored.select("model_version", pl.col("prices_vintage").fill_null(0))
        .unique()
        .sort("model_version")
        .rows()
    ):
        rows = stored.filter(pl.col("model_version") == version)
        served_by_lstm = bool((rows["model"] == "lstm").all())
        sample = reproducible_sample(latest, rows[TICKER].unique().to_list(), served_by_lstm)
        recomputed.append(recompute_forecasts(path, cfg, latest, version, vintage, sample))
        checked += [(version, t) for t in sample]
    picked = pl.DataFrame(checked, schema=["model_version", TICKER], orient="row")
    forecast_tickers = stored[TICKER].n_unique()
    stored = stored.join(picked, on=["model_version", TICKER], how="semi")
    different, worst = forecast_differences(stored, pl.concat(recomputed))
    devices = read_sql(
        "SELECT DISTINCT device FROM models WHERE list_contains(?, model_version)", [versions], path
    )
    return dg.AssetCheckResult(
        passed=not different,
        metadata={
            "as_of_date": str(latest),
            "model_versions": dg.MetadataValue.json(versions),
            "prices_vintages": dg.MetadataValue.json(sorted(set(stored["prices_vintage"].to_list()))),
            "rows": stored.height,
            "tickers_checked": picked.height,
            "tickers_forecast": forecast_tickers,
            "different_rows": len(different),
            "max_abs_difference": worst,
            "examples": _listing(different),
            "model_device": ", ".join(devices["device"].to_list()),
            "device": str(jax.devices()[0]),
        },
    )
