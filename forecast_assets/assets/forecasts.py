"""daily_forecasts and forecast_scores."""

import datetime as dt

import dagster as dg
import polars as pl

from forecast_assets.charts import fan_chart, fan_chart_tickers
from forecast_assets.checks import FORECAST_CHECKS, forecast_check_results
from forecast_assets.metadata import (
    OWNERS,
    add_partition_metadata,
    frame_table,
    image,
    row_count,
    table_metadata,
)
from forecast_assets.partitions import partition_dates
from forecast_assets.periods import batches_by_period
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_core.columns import TICKER
from forecast_core.data import calendar
from forecast_core.serving.forecasts import score_forecasts
from warehouse import forecast_state, reads, transaction
from warehouse import scores as scores_store


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
        owners=OWNERS,
        tags={"layer": "serving"},
        metadata=table_metadata("forecasts"),
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
    frames, served, stand_ins, states = [], {}, {}, []
    for batch in batches_by_period(path, cfg, sessions, lean=True):
        row, period = batch.model_row, batch.period
        if row["serving_model"] != "lstm":
            context.log.warning(f"{period}: serving {row['serving_model']} ({row['decision']})")
        rows, plan, state = batch.forecasts(cfg, created)
        states.append((row["model_version"], state))
        continued = 0 if batch.continued is None else batch.continued[1].height
        context.log.info(
            f"{period}: {continued} ticker(s) continued from their stored state, "
            f"{batch.panel[TICKER].n_unique()} read over their whole history"
        )
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
        for version, state in states:
            forecast_state.write(w, version, state)
    context.log.info(
        f"stored {forecasts.height:,} forecasts for {len(sessions)} session(s) {start}..{end} "
        f"({forecasts['ticker'].n_unique()} tickers x {forecasts['horizon'].n_unique()} horizons)"
    )
    _session_metadata(context, forecasts)
    fallback = forecasts.filter(pl.col("model") != "lstm").height
    # The chart draws a few tickers: only their prices are read.
    chart = fan_chart(reads.prices(path, until=end, tickers=fan_chart_tickers(forecasts)), forecasts)
    # The range's summary and the fan chart are recorded once, on the range's last session.
    context.add_asset_metadata(
        {
            "run_range": dg.MetadataValue.text(f"{start}..{end} ({len(sessions)} sessions)"),
            "run_rows": dg.MetadataValue.int(forecasts.height),
            "models": dg.MetadataValue.json(served),
            "fallback_rows": dg.MetadataValue.int(fallback),
            "stand_in_tickers": dg.MetadataValue.json(stand_ins),
            "fan_chart": image(chart, "fan chart"),
        },
        partition_key=context.partition_keys[-1],
    )
    return dg.MaterializeResult(check_results=forecast_check_results(forecasts, cfg, sessions))


def _session_metadata(context: dg.AssetExecutionContext, forecasts: pl.DataFrame) -> None:
    """Each session partition's own numbers: rows, the model that served, the mean width of the
    80% band per horizon (log return), so the Plots tab shows them over time."""
    per_session = (
        forecasts.group_by("as_of_date", "horizon")
        .agg(
            pl.len().alias("rows"),
            (pl.col("q90") - pl.col("q10")).mean().alias("band"),
            pl.col("model").mode().first().alias("model"),
        )
        .sort("as_of_date", "horizon")
    )
    by_day: dict[str, dict] = {}
    for day, horizon, rows, band, model in per_session.iter_rows():
        entry = by_day.setdefault(day.isoformat(), {"rows": 0, "model": model})
        entry["rows"] += rows
        entry[f"mean_band_width_80_h{horizon}"] = float(band)
    per_partition = {}
    for key in context.partition_keys:
        entry = by_day.get(key, {"rows": 0, "model": "none"})
        per_partition[key] = {
            **row_count(entry.pop("rows")),
            "model": dg.MetadataValue.text(entry.pop("model")),
            **{k: dg.MetadataValue.float(v) for k, v in entry.items()},
        }
    add_partition_metadata(context, per_partition)


#: forecast_scores follows re-materialized forecasts (and corrected prices): requested by the
#: `rescore_after_forecasts` sensor once its upstream assets have new materializations and none is
#: in progress (the nightly and forecast jobs also score in the same run).
SCORES_AUTOMATION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("new forecasts or prices since the last scoring")


@dg.asset(
    deps=["daily_forecasts", "raw_prices"],
    group_name="forecasts",
    kinds={"duckdb"},
    pool="warehouse_write",
    owners=OWNERS,
    tags={"layer": "serving"},
    metadata=table_metadata("forecast_scores"),
    automation_condition=SCORES_AUTOMATION,
)
def forecast_scores(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, pipeline: PipelineConfig
) -> dg.MaterializeResult:
    """Every forecast whose target date has a realised price, scored: the realised close, the
    error, whether it fell inside the 80% band, and the pinball loss. Incremental, in one
    transaction (`warehouse.scores`): the forecasts written since the last run, those that have
    no score yet and those of tickers whose history a price vintage since rewrote (a correction
    re-scores) are (re)scored; every other score stays as it is, which is what a full rebuild would
    write for it. Rebuilt in full where nothing says what was scored (a new or upgraded warehouse)."""
    cfg = pipeline.load()
    path = warehouse.resolved_path
    with transaction(path) as w:
        plan = scores_store.plan(w)
        forecasts, prices = scores_store.to_score(w, plan)
        scored = score_forecasts(forecasts, prices, cfg.quantiles, dt.datetime.now(dt.UTC))
        written = scores_store.write(w, plan, scored)
        totals, by_horizon = scores_store.summary(w)
    total = totals["scores"]
    rewritten = (
        f", {len(plan.rewritten)} ticker(s) re-scored after a history rewrite" if plan.rewritten else ""
    )
    context.log.info(
        f"scores ({plan.mode}): {written:,} of {forecasts.height:,} forecasts looked at scored{rewritten}; "
        f"{total:,} forecasts whose target date has a price"
    )
    return dg.MaterializeResult(
        metadata={
            **row_count(total),
            "by_horizon": frame_table(by_horizon),
            "scored_rows": dg.MetadataValue.int(total),
            "pending_rows": dg.MetadataValue.int(totals["forecasts"] - total),
            "mode": dg.MetadataValue.text(plan.mode),
            "rows_written": dg.MetadataValue.int(written),
            "forecasts_looked_at": dg.MetadataValue.int(forecasts.height),
            "tickers_rewritten": dg.MetadataValue.int(len(plan.rewritten)),
            "coverage_80": float(totals["coverage_80"]),
            "mean_pinball": float(totals["pinball"]),
        }
    )
