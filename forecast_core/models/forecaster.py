"""The one interface every forecaster implements: the LSTM and each baseline.

A forecaster sees a *panel*: a polars frame sorted by (ticker, date) with the feature columns, the
daily log return `ret_1` (also a feature) and one target column per horizon (`target_h5`: forward
log return over 5 sessions, null where the future is unknown). `fit` may read only rows dated on or
before `train_end` (their labels end before the next slice, thanks to the purge gap) and may use
rows in `val` for early stopping. `predict` returns quantile forecasts of the forward log return
for the rows of `panel` dated in [start, end], in the panel's (ticker, date) order; it may read
earlier rows of the panel as history (features only, never targets).

The panel is in memory (a `pl.DataFrame`) or on disk (a `SpilledPanel`, what the job's retraining
and fold evaluation pass: `forecast_core.data.spilled_panel`); a model reads it through
`panel_columns`, `columns_between` or `panel_chunks`, which read only the columns (and rows) it
asks for.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Self

import numpy as np
import polars as pl

from forecast_core.columns import DATE, TICKER, target_column
from forecast_core.data.spilled_panel import Panel, SpilledPanel
from forecast_core.errors import NotFittedError

if TYPE_CHECKING:
    from forecast_core.config import ForecastConfig


@dataclass(frozen=True)
class ForecastTask:
    """What to forecast: the feature columns, horizons (sessions) and quantile levels."""

    feature_columns: tuple[str, ...]
    horizons: tuple[int, ...]
    quantiles: tuple[float, ...]

    @property
    def target_columns(self) -> tuple[str, ...]:
        return tuple(target_column(h) for h in self.horizons)

    @property
    def median_index(self) -> int:
        return self.quantiles.index(0.5)


class Forecaster(abc.ABC):
    """Fit on a training cut of a panel; predict quantile log returns `<float32>[rows, H, Q]`.

    The whole interface: `from_config` (build with the settings the model reads), `fit`,
    `predict` (quantiles), `point_forecast` (what point metrics score: the median unless the model
    has a point forecast of its own) and `fitted`. Predicting before `fit` raises `NotFittedError`.
    """

    name: ClassVar[str]

    def __init__(self, task: ForecastTask) -> None:
        self.task = task

    @classmethod
    def from_config(cls, task: ForecastTask, cfg: ForecastConfig) -> Self:
        """The forecaster for `task` with its settings from `cfg` (none, unless overridden)."""
        return cls(task)

    @property
    @abc.abstractmethod
    def fitted(self) -> bool:
        """Whether `fit` has run (or fitted state was loaded), so that `predict` may be called."""

    def require_fitted(self) -> None:
        """Raise `NotFittedError` naming the model unless it is fitted."""
        if not self.fitted:
            raise NotFittedError(f"{self.name}: call fit (or load a fitted artifact) before predict")

    @abc.abstractmethod
    def fit(self, panel: Panel, train_end: dt.date, val: tuple[dt.date, dt.date] | None = None) -> Self:
        """Learn from rows dated <= train_end; returns self."""

    @abc.abstractmethod
    def predict(self, panel: Panel, start: dt.date, end: dt.date) -> np.ndarray:
        """Quantiles `<float32>[rows in [start, end], len(horizons), len(quantiles)]`, sorted on axis -1."""

    def predict_members(self, panel: Panel, start: dt.date, end: dt.date) -> np.ndarray:
        """Each ensemble member's quantiles `[K, rows, H, Q]` (`predict` is their mean); a single
        model is an ensemble of one."""
        return self.predict(panel, start, end)[None]

    def predict_columns(self, panel: Panel) -> tuple[str, ...] | None:
        """The panel columns `predict` reads besides the keys and targets (None: it may read any):
        what `model_parts` reads of a spilled panel for it."""
        return None

    def point_forecast(self, panel: Panel, start: dt.date, end: dt.date, quantiles: np.ndarray) -> np.ndarray:
        """The point forecast `[rows, H]` for the rows of `predict(panel, start, end)` = `quantiles`:
        by default their median; a model with a point forecast of its own returns that."""
        return quantiles[:, :, self.task.median_index]


def model_parts(model: Forecaster, panel: Panel) -> Iterator[Panel]:
    """The panel to predict from a chunk of whole tickers at a time, with the columns `model`
    reads (`predict_columns`); the panel itself when it is in memory. A forecast of a row depends
    on its own ticker's history alone (no model reads a cross-section), so predictions made part
    by part and concatenated are the whole panel's, in its (ticker, date) order."""
    if not isinstance(panel, SpilledPanel):
        yield panel
        return
    reads = model.predict_columns(panel)
    yield from panel.chunks(
        panel.columns if reads is None else (TICKER, DATE, *model.task.target_columns, *reads)
    )


def predict_in_parts(model: Forecaster, panel: Panel, start: dt.date, end: dt.date) -> np.ndarray:
    """`model.predict(panel, start, end)`, a part at a time (`model_parts`)."""
    parts = [model.predict(part, start, end) for part in model_parts(model, panel)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def panel_columns(panel: Panel, task: ForecastTask, *columns: str) -> pl.DataFrame:
    """The keys, the task's targets and `columns` of `panel` (those it has), in that order.

    A model narrows the panel to what it reads before it filters or sorts, so the copies it makes
    hold a few columns, not every feature: a selection shares the columns' memory, a filter copies
    only what was selected, and a `SpilledPanel` reads only these columns from disk. At 5,000
    tickers x 20 years the full panel is about 5 GB."""
    wanted = dict.fromkeys((TICKER, DATE, *task.target_columns, *columns))
    if isinstance(panel, SpilledPanel):
        return panel.collect(list(wanted))
    return panel.select(c for c in wanted if c in panel.columns)


def columns_between(
    panel: Panel, task: ForecastTask, start: dt.date, end: dt.date, *columns: str
) -> pl.DataFrame:
    """`rows_between(panel_columns(panel, task, *columns), start, end)`, reading only those rows
    of a `SpilledPanel`."""
    if isinstance(panel, SpilledPanel):
        return in_key_order(
            panel.collect(list(dict.fromkeys((TICKER, DATE, *task.target_columns, *columns))), start, end)
        )
    return rows_between(panel_columns(panel, task, *columns), start, end)


def in_key_order(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` sorted by (ticker, date); returned as it is when it already is (the panel is built
    in that order, and a sort copies every column), checked on the two key columns."""
    ticker, date = pl.col(TICKER), pl.col(DATE)
    ordered = (ticker > ticker.shift(1)) | ((ticker == ticker.shift(1)) & (date > date.shift(1)))
    if frame.height < 2 or frame.select(ordered.slice(1).all()).item():
        return frame
    return frame.sort(TICKER, DATE)


def rows_between(panel: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    """The panel's rows dated in [start, end], in (ticker, date) order."""
    return in_key_order(panel.filter(pl.col(DATE).is_between(start, end)))


def training_rows(
    panel: pl.DataFrame, train_end: dt.date, task: ForecastTask, *also: pl.Expr
) -> pl.DataFrame:
    """Rows dated <= train_end whose every target is known (the rows a model may learn from), and
    which meet the predicates `also`, in (ticker, date) order."""
    known = pl.all_horizontal(pl.col(task.target_columns).is_not_null())
    return in_key_order(panel.filter(pl.col(DATE) <= train_end, known, *also))
