"""GJR-GARCH(1,1) volatility bands, and their blend with the RiskMetrics baseline.

`GjrGarch` (`gjr_garch`): per ticker, a zero-mean GJR-GARCH(1,1) fitted by `arch` on the ticker's
daily log returns `ret_1` dated <= train_end,

    s2_t = omega + (alpha + gamma * I(r_{t-1} < 0)) * r_{t-1}^2 + beta * s2_{t-1},

then filtered forward with those fixed parameters over the whole panel history (`panel_variance`:
a linear first-order recursion, stepped in time across a chunk of tickers at once). The variance of the h-session
return at t is the sum of the h one-step-ahead forecasts; with a symmetric innovation,
E[I(r < 0) r^2] = s2 / 2, so the k-step forecast follows s_{k+1} = omega + phi * s_k with
persistence phi = alpha + gamma / 2 + beta (`gjr_horizon_variance`, as `arch`'s analytic forecast).
Bands by filtered historical simulation: `q_tau = sqrt(var_h) * z_tau[h]`, where `z_` `[H, Q]`
holds the tau-quantiles of the standardised training targets `target_h / sqrt(var_h)` pooled
across tickers, clipped so that the median is exactly 0 (as `EwmaVol`).

Parameters are estimated once per `fit` (the retrain); `predict` only filters, and `state()` /
`from_state` carry the fitted parameters as JSON so that a serving layer can filter nightly without
refitting.

Fallback (never silent): a ticker whose fit is not usable gets `EwmaVol`'s variance instead,
`s2_ewma * h` with lambda `cfg.ewma_lambda`, and a `GarchFallbackWarning` names it with the reason;
`fallback_tickers_[ticker]` records the reason. Not usable means: fewer than `MIN_RETURNS` finite
returns dated <= train_end; constant returns (the model is not identified); `arch` raised; the
optimiser did not converge (`convergence_flag != 0`); a non-finite parameter, one outside the GJR
constraints (omega > 0, alpha >= 0, alpha + gamma >= 0, beta >= 0), or persistence
alpha + gamma/2 + beta > 1 + `STATIONARITY_TOL` (non-stationary). A ticker unseen at fit time gets
the EWMA variance at predict time, with the same warning. The fallback tickers' standardised
training targets are pooled into `z_` with their EWMA variance.

A fit on the stationarity bound (persistence 1 to rounding: SLSQP stops there when the likelihood's
optimum is integrated; AAPL and UNH on the sample, at every fold) is kept as an integrated GJR with
persistence exactly 1, listed by `integrated_tickers`: its forecasts over a few sessions are
finite (the recursion never divides by 1 - persistence). On the sample's validation slices
(mean pinball over the 5 folds, ratio to `ewma_vol`, h=1 / h=5) keeping them gives `gjr_garch`
1.00022 / 0.99570 and `vol_blend` 0.99868 / 0.99595; falling back to EWMA for them gives
1.00046 / 0.99562 and 0.99892 / 0.99614: better for the blend at both horizons, mixed for GJR alone.

`VolBlend` (`vol_blend`): the equal-weight average of `ewma_vol` and `gjr_garch`; see its docstring
for why it averages variances rather than quantiles.

The arithmetic (fit, filter, multi-step variance) is in `volatility.py`.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl

from forecast_core.columns import DATE, TICKER
from forecast_core.config import ForecastConfig
from forecast_core.data.spilled_panel import Panel, panel_chunks
from forecast_core.errors import InsufficientDataError
from forecast_core.models import continuation
from forecast_core.models.forecaster import (
    Forecaster,
    ForecastTask,
    in_key_order,
    panel_columns,
    training_rows,
)
from forecast_core.models.volatility import (  # noqa: F401 - re-exported: the GJR arithmetic
    MIN_RETURNS,
    RETURN_COLUMN,
    STATIONARITY_TOL,
    WARMUP,
    PanelVariances,
    Params,
    daily_returns,
    ewma_horizon_variance,
    fit_gjr,
    fit_gjr_remembered,
    gjr_conditional_variance,
    gjr_horizon_variance,
    gjr_variance,
    panel_variance,
    panel_variances,
    standardised_quantiles,
    ticker_bounds,
)  # fmt: skip

#: Version of the `state()` dict (parameters, fallbacks, z-quantiles).
STATE_VERSION = 1


def _baselines():
    # Imported at call time: forecast_core.models.baselines imports this module for BASELINES.
    from forecast_core.models import baselines

    return baselines


class GarchFallbackWarning(UserWarning):
    """A ticker's variance falls back from GJR-GARCH to EWMA; the message names it and why."""


