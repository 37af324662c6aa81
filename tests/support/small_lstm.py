"""The small synthetic panel the model tests train on: three tickers and a market series of
synthetic prices, 2015-01-02..2016-06-30, with a configuration small enough to train an LSTM in
about a second on a CPU."""

from __future__ import annotations

import datetime as dt

import polars as pl

from forecast_core.columns import DATE
from forecast_core.config import config_from_dict
from forecast_core.data.features import build_features, build_targets, feature_columns
from forecast_core.data.panel import assemble_panel
from forecast_core.evaluation.folds import Fold, walk_forward_folds
from forecast_core.models.forecaster import ForecastTask, training_rows
from tests.support.synthetic import synthetic_prices

#: A configuration small enough to train in about a second on a CPU: short feature windows (a
#: 50-session warm-up), a tiny LSTM, 3 epochs of 5 steps, two folds of 60 test sessions.
CFG = config_from_dict(
    {
        "universe": {"tickers": ["AAA", "BBB", "CCC"], "exogenous": ["MKT"]},
        "features": {
            "return_windows": [1, 5, 20],
            "volatility_windows": [5, 20],
            "moving_average_windows": [20, 50],
        },  # fmt: skip
        "model": {"lookback": 8, "hidden_size": 8},
        "train": {"steps_per_epoch": 5, "max_epochs": 3, "batch_size": 32},
        "folds": {"n_folds": 2, "test_sessions": 60, "val_sessions": 40, "min_train_sessions": 100},
    }
)


def small_setup(seed: int = 0) -> tuple[pl.DataFrame, ForecastTask, list[Fold]]:
    """Panel (about 330 sessions x 3 tickers), task and walk-forward folds from synthetic prices."""
    prices = synthetic_prices(CFG.universe.all_tickers, dt.date(2015, 1, 2), dt.date(2016, 6, 30), seed=seed)
    features = build_features(prices, CFG)
    panel = assemble_panel(features, build_targets(prices, CFG.horizons), prices)
    task = ForecastTask(feature_columns(features), CFG.horizons, CFG.quantiles)
    labelled = training_rows(panel, panel[DATE].max(), task)[DATE].unique().to_list()
    return panel, task, walk_forward_folds(labelled, CFG.folds, CFG.purge_sessions)
