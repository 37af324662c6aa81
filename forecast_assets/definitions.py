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

from forecast_assets.assets import decision, evaluation, features, forecasts, model, prices
from forecast_assets.checks import PRICE_CHECKS, forecasts_reproducible
from forecast_assets.partitions import retrain_partitions, trading_day_partitions
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_assets.schedules import nightly_schedule, retrain_schedule
from forecast_core.config import ForecastConfig, load_config
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
        return _assets(trading_days, retrain_months)


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
    ]


def build_jobs() -> dict:
    """The job's asset jobs by name (resolved against the assets of the `Definitions`)."""
    jobs = [
        #: Prices, features and folds for a range of sessions (the demo's first step, a backfill's too).
        dg.define_asset_job("ingest_job", selection=["raw_prices", "features", "walk_forward_folds"]),
        #: Walk-forward evaluation of the LSTM and the baselines (folds in parallel processes).
        dg.define_asset_job("evaluation_job", selection=["fold_evaluation"]),
        #: The production model of one retrain month.
        dg.define_asset_job("retrain_job", selection=["lstm_model"]),
        #: After the close: the session's prices, features, forecasts and the scores that matured.
        dg.define_asset_job(
            "nightly_job", selection=["raw_prices", "features", "daily_forecasts", "forecast_scores"]
        ),
        #: Forecasts (and scores) for a range of sessions whose models exist.
        dg.define_asset_job("forecast_job", selection=["daily_forecasts", "forecast_scores"]),
        #: Strategy backtest over the out-of-sample forecasts, and explanations of a range of forecasts.
        dg.define_asset_job("decision_job", selection=["strategy_backtest", "forecast_explanations"]),
    ]
    return {job.name: job for job in jobs}


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
    return dg.Definitions(
        assets=build_assets(trading_days, retrain_months),
        asset_checks=[*PRICE_CHECKS, forecasts_reproducible],
        jobs=list(jobs.values()),
        schedules=[
            nightly_schedule(jobs["nightly_job"], cfg.calendar, lambda: source_last_date(cfg), trading_days),
            retrain_schedule(jobs["retrain_job"], cfg.calendar),
        ],
        resources={
            "warehouse": WarehouseResource(path=warehouse),
            "pipeline": PipelineConfig(config_file=config_file),
        },
    )


defs = build_defs(os.environ.get("FORECAST_CONFIG"), os.environ.get("FORECAST_WAREHOUSE"))