def _warn_fallback(model: str, reasons: dict[str, str], when: str) -> None:
    listed = "; ".join(f"{t}: {why}" for t, why in sorted(reasons.items()))
    warnings.warn(
        f"{model}: {len(reasons)} ticker(s) fall back to the EWMA variance {when}: {listed}",
        GarchFallbackWarning,
        stacklevel=3,
    )


def _standardised_targets(
    history: pl.DataFrame, var: np.ndarray, train_end: dt.date, task: ForecastTask
) -> np.ndarray:
    """`target_h / sqrt(var_h)` `[rows, H]` over the `training_rows` of `history` (its rows `var`
    describes) with a positive, finite variance."""
    cols = [f"_var_h{h}" for h in task.horizons]
    framed = history.with_columns(pl.Series(c, var[:, j], pl.Float64) for j, c in enumerate(cols))
    train = training_rows(framed, train_end, task)
    v = train.select(cols).to_numpy()
    ok = (np.isfinite(v) & (v > 0)).all(axis=1)
    return _baselines()._targets(train.filter(pl.Series(ok)), task) / np.sqrt(v[ok])


def volatility_parts(panel: Panel, task: ForecastTask) -> Iterator[pl.DataFrame]:
    """The keys, targets and daily returns of the panel a chunk of whole tickers at a time
    (`panel_chunks`: one chunk in memory, a few files of a spilled panel at a time): a volatility
    model's fit is per ticker but for its pooled z-quantiles, so it fits part by part and pools
    the parts' standardised targets (`pooled`)."""
    return panel_chunks(panel, (TICKER, DATE, *task.target_columns, RETURN_COLUMN))


def pooled(parts: list[np.ndarray]) -> np.ndarray:
    """The parts' rows `[rows, H]` as one array, in order (the one part itself when there is one)."""
    if not parts:
        return np.empty((0, 0))
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _check_warm(model: str, rows: pl.DataFrame, var: np.ndarray) -> None:
    bad = ~np.isfinite(var).all(axis=1)
    if bad.any():
        raise InsufficientDataError(
            f"{model}: variance still in warm-up (< {WARMUP} returns) for "
            f"{_baselines()._first_bad_row(rows, bad)}"
        )


def _history(panel: pl.DataFrame, task: ForecastTask, until: dt.date | None = None) -> pl.DataFrame:
    """The keys, targets and daily returns of the panel's rows dated <= `until` (all without it),
    sorted by (ticker, date): the rows and columns a volatility model reads."""
    history = panel_columns(panel, task, RETURN_COLUMN)
    if until is not None:
        history = history.filter(pl.col(DATE) <= until)
    return in_key_order(history)


class ContinuedVolatility:
    """`forecast` for a volatility model whose bands are `scale_h * z_` (its `scales_and_state`):
    `predict`'s quantiles and the state to store for the next run, continued from a stored one
    (`forecast_core.models.continuation`); and the one column its forecasts read."""

    def predict_columns(self, panel: Panel) -> tuple[str, ...]:
        return (RETURN_COLUMN,)

    def forecast(
        self, panel: pl.DataFrame, start: dt.date, end: dt.date, carry: pl.DataFrame | None = None
    ) -> tuple[np.ndarray, pl.DataFrame]:
        """`predict` and the state to store for the next run, continued from `carry` where given
        (`forecast_core.models.continuation`)."""
        self.require_fitted()
        return continuation.volatility_forecast(self, _history(panel, self.task, end), start, end, carry)


def _in_range(frame: pl.DataFrame, start: dt.date, end: dt.date) -> np.ndarray:
    return frame[DATE].is_between(start, end).to_numpy()


def _check_state(state: dict[str, Any], name: str, task: ForecastTask) -> None:
    if state.get("model") != name or state.get("version") != STATE_VERSION:
        raise ValueError(
            f"not a {name} state of version {STATE_VERSION}: model={state.get('model')!r}, "
            f"version={state.get('version')!r}"
        )
    for key in ("horizons", "quantiles"):
        if tuple(state[key]) != tuple(getattr(task, key)):
            raise ValueError(f"{name} state has {key} {state[key]}, the task {list(getattr(task, key))}")


