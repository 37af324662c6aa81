"""The Flax LSTM as a `Forecaster`: scalers from the training slice, windows, training, prediction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import polars as pl

from forecast_core.config import ForecastConfig
from forecast_core.errors import InsufficientDataError, NotFittedError
from forecast_core.models.forecaster import Forecaster, ForecastTask, training_rows
from forecast_core.models.lstm.train import TrainResult, fit, model_from_config, predict_scaled
from forecast_core.models.lstm.windows import Scalers, fit_scalers, make_windows


class LSTMForecaster(Forecaster):
    """Global quantile LSTM; `fit` trains on rows <= train_end and early-stops on `val`."""

    name = "lstm"

    def __init__(
        self,
        task: ForecastTask,
        cfg: ForecastConfig,
        on_epoch: Callable[[int, float, float], None] | None = None,
    ) -> None:
        super().__init__(task)
        self.cfg = cfg
        self.on_epoch = on_epoch
        self.scalers: Scalers | None = None
        self.params: dict | None = None
        self.result: TrainResult | None = None

    @classmethod
    def from_config(cls, task: ForecastTask, cfg: ForecastConfig) -> LSTMForecaster:
        return cls(task, cfg)

    @property
    def fitted(self) -> bool:
        return self.scalers is not None and self.params is not None

    @property
    def tickers(self) -> tuple[str, ...]:
        """The tickers the model was trained on: it has an embedding and scalers for these only."""
        self.require_fitted()
        return self.scalers.tickers

    @property
    def model(self):
        if self.scalers is None:
            raise NotFittedError("lstm: fit the model (or load its artifact) first")
        return model_from_config(self.cfg, len(self.scalers.tickers))

    def fit(
        self, panel: pl.DataFrame, train_end: dt.date, val: tuple[dt.date, dt.date] | None = None
    ) -> LSTMForecaster:
        if val is None:
            raise ValueError("the LSTM needs a validation slice for early stopping")
        lookback = self.cfg.model.lookback
        self.scalers = fit_scalers(training_rows(panel, train_end, self.task), self.task)
        # Only tickers seen in training can be windowed; rows after val_end are never read.
        visible = panel.filter(pl.col("date") <= val[1], pl.col("ticker").is_in(list(self.scalers.tickers)))
        data = make_windows(visible, self.task, self.scalers, lookback)
        first = data.dates.min() if len(data.dates) else train_end
        train_rows = data.rows_where(first, train_end, need_target=True)
        val_rows = data.rows_where(val[0], val[1], need_target=True)
        if len(train_rows) == 0 or len(val_rows) == 0:
            raise InsufficientDataError(
                f"LSTM needs training rows up to {train_end} and validation rows in {val[0]}..{val[1]} "
                f"with a full lookback of {lookback} sessions; got {len(train_rows)} and {len(val_rows)}"
            )
        self.result = fit(
            self.cfg, self.model, data.x, data.y, data.ticker_id, train_rows, val_rows, self.on_epoch
        )
        self.params = self.result.params
        return self

    def predict(self, panel: pl.DataFrame, start: dt.date, end: dt.date) -> np.ndarray:
        self.require_fitted()
        lookback = self.cfg.model.lookback
        # History before `start` feeds the first windows; nothing after `end` is read.
        visible = panel.filter(pl.col("date") <= end)
        data = make_windows(visible, self.task, self.scalers, lookback)
        in_range = (data.dates >= np.datetime64(start)) & (data.dates <= np.datetime64(end))
        short = in_range & ~data.window_ok
        if short.any():
            i = int(np.flatnonzero(short)[0])
            raise InsufficientDataError(
                f"{data.tickers[i]} on {data.dates[i]} has fewer than model.lookback={lookback} "
                "sessions of features before it"
            )
        rows = np.flatnonzero(in_range).astype(np.int32)
        if len(rows) == 0:
            return np.zeros((0, len(self.task.horizons), len(self.task.quantiles)), np.float32)
        scaled = predict_scaled(self.model.apply, self.params, data.x, data.ticker_id, rows, lookback)
        return (scaled * data.target_scale[rows][:, :, None]).astype(np.float32)
