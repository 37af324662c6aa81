"""The Flax LSTM as a `Forecaster`: a seed ensemble that corrects a volatility prior's bands.

`fit` fits the prior (`model.sigma_prior`, see `prior.py`) on rows <= train_end, standardises each
row's targets by the prior's h-session scale, sets the network's starting point to the prior's
empirical z-quantiles on the training rows, and trains with early stopping on the validation
slice (where the untrained network, i.e. the prior, is the first candidate). `predict` rescales
the ensemble's mean z-quantiles by the prior's scale of each row.

Serving continues from a stored state (`forecast_state`): `forecast(panel, start, end, carry)`
reads only each ticker's rows after the row its state was taken at, continues the prior's and
the inputs' recursions from it (`RECURSION_COLUMNS`), and returns the state to store for the next
run, taken `lookback + STATE_SLACK` rows before each ticker's newest; the forecasts are those of
the whole history, to the bit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import numpy as np
import polars as pl

from forecast_core.columns import DATE, TICKER
from forecast_core.config import ForecastConfig
from forecast_core.data.spilled_panel import Panel, SpilledPanel, panel_chunks, restrict
from forecast_core.errors import InsufficientDataError, NotFittedError
from forecast_core.models import continuation
from forecast_core.models.continuation import STATE_SLACK
from forecast_core.models.forecaster import (
    Forecaster,
    ForecastTask,
    model_parts,
    panel_columns,
    training_rows,
)
from forecast_core.models.lstm.inputs import STATE_COLUMNS, input_columns, inputs_and_state
from forecast_core.models.lstm.prior import ScaleModel, make_prior, sorted_panel, standardised_quantiles
from forecast_core.models.lstm.train import TrainResult, bucketed, fit, model_from_config, predict_scaled
from forecast_core.models.lstm.windows import Scalers, WindowData, fit_scalers, make_windows, raw_inputs
from forecast_core.models.volatility import CARRY_COLUMNS

#: What a ticker's stored state holds: the prior's variance recursions and the inputs' (`ticker`
#: and `as_of`, the date of the row they were taken after, come first).
RECURSION_COLUMNS = (*CARRY_COLUMNS, *STATE_COLUMNS)


class LSTMForecaster(Forecaster):
    """Global quantile LSTM ensemble on a volatility prior; `fit` trains on rows <= train_end and
    early-stops on `val`. After `fit` (or `artifacts.from_bytes`): `prior` (the fitted volatility
    baseline), `prior_z_` `[H, Q]`, `scalers`, `params` (members stacked on axis 0)."""

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
        self.prior: ScaleModel | None = None
        self.prior_z_: np.ndarray | None = None
        self.scalers: Scalers | None = None
        self.params: dict | None = None
        self.result: TrainResult | None = None

    @classmethod
    def from_config(cls, task: ForecastTask, cfg: ForecastConfig) -> LSTMForecaster:
        return cls(task, cfg)

    @property
    def fitted(self) -> bool:
        return self.scalers is not None and self.params is not None and self.prior is not None

    @property
    def tickers(self) -> tuple[str, ...]:
        """The tickers the model was trained on: it has an embedding for these only."""
        self.require_fitted()
        return self.scalers.tickers

    @property
    def model(self):
        if self.scalers is None:
            raise NotFittedError("lstm: fit the model (or load its artifact) first")
        return model_from_config(self.cfg, len(self.scalers.tickers))

    def windows(
        self,
        panel: pl.DataFrame,
        start: dt.date | None = None,
        end: dt.date | None = None,
        carry: pl.DataFrame | None = None,
    ) -> WindowData:
        """The arrays of `panel`'s rows (sorted by ticker, date) with the fitted prior and scaler;
        with `start`, `end`: only those of the windows ending at rows dated in [start, end]."""
        return self._windows_and_state(panel, start, end, carry)[0]

    def _windows_and_state(
        self,
        panel: pl.DataFrame,
        start: dt.date | None,
        end: dt.date | None,
        carry: pl.DataFrame | None,
    ) -> tuple[WindowData, pl.DataFrame]:
        """`windows`, and the state to store (`forecast`); with `carry` (ticker and
        `RECURSION_COLUMNS` at the row before each ticker's first in `panel`) the recursions
        continue from it."""
        self.require_fitted()
        panel = sorted_panel(self.narrow(panel))
        ends = None if start is None else panel[DATE].is_between(start, end).to_numpy()
        scales, variances = self.prior.scales_and_state(panel, carry)
        sigma = scales[:, 0] / np.sqrt(float(self.task.horizons[0]))
        _, raw, inputs = inputs_and_state(panel, sigma, self.scalers.inputs, carry)
        values = (variances.s2, variances.next_variance, *(getattr(inputs, c) for c in STATE_COLUMNS))
        needed = ("s2", "sigma", "slow_variance")
        if "mkt_shock" in self.scalers.inputs:
            needed += ("market_variance", "market_slow_variance")
        lookback = self.cfg.model.lookback
        state = continuation.state_at(
            panel, dict(zip(RECURSION_COLUMNS, values, strict=True)), lookback + STATE_SLACK, needed
        )
        return make_windows(panel, self.task, self.scalers, lookback, scales, raw, window_ends=ends), state

    def predict_columns(self, panel: Panel) -> tuple[str, ...]:
        return input_columns(panel)

    def narrow(self, panel: Panel) -> pl.DataFrame:
        """The keys, targets and the columns the inputs read: what windows are built from."""
        return panel_columns(panel, self.task, *input_columns(panel))

    def fit(
        self, panel: pl.DataFrame, train_end: dt.date, val: tuple[dt.date, dt.date] | None = None
    ) -> LSTMForecaster:
        if val is None:
            raise ValueError("the LSTM needs a validation slice for early stopping")
        lookback = self.cfg.model.lookback
        # The tickers with training rows, from the keys and targets alone (not every column).
        keys = (TICKER, DATE, *self.task.target_columns)
        tickers = [
            t
            for part in panel_chunks(panel, keys)
            for t in training_rows(part, train_end, self.task)[TICKER].unique()
        ]

        def visible() -> Iterator[pl.DataFrame]:
            """Only tickers seen in training can be windowed; rows after val_end are never read.
            A part of the panel at a time (`model_parts`: the whole panel when in memory)."""
            for part in model_parts(self, panel):
                yield sorted_panel(
                    self.narrow(part).filter(pl.col(DATE) <= val[1], pl.col(TICKER).is_in(tickers))
                )

        # In memory: the one visible frame, read once. Spilled: each part read when needed.
        in_memory = None if isinstance(panel, SpilledPanel) else next(visible())
        prior = make_prior(self.cfg.model.sigma_prior, self.task, self.cfg)
        self.prior = prior.fit(restrict(panel, tickers) if in_memory is None else in_memory, train_end)
        # The input scaler from every part's training rows; then the windows, part by part.
        raw_train, names, whole = [], (), None
        for part in visible() if in_memory is None else [in_memory]:
            scales = self.prior.scales(part)
            names, raw = raw_inputs(part, scales, self.task)
            raw_train.append(raw[(part[DATE] <= train_end).to_numpy()])
            whole = None if in_memory is None else (part, scales, raw)
            del scales, raw
        self.scalers = fit_scalers(
            tickers, names, np.concatenate(raw_train) if len(raw_train) > 1 else raw_train[0]
        )
        del raw_train, in_memory
        if whole is not None:
            data = make_windows(whole[0], self.task, self.scalers, lookback, whole[1], whole[2])
        else:
            data = WindowData.concat(
                [make_windows(p, self.task, self.scalers, lookback, self.prior.scales(p)) for p in visible()]
            )
        del whole  # training needs only the arrays of `data`
        first = data.dates.min() if len(data.dates) else train_end
        train_rows = data.rows_where(first, train_end, need_target=True)
        val_rows = data.rows_where(val[0], val[1], need_target=True)
        if len(train_rows) == 0 or len(val_rows) == 0:
            raise InsufficientDataError(
                f"LSTM needs training rows up to {train_end} and validation rows in {val[0]}..{val[1]} "
                f"with a full lookback of {lookback} sessions; got {len(train_rows)} and {len(val_rows)}"
            )
        self.prior_z_ = standardised_quantiles(data.y[train_rows].astype(np.float64), self.task.quantiles)
        self.result = fit(self.cfg, self.model, data, train_rows, val_rows, self.prior_z_, self.on_epoch)
        self.params = self.result.params
        return self

    def predict_members(self, panel: pl.DataFrame, start: dt.date, end: dt.date) -> np.ndarray:
        """Each ensemble member's quantiles `<float32>[K, rows in [start, end], H, Q]` in
        (ticker, date) order (for seed-noise reporting; `predict` is their mean)."""
        return self._members_and_state(panel, start, end, None)[0]

    def forecast(
        self, panel: pl.DataFrame, start: dt.date, end: dt.date, carry: pl.DataFrame | None = None
    ) -> tuple[np.ndarray, pl.DataFrame]:
        """`predict` `[rows in [start, end], H, Q]` and the state to store for the next run: per
        ticker (`ticker`, `as_of`, `RECURSION_COLUMNS`) after its row `lookback + STATE_SLACK` rows
        before its newest <= `end`, where the recursions are past their warm-up there. With
        `carry` (the same columns, as stored), `panel` holds only each ticker's rows after its
        `as_of` and the recursions continue from the carried values: the same forecasts as the
        whole history gives, to the bit (`continuation.continuable`: which tickers have enough
        such rows); a ticker whose state row would lie at or before its carried `as_of` keeps the
        carried one."""
        members, state = self._members_and_state(panel, start, end, carry)
        return members.mean(axis=0), continuation.with_carried(state, carry)

    @property
    def rows_before(self) -> int:
        """Rows a forecast reads before its own (its window's): what `continuation.continuable`
        needs after a state."""
        return self.cfg.model.lookback - 1

    def _members_and_state(
        self, panel: pl.DataFrame, start: dt.date, end: dt.date, carry: pl.DataFrame | None
    ) -> tuple[np.ndarray, pl.DataFrame]:
        self.require_fitted()
        lookback = self.cfg.model.lookback
        # History before `start` feeds the first windows; nothing after `end` is read.
        data, state = self._windows_and_state(
            self.narrow(panel).filter(pl.col(DATE) <= end), start, end, carry
        )
        in_range = (data.dates >= np.datetime64(start)) & (data.dates <= np.datetime64(end))
        short = in_range & ~data.window_ok
        if short.any():
            i = int(np.flatnonzero(short)[0])
            raise InsufficientDataError(
                f"{data.tickers[i]} on {data.dates[i]} has fewer than model.lookback={lookback} "
                "sessions of known inputs before it (the volatility prior's warm-up included)"
            )
        rows = np.flatnonzero(in_range).astype(np.int32)
        k, n_h, n_q = self.cfg.model.ensemble_size, len(self.task.horizons), len(self.task.quantiles)
        if len(rows) == 0:
            return np.zeros((k, 0, n_h, n_q), np.float32), state
        x, ticker_id = bucketed(data.x, data.ticker_id)
        z = predict_scaled(self.model.apply, self.params, x, ticker_id, rows, lookback)
        return (z * data.target_scale[rows][None, :, :, None]).astype(np.float32), state

    def predict(self, panel: pl.DataFrame, start: dt.date, end: dt.date) -> np.ndarray:
        return self.predict_members(panel, start, end).mean(axis=0)
