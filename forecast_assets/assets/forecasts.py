"""daily_forecasts and forecast_scores."""

import base64
import datetime as dt

import dagster as dg
import polars as pl

from forecast_assets.checks import FORECAST_CHECKS, forecast_check_results
from forecast_assets.partitions import partition_dates
from forecast_assets.periods import batches_by_period
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_core.data import calendar
from forecast_core.plots import fan_chart
from forecast_core.serving.forecasts import score_forecasts
from warehouse import read_table, reads, transaction


def daily_forecasts_asset(trading_days: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`daily_forecasts` on the job's session partitions (`forecast_assets.definitions.build_defs`)."""
    return dg.asset(
        partitions_def=trading_days,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=["features", "lstm_model"],
        check_specs=FORECAST_CHECKS,
        group_name="forecasts",
        kinds={"jax", "duckdb"},
        pool="warehouse_write",
    )(daily_forecasts)


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
    created = dt.datetime.now(dt.UTC)
    frames, served, stand_ins = [], {}, {}
    for batch in batches_by_period(path, cfg, sessions):
        row, period = batch.model_row, batch.period
        if row["serving_model"] != "lstm":
            context.log.warning(f"{period}: serving {row['serving_model']} ({row['decision']})")
        rows, plan = batch.forecasts(cfg, created)
        for model, tickers in plan.items():
            if model != row["serving_model"]:
                stand_ins[period] = {model: tickers}
                context.log.warning(
                    f"{period}: {len(tickers)} ticker(s) the period's LSTM was not trained on "
                    f"({', '.join(tickers[:10])}) are served by {model}, its best baseline on "
                    f"validation, until the next retrain (materialize lstm_model {batch.period_start})"
                )
        served[period] = f"{row['model_version']} ({row['serving_model']})"
        frames.append(rows)
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
            "stand_in_tickers": dg.MetadataValue.json(stand_ins),
            "mean_band_width_80": float((forecasts["q90"] - forecasts["q10"]).mean()),
            "fan_chart": dg.MetadataValue.md(f"![fan chart](data:image/png;base64,{chart})"),
        },
        check_results=forecast_check_results(forecasts, cfg, sessions),
    )


@dg.asset(
    deps=["daily_forecasts", "raw_prices"], group_name="forecasts", kinds={"duckdb"}, pool="warehouse_write"
)
def forecast_scores(warehouse: WarehouseResource, pipeline: PipelineConfig) -> dg.MaterializeResult:
    """Every forecast whose target date has a realised price, scored: the realised close, the
    error, whether it fell inside the 80% band, and the pinball loss. Rebuilt in full from
    `forecasts` and `raw_prices` (so a price correction re-scores), in one transaction."""
    cfg = pipeline.load()
    path = warehouse.resolved_path
    forecasts = read_table("forecasts", path=path)
    scores = score_forecasts(forecasts, reads.prices(path), cfg.quantiles, dt.datetime.now(dt.UTC))
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
