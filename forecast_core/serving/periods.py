"""The production model of a retrain period, and the gate that decides whether it serves.

The model for a period (default: a calendar month) sees only data known before the period starts:
its last training label is realised on the session before the period's first day. The slices
mirror a fold (`o` train, `-` purge, `v` validation; `|` is the period start)::

    | o o o o o o o o o o - - - - - v v v v v |  forecasts for the period ->

The validation slice ends `max_horizon` sessions before the cutoff so that its labels are known
at the cutoff too. The gate (`gate`) serves the period with the model that has the lowest
validation pinball loss among the LSTM and every baseline, all fitted on the same training slice
(the LSTM within `promotion_tolerance` of the best baseline, default 0); the LSTM is refused even
then if it is worse than the previous period's model on the same validation rows by more than
`previous_model_tolerance`. The decision text lists every score and states
the rule. A ticker the period's LSTM was not trained on (added to the universe mid-period) is
served by the best baseline until the next retrain (`serving_plan`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from forecast_core.columns import DATE
from forecast_core.config import ForecastConfig
from forecast_core.data.spilled_panel import Panel, panel_column, panel_tickers, restrict
from forecast_core.errors import InsufficientDataError
from forecast_core.evaluation import metrics
from forecast_core.evaluation.folds import train_and_validation
from forecast_core.models.baselines import make_baseline, make_baselines
from forecast_core.models.forecaster import Forecaster, ForecastTask, columns_between, predict_in_parts
from forecast_core.models.lstm.forecaster import LSTMForecaster


@dataclass(frozen=True)
class PeriodSlices:
    """Training layout of the model serving a period starting on `period_start`."""

    period_start: dt.date
    cutoff: dt.date  # last session before the period
    train_start: dt.date
    train_end: dt.date
    val_start: dt.date
    val_end: dt.date

    @property
    def val(self) -> tuple[dt.date, dt.date]:
        return (self.val_start, self.val_end)


def period_slices(sessions: list[dt.date], period_start: dt.date, cfg: ForecastConfig) -> PeriodSlices:
    """Slices over the panel's `sessions` (sorted) for the period starting `period_start`."""
    usable = [d for d in sessions if d < period_start]
    h, purge, val = cfg.max_horizon, cfg.purge_sessions, cfg.folds.val_sessions
    need = cfg.folds.min_train_sessions + purge + val + h
    if len(usable) < need:
        raise InsufficientDataError(
            f"the model for the period starting {period_start} needs at least {need} sessions of "
            f"features before it (folds.min_train_sessions + purge + folds.val_sessions + "
            f"max horizon); the panel has {len(usable)}"
        )
    train_start, train_end, val_start, val_end = train_and_validation(
        usable, len(usable) - 1 - h, cfg.folds, purge
    )
    return PeriodSlices(
        period_start=period_start,
        cutoff=usable[-1],
        train_start=train_start,
        train_end=train_end,
        val_start=val_start,
        val_end=val_end,
    )


def validation_pinball(model: Forecaster, panel: Panel, s: PeriodSlices, task: ForecastTask) -> float:
    """Mean pinball loss of a fitted model on the validation rows (all horizons)."""
    rows = columns_between(panel, task, s.val_start, s.val_end)
    q = predict_in_parts(model, panel, s.val_start, s.val_end)
    y = rows.select(task.target_columns).to_numpy()
    return float(np.mean([metrics.pinball(y[:, i], q[:, i, :], task.quantiles) for i in range(y.shape[1])]))


@dataclass
class PeriodModel:
    """A trained period model, the gate's evidence and its decision."""

    slices: PeriodSlices
    lstm: LSTMForecaster
    val_pinball: dict[str, float]
    promoted: bool
    serving_model: str
    decision: str
    previous_val_pinball: float | None = None
    #: Every baseline as the gate fitted it (on the period's training slice), by name: what
    #: `serving_forecaster` would refit for the period.
    baselines: dict[str, Forecaster] = field(default_factory=dict)


def best_baseline(val_pinball: Mapping[str, float]) -> str:
    """The baseline with the lowest validation pinball loss: what serves where the LSTM cannot."""
    return min((k for k in val_pinball if k != "lstm"), key=val_pinball.__getitem__)


@dataclass(frozen=True)
class _PreviousComparison:
    lstm: float
    previous: float
    where: str  # "" on the whole panel, else which tickers


def _against_previous(
    previous: LSTMForecaster | None,
    lstm: LSTMForecaster,
    panel: Panel,
    s: PeriodSlices,
    task: ForecastTask,
) -> _PreviousComparison | None:
    """Both models' validation pinball on the tickers the previous model knows (the universe may
    have grown since it was trained); None without a previous model or rows it can forecast."""
    if previous is None:
        return None
    known, tickers = set(previous.tickers), panel_tickers(panel)
    # Restricted (a copy in memory) only when the universe has grown since the previous model.
    shared = panel if known.issuperset(tickers) else restrict(panel, [t for t in tickers if t in known])
    try:
        prev_score = validation_pinball(previous, shared, s, task)
    except InsufficientDataError:
        return None
    where = "" if shared is panel else " on the tickers both models know"
    return _PreviousComparison(validation_pinball(lstm, shared, s, task), prev_score, where)


