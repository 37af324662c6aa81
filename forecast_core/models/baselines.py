"""Naive baselines: ordinary forecasters with the same interface and evaluation as the LSTM.

Six models, in the order `make_baselines` returns them:

- `ZeroReturn`      point 0 (random walk on prices);
- `HistoricalMean`  point = the ticker's mean training target (drift);
- `RidgeBaseline`   point = standardised ridge regression on the task's features, per horizon;
- `EwmaVol`         RiskMetrics: median 0, band sigma_t * sqrt(h) * z_tau;
- `GjrGarch`        per-ticker GJR-GARCH(1,1): median 0, band sqrt(var_h) * z_tau (`models.garch`);
- `VolBlend`        the average of the `EwmaVol` and `GjrGarch` bands (`models.garch`).

The three point baselines share `PointBaseline`: their quantiles are the point forecast plus the
empirical quantiles of their own training residuals (target - point), per ticker and horizon, so
`q_tau = point + quantile_tau(residuals)`. The median column q50 is therefore point + median
residual, *not* the point forecast; `predict_point` returns the point forecast itself, which is what
point metrics (MAE, RMSE, directional accuracy) should score.

Every model learns only from `training_rows(panel, train_end, task)` (and, for `EwmaVol`, the
returns dated <= train_end); at predict time a model reads features of earlier rows (never targets).
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Callable, Iterator

import numpy as np
import polars as pl
import scipy.linalg

from forecast_core.columns import DATE, TICKER
from forecast_core.config import ForecastConfig
from forecast_core.data.spilled_panel import Panel, panel_chunks
from forecast_core.errors import InsufficientDataError
from forecast_core.models.forecaster import (
    Forecaster,
    ForecastTask,
    columns_between,
    in_key_order,
    panel_columns,
    rows_between,
    training_rows,
)
from forecast_core.models.garch import ContinuedVolatility, GjrGarch, VolBlend, pooled, volatility_parts
from forecast_core.models.volatility import (  # noqa: F401 - ewma_variance re-exported
    RETURN_COLUMN,
    PanelVariances,
    ewma_variance,
    panel_variance,
    panel_variances,
    standardised_quantiles,
    ticker_bounds,
)


def _targets(frame: pl.DataFrame, task: ForecastTask) -> np.ndarray:
    """`<float64>[rows, H]` target matrix."""
    return frame.select(pl.col(task.target_columns).cast(pl.Float64)).to_numpy()


def _lookup(tickers: pl.Series, table: dict[str, np.ndarray], default: np.ndarray) -> np.ndarray:
    """Per row, `table[ticker]` or `default` for a ticker not in it: `[rows, *default.shape]`."""
    if tickers.len() == 0:
        return np.empty((0, *default.shape))
    unique, inverse = np.unique(tickers.to_numpy(), return_inverse=True)
    return np.stack([table.get(t, default) for t in unique])[inverse]


def _first_bad_row(rows: pl.DataFrame, bad: np.ndarray) -> str:
    i = int(np.flatnonzero(bad)[0])
    return f"ticker {rows[TICKER][i]!r} on {rows[DATE][i]} ({int(bad.sum())} such row(s) in all)"


class PointBaseline(Forecaster):
    """A point forecaster with empirical residual bands (the shared half of three baselines).

    Subclasses implement `_fit_point(train)` and `_point(rows) -> <float64>[rows, H]`. After `fit`:
    `band_offsets_[ticker]` `<float64>[H, Q]` holds the tau-quantiles of that ticker's training
    residuals (target - point); `pooled_offsets_` `[H, Q]` those of all tickers, used for a ticker
    with fewer than `MIN_RESIDUALS` training rows (including one unseen in training).
    """

    MIN_RESIDUALS = 30

    @property
    def fitted(self) -> bool:
        return hasattr(self, "pooled_offsets_")

    def _reads(self) -> tuple[str, ...]:
        """The panel columns `_point` reads besides the keys and targets."""
        return ()

    def predict_columns(self, panel: Panel) -> tuple[str, ...]:
        return self._reads()

    @abc.abstractmethod
    def _fit_point(self, parts: Callable[[], Iterator[pl.DataFrame]]) -> None:
        """Fit the point model on the training rows, `parts()` a chunk of whole tickers at a
        time (one chunk for a panel in memory); may iterate `parts()` more than once."""

    @abc.abstractmethod
    def _point(self, rows: pl.DataFrame) -> np.ndarray: ...

    def _training_frame(self, panel: pl.DataFrame, train_end: dt.date) -> pl.DataFrame:
        return training_rows(panel_columns(panel, self.task, *self._reads()), train_end, self.task)

    def _training_parts(self, panel: Panel, train_end: dt.date) -> Iterator[pl.DataFrame]:
        """`_training_frame` a chunk of whole tickers at a time (`panel_chunks`): a model that
        reads every feature never holds every feature of the whole panel."""
        columns = (TICKER, DATE, *self.task.target_columns, *self._reads())
        for part in panel_chunks(panel, columns):
            yield self._training_frame(part, train_end)

    def fit(
        self, panel: Panel, train_end: dt.date, val: tuple[dt.date, dt.date] | None = None
    ) -> PointBaseline:
        def parts() -> Iterator[pl.DataFrame]:
            return (part for part in self._training_parts(panel, train_end) if part.height)

        if next(parts(), None) is None:
            raise InsufficientDataError(f"{self.name}: no training rows dated <= {train_end}")
        self._fit_point(parts)
        tau = np.asarray(self.task.quantiles)
        residuals, self.band_offsets_ = [], {}
        for train in parts():
            resid = _targets(train, self.task) - self._point(train)
            # `train` is sorted by (ticker, date): each ticker's residuals are one run of rows.
            tickers = train[TICKER].to_numpy()
            self.band_offsets_ |= {
                str(tickers[a]): np.quantile(resid[a:b], tau, axis=0).T
                for a, b in ticker_bounds(tickers)
                if b - a >= self.MIN_RESIDUALS
            }
            residuals.append(resid)
        pooled = residuals[0] if len(residuals) == 1 else np.concatenate(residuals)
        self.pooled_offsets_ = np.quantile(pooled, tau, axis=0).T
        return self

    def _rows_and_point(self, panel: pl.DataFrame, start: dt.date, end: dt.date):
        self.require_fitted()
        rows = columns_between(panel, self.task, start, end, *self._reads())
        if rows.height == 0:
            return rows, np.empty((0, len(self.task.horizons)))
        return rows, self._point(rows)

    def predict_point(self, panel: pl.DataFrame, start: dt.date, end: dt.date) -> np.ndarray:
        """Point forecasts `<float32>[rows in [start, end], H]` in (ticker, date) order."""
        return self._rows_and_point(panel, start, end)[1].astype(np.float32)

    def point_forecast(
        self, panel: pl.DataFrame, start: dt.date, end: dt.date, quantiles: np.ndarray
    ) -> np.ndarray:
        """The model's own point forecast (not the median of its bands: see the module docstring)."""
        return self.predict_point(panel, start, end)

    def predict(self, panel: pl.DataFrame, start: dt.date, end: dt.date) -> np.ndarray:
        """Quantiles `<float32>[rows, H, Q]`: point + residual quantiles, sorted along Q."""
        rows, point = self._rows_and_point(panel, start, end)
        offsets = _lookup(rows[TICKER], self.band_offsets_, self.pooled_offsets_)
        return np.sort(point[:, :, None] + offsets, axis=-1).astype(np.float32)