# --- the forecasters -----------------------------------------------------------------------------


class GjrGarch(ContinuedVolatility, Forecaster):
    """Per-ticker GJR-GARCH(1,1) bands around a zero median (see the module docstring).

    After `fit`: `params_[ticker] = (omega, alpha, gamma, beta)` (raw-return units) for every ticker
    with a usable fit, `fallback_tickers_[ticker] = reason` for the others (EWMA variance), and
    `z_` `<float64>[H, Q]`. A row still in warm-up (fewer than `WARMUP` returns) raises
    `InsufficientDataError` at predict time.
    """

    name = "gjr_garch"
    WARMUP: ClassVar[int] = WARMUP
    MIN_RETURNS: ClassVar[int] = MIN_RETURNS

    def __init__(self, task: ForecastTask, lam: float = 0.94) -> None:
        super().__init__(task)
        self.lam = lam

    @classmethod
    def from_config(cls, task: ForecastTask, cfg: ForecastConfig) -> GjrGarch:
        return cls(task, lam=cfg.ewma_lambda)

    @property
    def integrated_tickers(self) -> list[str]:
        """Tickers whose fit lies on the stationarity bound (persistence 1: integrated GJR)."""
        self.require_fitted()
        return sorted(
            t for t, (_, a, g, b) in self.params_.items() if a + 0.5 * g + b >= 1.0 - STATIONARITY_TOL
        )

    @property
    def fitted(self) -> bool:
        return hasattr(self, "z_")

    def fit(
        self, panel: pl.DataFrame, train_end: dt.date, val: tuple[dt.date, dt.date] | None = None
    ) -> GjrGarch:
        self.params_, self.fallback_tickers_ = {}, {}
        z = []
        for part in volatility_parts(panel, self.task):
            history = _history(part, self.task, train_end)
            r, tickers = daily_returns(history), history[TICKER].to_numpy()
            for a, b in ticker_bounds(tickers):
                p, reason = fit_gjr_remembered(r[a:b], self.MIN_RETURNS)
                if p is None:
                    self.fallback_tickers_[str(tickers[a])] = reason
                else:
                    self.params_[str(tickers[a])] = p
            z.append(_standardised_targets(history, self.horizon_variance(history), train_end, self.task))
        if self.fallback_tickers_:
            _warn_fallback(self.name, self.fallback_tickers_, f"(fit on returns dated <= {train_end})")
        z = pooled(z)
        if z.shape[0] == 0:
            raise InsufficientDataError(f"{self.name}: no training rows past warm-up dated <= {train_end}")
        self.z_ = standardised_quantiles(z, self.task.quantiles)
        return self

    def horizon_variance(self, sorted_panel: pl.DataFrame) -> np.ndarray:
        """`[rows, H]` h-session variance forecasts for a panel sorted by (ticker, date): GJR with
        the fitted parameters, the EWMA variance for the fallback tickers and (with a warning) for
        tickers unseen at fit time; NaN in warm-up."""
        return self.horizon_variances(sorted_panel, with_ewma=False).model

    def horizon_variances(
        self, sorted_panel: pl.DataFrame, with_ewma: bool = True, carry: pl.DataFrame | None = None
    ) -> PanelVariances:
        """`volatility.panel_variances` with the fitted parameters: `.model` is `horizon_variance`,
        `.ewma` the EWMA's `s2 * h` (None unless `with_ewma`); continued from `carry` if given."""
        if not hasattr(self, "params_"):
            self.require_fitted()
        known = self.params_.keys() | self.fallback_tickers_.keys()
        unseen = {
            t: "unseen at fit time"
            for t in sorted_panel[TICKER].unique(maintain_order=True).to_list()
            if t not in known
        }
        if unseen:
            _warn_fallback(self.name, unseen, "(predict)")
        return panel_variances(
            sorted_panel, self.lam, self.task.horizons, self.params_, self.WARMUP, with_ewma, carry
        )

    def scales(self, panel: pl.DataFrame) -> np.ndarray:
        """h-session scales `sqrt(var_h)` `<float64>[rows, H]` of the panel's rows in (ticker, date)
        order (NaN in warm-up); what the LSTM's `gjr` prior standardises by."""
        return self.scales_and_state(panel)[0]

    def scales_and_state(
        self, panel: pl.DataFrame, carry: pl.DataFrame | None = None
    ) -> tuple[np.ndarray, PanelVariances]:
        """`scales` and the recursions' state after every row, continuing from `carry` where given."""
        v = self.horizon_variances(_history(panel, self.task), with_ewma=False, carry=carry)
        return np.sqrt(v.model), v

    def predict(self, panel: pl.DataFrame, start: dt.date, end: dt.date) -> np.ndarray:
        self.require_fitted()
        history = _history(panel, self.task, end)
        keep = _in_range(history, start, end)
        if not keep.any():
            return np.empty((0, *self.z_.shape), dtype=np.float32)
        var = self.horizon_variance(history)[keep]
        _check_warm(self.name, history.filter(pl.Series(keep)), var)
        return (np.sqrt(var)[:, :, None] * self.z_[None]).astype(np.float32)

    def state(self) -> dict[str, Any]:
        """The fitted model as JSON-serialisable data (`from_state` rebuilds it exactly)."""
        self.require_fitted()
        return {
            "model": self.name,
            "version": STATE_VERSION,
            "horizons": list(self.task.horizons),
            "quantiles": list(self.task.quantiles),
            "lam": self.lam,
            "params": {t: list(p) for t, p in self.params_.items()},
            "fallback_tickers": dict(self.fallback_tickers_),
            "z": self.z_.tolist(),
        }

    @classmethod
    def from_state(cls, task: ForecastTask, cfg: ForecastConfig, state: dict[str, Any]) -> GjrGarch:
        """The model `state()` describes, fitted, for `task` (whose horizons and quantiles must match).

        The state's EWMA lambda wins over `cfg.ewma_lambda`: the bands were estimated with it.
        """
        _check_state(state, cls.name, task)
        model = cls(task, lam=float(state["lam"]))
        model.params_ = {t: tuple(float(v) for v in p) for t, p in state["params"].items()}
        model.fallback_tickers_ = dict(state["fallback_tickers"])
        model.z_ = np.asarray(state["z"], dtype=np.float64)
        return model