def train_period_model(
    panel: Panel,
    task: ForecastTask,
    cfg: ForecastConfig,
    period_start: dt.date,
    previous: LSTMForecaster | None = None,
    on_epoch=None,
) -> PeriodModel:
    """Train the LSTM for a period, score it and the baselines on validation, apply the gate."""
    sessions = sessions_before(panel, period_start)
    s = period_slices(sessions, period_start, cfg)
    lstm = LSTMForecaster(task, cfg, on_epoch=on_epoch).fit(panel, s.train_end, s.val)
    scores = {"lstm": validation_pinball(lstm, panel, s, task)}
    baselines = {}
    for baseline in make_baselines(task, cfg):
        baselines[baseline.name] = baseline.fit(panel, s.train_end, s.val)
        scores[baseline.name] = validation_pinball(baseline, panel, s, task)
    against = _against_previous(previous, lstm, panel, s, task)
    serving, promoted, decision = gate(scores, against, cfg.promotion_tolerance, cfg.previous_model_tolerance)
    return PeriodModel(
        slices=s,
        lstm=lstm,
        val_pinball=scores,
        promoted=promoted,
        serving_model=serving,
        decision=decision,
        previous_val_pinball=against.previous if against is not None else None,
        baselines=baselines,
    )


def gate(
    scores: Mapping[str, float],
    against: _PreviousComparison | None,
    tolerance: float,
    previous_tolerance: float = 0.01,
) -> tuple[str, bool, str]:
    """(serving model, whether the LSTM serves, the decision's text) from validation pinball
    `scores` of the LSTM and every baseline.

    The LSTM serves when its validation pinball is at most `(1 + tolerance)` x the best
    baseline's (with the default 0, only when it is the lowest, so the job never publishes bands
    its own validation ranks below a baseline's) and it is not worse than the previous period's
    model on the same validation rows by more than `previous_tolerance` (a model that fell back
    that far is more likely a failed training run than a changed market). Otherwise the baseline
    with the lowest validation pinball serves. The text lists every score and states the rules.
    """
    ranked = sorted(scores, key=scores.__getitem__)
    board = ", ".join(f"{name} {scores[name]:.6g}" for name in ranked)
    baseline = best_baseline(scores)
    limit = scores[baseline] * (1.0 + tolerance)
    beats = scores["lstm"] <= limit
    rule = (
        f"the LSTM serves if at most {scores[baseline]:.6g} x (1 + {tolerance:g}) = {limit:.6g}, "
        f"{baseline} being the best baseline"
    )
    previous, refused = "", False
    if against is not None:
        previous_limit = against.previous * (1.0 + previous_tolerance)
        refused = against.lstm > previous_limit
        verb = (
            f"more than {previous_tolerance:.0%} worse than"
            if refused
            else f"within {previous_tolerance:.0%} of"
        )
        previous = (
            f"; the LSTM's {against.lstm:.6g} is {verb} the previous model's "
            f"{against.previous:.6g}{against.where} (refused beyond {previous_limit:.6g})"
        )
    if beats and not refused:
        return "lstm", True, f"serving lstm: validation pinball {board}; {rule}{previous}"
    why = "refused against the previous model" if beats else f"{baseline} has the lower validation pinball"
    return baseline, False, f"serving {baseline}: {why} ({board}); {rule}{previous}"


def serving_forecaster(
    serving_model: str,
    lstm: LSTMForecaster,
    panel: pl.DataFrame,
    task: ForecastTask,
    cfg: ForecastConfig,
    period_start: dt.date,
) -> Forecaster:
    """The forecaster that serves the period starting `period_start`: the period's LSTM, or the
    named baseline refitted on the period's training slice of `panel` (baselines are
    deterministic and cheap, so they are refitted, not stored)."""
    if serving_model == "lstm":
        return lstm
    sessions = sessions_before(panel, period_start)
    s = period_slices(sessions, period_start, cfg)
    return make_baseline(serving_model, task, cfg).fit(panel, s.train_end, s.val)


def serving_plan(
    serving_model: str,
    stand_in: str,
    lstm: LSTMForecaster,
    panel: pl.DataFrame,
    task: ForecastTask,
    cfg: ForecastConfig,
    period_start: dt.date,
    tickers: list[str],
    baseline: Callable[[str], Forecaster] | None = None,
) -> list[tuple[Forecaster, list[str]]]:
    """Which forecaster serves which of `tickers` in the period starting `period_start`.

    The period's serving model serves every ticker it can. When that is the LSTM, a ticker it was
    not trained on (added to the universe after the period's model was trained: it has no
    embedding and no scalers for it) is served by the `stand_in` baseline (the period's best on
    validation) until the next retrain, instead of leaving the whole universe without forecasts.
    `baseline(name)` gives a fitted baseline (default: `serving_forecaster`, refitted on `panel`;
    the job restores a stored one where it can, `forecast_assets.serving`).
    """
    if baseline is None:

        def baseline(name: str) -> Forecaster:
            return serving_forecaster(name, lstm, panel, task, cfg, period_start)

    if serving_model != "lstm":
        return [(baseline(serving_model), tickers)]
    seen = set(lstm.tickers)
    unseen = [t for t in tickers if t not in seen]
    plan: list[tuple[Forecaster, list[str]]] = [(lstm, [t for t in tickers if t in seen])]
    if unseen:
        plan.append((baseline(stand_in), unseen))
    return [(forecaster, served) for forecaster, served in plan if served]


def sessions_before(panel: Panel, day: dt.date) -> list[dt.date]:
    """The panel's distinct dates before `day`, sorted (read from the date column alone)."""
    dates = panel_column(panel, DATE)
    return dates.filter(dates < day).unique().sort().to_list()


def period_start_of(day: dt.date) -> dt.date:
    """First day of the (monthly) retrain period containing `day`."""
    return day.replace(day=1)


def period_key(period_start: dt.date) -> str:
    return period_start.strftime("%Y-%m")