class ZeroReturn(PointBaseline):
    """Random walk on prices: the point forecast of every forward log return is 0."""

    name = "zero_return"

    def _fit_point(self, parts: Callable[[], Iterator[pl.DataFrame]]) -> None:
        pass

    def _point(self, rows: pl.DataFrame) -> np.ndarray:
        return np.zeros((rows.height, len(self.task.horizons)))


class HistoricalMean(PointBaseline):
    """Drift: the ticker's mean training target per horizon (`means_[ticker]` `[H]`).

    A ticker unseen in training gets `pooled_mean_`, the mean over all training rows.
    """

    name = "historical_mean"

    def _fit_point(self, parts: Callable[[], Iterator[pl.DataFrame]]) -> None:
        targets, self.means_ = [], {}
        for train in parts():
            targets.append(_targets(train, self.task))
            means = train.group_by(TICKER).agg(pl.col(self.task.target_columns).cast(pl.Float64).mean())
            self.means_ |= {row[0]: np.asarray(row[1:], dtype=np.float64) for row in means.iter_rows()}
        self.pooled_mean_ = (targets[0] if len(targets) == 1 else np.concatenate(targets)).mean(axis=0)

    def _point(self, rows: pl.DataFrame) -> np.ndarray:
        return _lookup(rows[TICKER], self.means_, self.pooled_mean_)