BlendMode = Literal["quantile", "variance"]


class VolBlend(ContinuedVolatility, Forecaster):
    """The equal-weight blend of `ewma_vol` and `gjr_garch` (both fitted on the same rows).

    Two ways to average, `mode`:

    - "variance" (the default): `var_h = (s2_ewma * h + var_gjr_h) / 2`, then
      `q = sqrt(var_h) * z_`, with `z_` the clipped quantiles of the training targets standardised
      by that blended variance (filtered historical simulation on the blended scale).
    - "quantile": `q = (q_ewma + q_gjr) / 2`, each parent with its own band quantiles; the band
      lies between the parents' bands, quantile by quantile.

    Chosen on validation slices only: the sample's 5 walk-forward folds, fitted on rows <=
    fold.train_end, mean validation pinball as a ratio to `ewma_vol` (`python -m bench.garch`):
    variance 0.998675 (h=1) / 0.995952 (h=5), quantile 0.998698 / 0.996216. The variance blend
    is lower at both horizons: a tie at h=1 (better on 2 of 5 folds), ahead at h=5 (4 of 5 folds).
    It is also the one model the averaging describes: one scale, whose standardised training
    targets give its own band quantiles, rather than a mixture of two bands each calibrated for
    another scale. Test slices played no part in the choice.
    """

    name = "vol_blend"
    MODES: ClassVar[tuple[str, ...]] = ("quantile", "variance")

    def __init__(self, task: ForecastTask, lam: float = 0.94, mode: BlendMode = "variance") -> None:
        super().__init__(task)
        if mode not in self.MODES:
            raise ValueError(f"vol_blend mode {mode!r}: expected one of {', '.join(self.MODES)}")
        self.lam, self.mode = lam, mode
        self.ewma = _baselines().EwmaVol(task, lam=lam)
        self.garch = GjrGarch(task, lam=lam)

    @classmethod
    def from_config(cls, task: ForecastTask, cfg: ForecastConfig) -> VolBlend:
        return cls(task, lam=cfg.ewma_lambda)

    @property
    def fitted(self) -> bool:
        return self.ewma.fitted and self.garch.fitted and (self.mode == "quantile" or hasattr(self, "z_"))

    def fit(
        self, panel: pl.DataFrame, train_end: dt.date, val: tuple[dt.date, dt.date] | None = None
    ) -> VolBlend:
        self.ewma.fit(panel, train_end, val)
        self.garch.fit(panel, train_end, val)
        if self.mode == "variance":
            z = []
            for part in volatility_parts(panel, self.task):
                history = _history(part, self.task, train_end)
                z.append(_standardised_targets(history, self.blended_variance(history), train_end, self.task))
            self.z_ = standardised_quantiles(pooled(z), self.task.quantiles)
        return self

    def scales(self, panel: pl.DataFrame) -> np.ndarray:
        """h-session scales `sqrt(blended variance)` `<float64>[rows, H]` of the panel's rows in
        (ticker, date) order (NaN in warm-up); what the LSTM's `blend` prior standardises by."""
        return self.scales_and_state(panel)[0]

    def scales_and_state(
        self, panel: pl.DataFrame, carry: pl.DataFrame | None = None
    ) -> tuple[np.ndarray, PanelVariances]:
        """`scales` and the recursions' state after every row, continuing from `carry` where given."""
        v = self.garch.horizon_variances(_history(panel, self.task), carry=carry)
        return np.sqrt(0.5 * (v.ewma + v.model)), v

    def blended_variance(self, sorted_panel: pl.DataFrame) -> np.ndarray:
        """`(s2_ewma * h + var_gjr_h) / 2` `[rows, H]` for a panel sorted by (ticker, date)."""
        v = self.garch.horizon_variances(sorted_panel)
        return 0.5 * (v.ewma + v.model)

    def predict(self, panel: pl.DataFrame, start: dt.date, end: dt.date) -> np.ndarray:
        self.require_fitted()
        if self.mode == "quantile":
            q = 0.5 * (
                self.ewma.predict(panel, start, end).astype(np.float64)
                + self.garch.predict(panel, start, end).astype(np.float64)
            )
            return q.astype(np.float32)
        history = _history(panel, self.task, end)
        keep = _in_range(history, start, end)
        if not keep.any():
            return np.empty((0, *self.z_.shape), dtype=np.float32)
        var = self.blended_variance(history)[keep]
        _check_warm(self.name, history.filter(pl.Series(keep)), var)
        return (np.sqrt(var)[:, :, None] * self.z_[None]).astype(np.float32)

    def forecast(
        self, panel: pl.DataFrame, start: dt.date, end: dt.date, carry: pl.DataFrame | None = None
    ) -> tuple[np.ndarray, pl.DataFrame]:
        """`predict` and the state to store for the next run, continued from `carry` where given
        (`forecast_core.models.continuation`; both parents read the same recursions)."""
        if self.mode == "variance":
            return super().forecast(panel, start, end, carry)
        q_ewma, _ = self.ewma.forecast(panel, start, end, carry)
        q_gjr, state = self.garch.forecast(panel, start, end, carry)
        return (0.5 * (q_ewma.astype(np.float64) + q_gjr.astype(np.float64))).astype(np.float32), state

    def state(self) -> dict[str, Any]:
        """The fitted blend as JSON-serialisable data: both parents' band quantiles, the GJR state."""
        self.require_fitted()
        out = {
            "model": self.name,
            "version": STATE_VERSION,
            "horizons": list(self.task.horizons),
            "quantiles": list(self.task.quantiles),
            "lam": self.lam,
            "mode": self.mode,
            "ewma_z": self.ewma.z_.tolist(),
            "garch": self.garch.state(),
        }
        if self.mode == "variance":
            out["z"] = self.z_.tolist()
        return out

    @classmethod
    def from_state(cls, task: ForecastTask, cfg: ForecastConfig, state: dict[str, Any]) -> VolBlend:
        """The blend `state()` describes, fitted (the state's lambda and mode win over `cfg`)."""
        _check_state(state, cls.name, task)
        model = cls(task, lam=float(state["lam"]), mode=state["mode"])
        model.ewma.z_ = np.asarray(state["ewma_z"], dtype=np.float64)
        model.garch = GjrGarch.from_state(task, cfg, state["garch"])
        if model.mode == "variance":
            model.z_ = np.asarray(state["z"], dtype=np.float64)
        return model
