"""daily_forecasts and forecast_scores."""


import base64
import datetime as dt
import itertools

import dagster as dg
import polars as pl

from forecast_assets.checks import FORECAST_CHECKS, forecast_check_results
from forecast_assets.partitions import TRADING_DAYS, partition_dates
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_core import artifacts, calendar
from forecast_core.columns import DATE
from forecast_core.forecaster import ForecastTask
from forecast_core.forecasting import make_forecasts, score_forecasts
from forecast_core.plots import fan_chart
from forecast_core.production import period_key, period_start_of, period_slices, serving_forecaster
from forecast_assets.assets.model import panel_known_at
from warehouse import read_table, reads, transaction


@dg.asset(
    partitions_def=TRADING_DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["features", "lstm_model"],
    check_specs=FORECAST_CHECKS,
    group_name="forecasts",
    kinds={"jax", "duckdb"},
    pool="warehouse_write",
)
def daily_forecasts(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, pipeline: PipelineConfig
) -> dg.MaterializeResult:
    """Quantile forecasts (q10, q50, q90) of the forward log return for every ticker and horizon,
    made after the close of each session D with features up to D and the model of D's retrain
    period, and the prices they imply (close_D * exp(q)). A backfilled date gets exactly what the
    nightly run would have produced that day. If the period's LSTM was refused by the promotion
    gate, the period's serving baseline forecasts instead (column `model`)."""
    cfg = pipeline.load()
    path = warehouse.resolved_path
    start, end = partition_dates(context, cfg.calendar)
    sessions = calendar.sessions(start, end, cfg.calendar)
    created = dt.datetime.now(dt.timezone.utc)
    frames, served = [], {}
    for period_start, days in itertools.groupby(sessions, key=period_start_of):
        days = list(days)
        period = period_key(period_start)
        row = reads.latest_model(path, period)
        if row is None:
            raise dg.Failure(
                f"no model for retrain period {period} (needed for {days[0]}..{days[-1]}): "
                f"materialize lstm_model partition {period_start.isoformat()} first"
            )
        lstm = artifacts.from_bytes(row["artifact"])
        panel, feature_cols = panel_known_at(path, cfg, days[-1])
        missing = sorted(set(days) - set(panel[DATE].unique().to_list()))
        if missing:
            raise dg.Failure(f"no features for sessions {missing[:10]}: materialize raw_prices and features for them")
        task = ForecastTask(feature_cols, cfg.horizons, cfg.quantiles)
        forecaster = lstm
        if row["serving_model"] != "lstm":
            history = panel.filter(pl.col(DATE) < period_start)[DATE].unique().sort().to_list()
            s = period_slices(history, period_start, cfg)
            forecaster = serving_forecaster(row["serving_model"], None, panel, task, cfg, s.train_end, s.val)
            context.log.warning(f"{period}: serving {row['serving_model']} ({row['decision']})")
        served[period] = f"{row['model_version']} ({row['serving_model']})"
        frames.append(make_forecasts(panel, forecaster, task, days[0], days[-1], row["model_version"],
                                     created, cfg.calendar))
    forecasts = pl.concat(frames)
    with transaction(path) as w:
        w.replace("forecasts", forecasts, "as_of_date BETWEEN ? AND ?", [start, end])
    fallback = forecasts.filter(pl.col("model") != "lstm").height
    chart = base64.b64encode(fan_chart(reads.prices(path, until=end), forecasts)).decode()
    return dg.MaterializeResult(
        metadata={
            "rows": dg.MetadataValue.int(forecasts.height),
            "sessions": dg.MetadataValue.int(len(sessions)),
            "models": dg.MetadataValue.json(served),
            "fallback_rows": dg.MetadataValue.int(fallback),
            "mean_band_width_80": float((forecasts["q90"] - forecasts["q10"]).mean()),
            "fan_chart": dg.MetadataValue.md(f"![fan chart](data:image/png;base64,{chart})"),
        },
        check_results=forecast_check_results(forecasts, cfg, sessions),
    )


@dg.asset(deps=["daily_forecasts", "raw_prices"], group_name="forecasts", kinds={"duckdb"},
          pool="warehouse_write")
def forecast_scores(warehouse: WarehouseResource, pipeline: PipelineConfig) -> dg.MaterializeResult:
    """Every forecast whose target date has a realised price, scored: the realised close, the
    error, whether it fell inside the 80% band, and the pinball loss. Rebuilt in full from
    `forecasts` and `raw_prices` (so a price correction re-scores), in one transaction."""
    cfg = pipeline.load()
    path = warehouse.resolved_path
    forecasts = read_table("forecasts", path=path)
    scores = score_forecasts(forecasts, reads.prices(path), cfg.quantiles, dt.datetime.now(dt.timezone.utc))
    with transaction(path) as w:
        w.replace("forecast_scores", scores)
    return dg.MaterializeResult(
        metadata={
            "scored_rows": dg.MetadataValue.int(scores.height),
            "pending_rows": dg.MetadataValue.int(forecasts.height - scores.height),
            "coverage_80": float(scores["covered_80"].mean()) if scores.height else float("nan"),
            "mean_pinball": float(scores["pinball"].mean()) if scores.height else float("nan"),
        }
    )