class RidgeBaseline(PointBaseline):
    """Per horizon, ridge regression (penalty `alpha`) on the task's feature columns standardised
    by their training mean and population standard deviation: sklearn's
    `Pipeline(StandardScaler(), Ridge(alpha))`, solved from sufficient statistics accumulated
    `CHUNK_ROWS` rows at a time (two passes: means, then centred cross-products), so its memory
    does not grow with the panel; `tests/models/test_baselines.py` checks it against that pipeline.

    After `fit`: `mean_`, `scale_` `<float64>[F]` (the scaler, training rows only), `coef_`
    `[F, H]` (on standardised features) and `intercept_` `[H]`. Training rows with a null or
    non-finite feature are left out of the fit; at predict time such a row raises
    `InsufficientDataError` (a ValueError) naming its ticker and date: dropping warm-up rows is the
    caller's job. Bands come from in-sample residuals, so they are slightly narrow.
    """

    name = "ridge"
    CHUNK_ROWS = 1_000_000

    def __init__(self, task: ForecastTask, alpha: float = 10.0) -> None:
        super().__init__(task)
        self.alpha = alpha

    @classmethod
    def from_config(cls, task: ForecastTask, cfg: ForecastConfig) -> RidgeBaseline:
        return cls(task, alpha=cfg.ridge_alpha)

    def _reads(self) -> tuple[str, ...]:
        return self.task.feature_columns

    def _chunks(self, rows: pl.DataFrame):
        """`(features <float64>[n, F], targets [n, H])` of consecutive slices of `rows`."""
        for i in range(0, rows.height, self.CHUNK_ROWS):
            part = rows.slice(i, self.CHUNK_ROWS)
            yield part.select(pl.col(self.task.feature_columns).cast(pl.Float64)).to_numpy(), part

    def _all_finite(self) -> pl.Expr:
        """Per row: every feature column present and finite."""
        finite = [pl.col(c).cast(pl.Float64).is_finite().fill_null(False) for c in self.task.feature_columns]
        return pl.all_horizontal(finite)

    def _training_frame(self, panel: pl.DataFrame, train_end: dt.date) -> pl.DataFrame:
        rows = panel_columns(panel, self.task, *self._reads())
        return training_rows(rows, train_end, self.task, self._all_finite())

    def _fit_point(self, parts: Callable[[], Iterator[pl.DataFrame]]) -> None:
        n, f = 0, len(self.task.feature_columns)
        x_sum, y_sum = np.zeros(f), np.zeros(len(self.task.horizons))
        for train in parts():
            n += train.height
            for x, part in self._chunks(train):
                x_sum += x.sum(axis=0)
                y_sum += _targets(part, self.task).sum(axis=0)
        mean, y_mean = x_sum / n, y_sum / n
        xtx, xty = np.zeros((f, f)), np.zeros((f, y_sum.size))
        for train in parts():
            for x, part in self._chunks(train):
                x -= mean
                xtx += x.T @ x
                xty += x.T @ (_targets(part, self.task) - y_mean)
        scale = np.sqrt(np.diag(xtx) / n)
        scale[scale < 10 * np.finfo(np.float64).eps] = 1.0  # a constant feature: as StandardScaler
        gram = xtx / np.outer(scale, scale) + self.alpha * np.eye(f)
        self.mean_, self.scale_, self.intercept_ = mean, scale, y_mean
        self.coef_ = scipy.linalg.solve(gram, xty / scale[:, None], assume_a="pos")

    def _point(self, rows: pl.DataFrame) -> np.ndarray:
        bad = ~rows.select(self._all_finite()).to_series().to_numpy()
        if bad.any():
            raise InsufficientDataError(
                f"ridge: null or non-finite feature for {_first_bad_row(rows, bad)}; "
                f"features {list(self.task.feature_columns)} need their warm-up rows dropped"
            )
        out = []
        for x, _ in self._chunks(rows):
            out.append(((x - self.mean_) / self.scale_) @ self.coef_ + self.intercept_)
        return np.concatenate(out) if out else np.empty((0, len(self.task.horizons)))


