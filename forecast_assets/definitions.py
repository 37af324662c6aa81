"""The one `Definitions` object of the forecasting job."""

import os

import dagster as dg
import jax

from forecast_assets.assets import decision, evaluation, features, forecasts, model, prices
from forecast_assets.checks import PRICE_CHECKS, forecasts_reproducible
from forecast_assets.resources import default_resources
from forecast_assets.schedules import nightly_schedule, retrain_schedule

# Compiled XLA programs persist across runs and step processes (paid once per shape).
jax.config.update("jax_compilation_cache_dir", os.environ.get("JAX_COMPILATION_CACHE_DIR", ".jax_cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

ASSETS = [
    prices.raw_prices,
    features.features,
    features.walk_forward_folds,
    evaluation.fold_evaluation,
    model.lstm_model,
    forecasts.daily_forecasts,
    forecasts.forecast_scores,
    decision.strategy_backtest,
    decision.forecast_explanations,
]

#: Prices, features and folds for a range of sessions (the demo's first step, a backfill's too).
ingest_job = dg.define_asset_job("ingest_job", selection=["raw_prices", "features", "walk_forward_folds"])
#: Walk-forward evaluation of the LSTM and the baselines (folds in parallel processes).
evaluation_job = dg.define_asset_job("evaluation_job", selection=["fold_evaluation"])
#: The production model of one retrain month.
retrain_job = dg.define_asset_job("retrain_job", selection=["lstm_model"])
#: After the close: the session's prices, features, forecasts and the scores that matured.
nightly_job = dg.define_asset_job(
    "nightly_job",
    selection=["raw_prices", "features", "daily_forecasts", "forecast_scores"],
)
#: Forecasts (and scores) for a range of sessions whose models exist.
forecast_job = dg.define_asset_job("forecast_job", selection=["daily_forecasts", "forecast_scores"])

#: Strategy backtest over the out-of-sample forecasts, and explanations of a range of forecasts.
decision_job = dg.define_asset_job("decision_job", selection=["strategy_backtest", "forecast_explanations"])

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=[*PRICE_CHECKS, forecasts_reproducible],
    jobs=[ingest_job, evaluation_job, retrain_job, nightly_job, forecast_job, decision_job],
    schedules=[nightly_schedule(nightly_job), retrain_schedule(retrain_job)],
    resources=default_resources(),
)
