"""The forecasting job's `Definitions`, built from one configuration file by `build_defs`.

`build_defs` loads the configuration once and builds from it everything that depends on it: the
session and retrain-month partitions (on `cfg.calendar`, from `cfg.source.start_date`), the
partitioned assets on those partitions, the jobs, the schedules (in the calendar's time zone) and
the resources that point the assets at the same file, so that partitions and data always come
from the same configuration. The module-level `defs` is what `dagster dev`, workspace.yaml and
`[tool.dagster]` load: the configuration and warehouse named by $FORECAST_CONFIG and
$FORECAST_WAREHOUSE (defaults when unset).
"""

import datetime as dt
import logging
import os
import warnings

import dagster as dg
import jax

from forecast_assets.assets import decision, evaluation, features, forecasts, maintenance, model, prices
from forecast_assets.checks import PRICE_CHECKS, forecasts_reproducible
from forecast_assets.metadata import code_references
from forecast_assets.partitions import retrain_partitions, trading_day_partitions
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_assets.schedules import nightly_schedule, retrain_schedule
from forecast_core.config import ForecastConfig, load_config
from forecast_core.data import calendar
from forecast_core.errors import ForecastError
from forecast_core.sources import make_source

log = logging.getLogger(__name__)

# Compiled XLA programs persist across runs and step processes (paid once per shape).
jax.config.update("jax_compilation_cache_dir", os.environ.get("JAX_COMPILATION_CACHE_DIR", ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def build_assets(
    trading_days: dg.PartitionsDefinition, retrain_months: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    """Every asset of the job, the partitioned ones on these partitions."""
    with warnings.catch_warnings():
        # `backfill_policy` is marked beta; the job depends on it (a range is one run), so the
        # warning would only repeat in every process that loads the definitions.
        warnings.filterwarnings("ignore", category=dg.BetaWarning, message="Parameter `backfill_policy`")
        # Code references (the UI's links to each asset's source) are marked beta too.
        warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*[Cc]ode[Rr]eference")
        warnings.filterwarnings(
            "ignore", category=dg.BetaWarning, message="Function `with_source_code_references`"
        )
        return code_references(_assets(trading_days, retrain_months))


def _assets(
    trading_days: dg.PartitionsDefinition, retrain_months: dg.PartitionsDefinition
) -> list[dg.AssetsDefinition]:
    return [
        prices.raw_prices_asset(trading_days),
        features.features,
        features.walk_forward_folds,
        evaluation.fold_evaluation,
        model.lstm_model_asset(retrain_months),
        forecasts.daily_forecasts_asset(trading_days),
        forecasts.forecast_scores,
        decision.strategy_backtest,
        decision.forecast_explanations_asset(trading_days),
        maintenance.warehouse_maintenance,
    ]


def build_jobs() -> dict:
    """The job's asset jobs by name (resolved against the assets of the `Definitions`)."""
    tags = {"team": "forecasting"}
    jobs = [
        dg.define_asset_job(
            "ingest_job",
            selection=["raw_prices", "features", "walk_forward_folds"],
            description="Prices for a range of sessions (one download, every session a partition), "
            "their checks, then features and folds: the demo's first run, a history backfill's too.",
            tags=tags,
        ),
        dg.define_asset_job(
            "evaluation_job",
            selection=["fold_evaluation"],
            description="Walk-forward evaluation of the LSTM and every baseline on the folds "
            "(one step per fold: folds train in parallel processes under the multiprocess executor).",
            tags=tags,
        ),
        dg.define_asset_job(
            "retrain_job",
            selection=["lstm_model"],
            description="The production LSTM of one retrain month and its promotion gate.",
            tags=tags,
        ),
        dg.define_asset_job(
            "nightly_job",
            selection=["raw_prices", "features", "daily_forecasts", "forecast_scores"],
            description="After the close: the session's prices, features, forecasts and the scores "
            "of the forecasts that matured (the nightly_after_close schedule's job).",
            tags=tags,
        ),
        dg.define_asset_job(
            "forecast_job",
            selection=["daily_forecasts", "forecast_scores"],
            description="Forecasts for a range of sessions whose months' models exist, then the scores "
            "(kept in step with the forecasts).",
            tags=tags,
        ),
        dg.define_asset_job(
            "decision_job",
            selection=["strategy_backtest", "forecast_explanations"],
            description="Strategy backtest over the out-of-sample forecasts, and the explanations of "
            "a range of forecasts.",
            tags=tags,
        ),
    ]
    return {job.name: job for job in jobs}


#: `daily_forecasts` is fresh when the forecast of the last session is there by 20:00 (the nightly
#: run starts at 18:30) on weekdays, in the calendar's time zone.
FORECAST_DEADLINE_CRON = "0 20 * * 1-5"


def freshness_checks(calendar_code: str) -> list:
    """The freshness check of `daily_forecasts`: the last session partition due by the deadline
    has been materialized (evaluated with the forecasts, in the jobs that materialize them, and by
    the `freshness_checks_sensor` when it is turned on).

    Dagster suggests `FreshnessPolicy` instead, which measures the time since the last update; on a
    source whose data end (the sample ends on 2022-12-28) that would read "stale" every evening
    although every session is forecast, so the per-session check is what says what we mean."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.SupersessionWarning)
        return list(
            dg.build_time_partition_freshness_checks(
                assets=["daily_forecasts"],
                deadline_cron=FORECAST_DEADLINE_CRON,
                timezone=calendar.timezone(calendar_code),
                severity=dg.AssetCheckSeverity.WARN,
            )
        )


def freshness_sensor(checks: list) -> dg.SensorDefinition:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.SupersessionWarning)
        return dg.build_sensor_for_freshness_checks(freshness_checks=checks, minimum_interval_seconds=600)


def source_last_date(cfg: ForecastConfig) -> dt.date | None:
    """The last date the configured source has, if it has one (the sample: 2022-12-28; a file:
    its last row); None for a live source (yfinance), whose sessions run to today. A file that
    cannot be read yet does not stop the code location from loading: its partitions run to today
    and the first raw_prices run fails with the file's error."""
    source = make_source(cfg)
    if not hasattr(source, "last_date"):
        return None
    try:
        return source.last_date()
    except ForecastError as exc:
        log.warning("source %s: no last date (%s); partitions run to today", cfg.source.kind, exc)
        return None


def build_defs(config_file: str | None = None, warehouse: str | None = None) -> dg.Definitions:
    """The job's definitions on the configuration file `config_file` (None: the defaults) and the
    warehouse file `warehouse` (None: `warehouse.db.warehouse_path`'s default)."""
    cfg = load_config(config_file)
    end = source_last_date(cfg)
    trading_days = trading_day_partitions(cfg.source.start_date, cfg.calendar, end)
    retrain_months = retrain_partitions(cfg.source.start_date, cfg.calendar, end)
    jobs = build_jobs()
    jobs["maintenance_job"] = maintenance.maintenance_job()
    freshness = freshness_checks(cfg.calendar)
    return dg.Definitions(
        assets=build_assets(trading_days, retrain_months),
        asset_checks=[*PRICE_CHECKS, forecasts_reproducible, *freshness],
        jobs=list(jobs.values()),
        schedules=[
            nightly_schedule(jobs["nightly_job"], cfg.calendar, lambda: source_last_date(cfg), trading_days),
            retrain_schedule(jobs["retrain_job"], cfg.calendar),
            maintenance.maintenance_schedule(jobs["maintenance_job"], cfg.calendar),
        ],
        sensors=[
            freshness_sensor(freshness),
            dg.AutomationConditionSensorDefinition(
                "rescore_after_forecasts",
                target=["forecast_scores"],
                minimum_interval_seconds=60,
                description="Re-scores (forecast_scores) after forecasts or prices were re-materialized "
                "outside the nightly and forecast jobs (which score in the same run). Off by default.",
            ),
        ],
        resources={
            "warehouse": WarehouseResource(path=warehouse),
            "pipeline": PipelineConfig(config_file=config_file),
        },
    )


defs = build_defs(os.environ.get("FORECAST_CONFIG"), os.environ.get("FORECAST_WAREHOUSE"))