class EwmaVol(ContinuedVolatility, Forecaster):
    """RiskMetrics volatility bands around a zero median.

    `q_tau = sigma_t * sqrt(h) * z_tau[h]`, sigma_t = sqrt(`ewma_variance`) of the ticker's `ret_1`
    over its whole history up to t. `z_` `<float64>[H, Q]` holds the tau-quantiles of the
    standardised training targets `target_h / (sigma_t * sqrt(h))`, pooled across tickers, clipped
    so that levels below 0.5 are <= 0 and above are >= 0; the median is exactly 0. A row still in
    warm-up (fewer than `WARMUP` returns) raises `InsufficientDataError` at predict time.
    """

    name = "ewma_vol"
    WARMUP = 20

    def __init__(self, task: ForecastTask, lam: float = 0.94) -> None:
        super().__init__(task)
        self.lam = lam

    @classmethod
    def from_config(cls, task: ForecastTask, cfg: ForecastConfig) -> EwmaVol:
        return cls(task, lam=cfg.ewma_lambda)

    @property
    def fitted(self) -> bool:
        return hasattr(self, "z_")

    def with_sigma(self, panel: pl.DataFrame, until: dt.date | None = None) -> pl.DataFrame:
        """The keys, targets and `ret_1` of the panel's rows (dated <= `until`, all without it),
        sorted by (ticker, date), with a `sigma` column (NaN during warm-up)."""
        panel = panel_columns(panel, self.task, RETURN_COLUMN)
        if until is not None:
            panel = panel.filter(pl.col(DATE) <= until)
        panel = in_key_order(panel)
        s2 = panel_variance(panel, self.lam, (1,), warmup=self.WARMUP)[:, 0]
        return panel.with_columns(sigma=pl.Series(np.sqrt(s2), dtype=pl.Float64))

    def fit(
        self, panel: pl.DataFrame, train_end: dt.date, val: tuple[dt.date, dt.date] | None = None
    ) -> EwmaVol:
        z = pooled(
            [self._standardised_targets(part, train_end) for part in volatility_parts(panel, self.task)]
        )
        if z.shape[0] == 0:
            raise InsufficientDataError(f"ewma_vol: no training rows past warm-up dated <= {train_end}")
        self.z_ = standardised_quantiles(z, self.task.quantiles)
        return self

    def _standardised_targets(self, part: pl.DataFrame, train_end: dt.date) -> np.ndarray:
        """`target_h / (sigma_t * sqrt(h))` `[rows, H]` of the part's training rows past warm-up."""
        train = training_rows(self.with_sigma(part, until=train_end), train_end, self.task)
        sigma = train["sigma"].to_numpy()
        train = train.filter(pl.Series(np.isfinite(sigma) & (sigma > 0)))
        h = np.asarray(self.task.horizons, dtype=np.float64)
        return _targets(train, self.task) / (train["sigma"].to_numpy()[:, None] * np.sqrt(h))

    def scales(self, panel: pl.DataFrame) -> np.ndarray:
        """h-session scales `sigma_t * sqrt(h)` `<float64>[rows, H]` of the panel's rows in
        (ticker, date) order (NaN during warm-up); what the LSTM's `ewma` prior standardises by."""
        return self.scales_and_state(panel)[0]

    def scales_and_state(
        self, panel: pl.DataFrame, carry: pl.DataFrame | None = None
    ) -> tuple[np.ndarray, PanelVariances]:
        """`scales` and the recursions' state after every row, continuing from `carry` (per ticker,
        `volatility.CARRY_COLUMNS` at the row before its first here) where given."""
        panel = in_key_order(panel_columns(panel, self.task, RETURN_COLUMN))
        v = panel_variances(panel, self.lam, (1,), warmup=self.WARMUP, with_ewma=False, carry=carry)
        return np.sqrt(v.s2)[:, None] * np.sqrt(np.asarray(self.task.horizons, dtype=np.float64)), v

    def state(self) -> dict:
        """The fitted state, JSON-serialisable (`from_state` restores it)."""
        self.require_fitted()
        return {"lam": self.lam, "z": self.z_.tolist()}

    @classmethod
    def from_state(cls, task: ForecastTask, cfg: ForecastConfig, state: dict) -> EwmaVol:
        model = cls(task, lam=state["lam"])
        model.z_ = np.asarray(state["z"], dtype=np.float64)
        return model

    def predict(self, panel: pl.DataFrame, start: dt.date, end: dt.date) -> np.ndarray:
        self.require_fitted()
        rows = rows_between(self.with_sigma(panel, until=end), start, end)
        sigma = rows["sigma"].to_numpy()
        if not np.isfinite(sigma).all():
            bad = ~np.isfinite(sigma)
            raise InsufficientDataError(
                f"ewma_vol: sigma still in warm-up (< {self.WARMUP} returns) for {_first_bad_row(rows, bad)}"
            )
        scale = sigma[:, None] * np.sqrt(np.asarray(self.task.horizons, dtype=np.float64))
        return (scale[:, :, None] * self.z_[None]).astype(np.float32)


BASELINES: dict[str, type[Forecaster]] = {
    "zero_return": ZeroReturn,
    "historical_mean": HistoricalMean,
    "ridge": RidgeBaseline,
    "ewma_vol": EwmaVol,
    "gjr_garch": GjrGarch,
    "vol_blend": VolBlend,
}


def make_baseline(name: str, task: ForecastTask, cfg: ForecastConfig) -> Forecaster:
    """One baseline by name, with its settings (ridge_alpha, ewma_lambda) from `cfg`."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    return BASELINES[name].from_config(task, cfg)


def make_baselines(task: ForecastTask, cfg: ForecastConfig) -> list[Forecaster]:
    """Every baseline, in the fixed order zero_return, historical_mean, ridge, ewma_vol, gjr_garch,
    vol_blend."""
    return [make_baseline(name, task, cfg) for name in BASELINES]
