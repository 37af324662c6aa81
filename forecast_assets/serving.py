"""What a night's forecasts read, and the fitted baseline the retrain stores for serving.

The period's serving plan (`forecast_core.serving.periods.serving_plan`) refits the serving
baseline on every forecast run when the gate refused the LSTM (and the stand-in baseline for
tickers the LSTM was not trained on). A volatility baseline (`ewma_vol`, `gjr_garch`,
`vol_blend`) has a JSON state (`state()` / `from_state`), so `lstm_model` stores the state of the
period's best baseline with the model (`models.baseline_state`) and `serving_plan` here restores it
instead of refitting, where that gives the same model: the configuration is the one the model was
trained with and no price vintage since rewrote history. Elsewhere (a point baseline, which has no
state; a changed configuration; a restatement) the baseline is refitted as before.

Those forecasters read only the daily return, the market index's return and the range columns
(`serving_columns`), over the whole history (the LSTM's slow EWMA and the priors' variance
recursions start at each ticker's first row), so they forecast from `reads.serving_panel`; a refit
needs the full panel (targets, every feature) from `reads.panel_known_at`.
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl

from forecast_core.config import ForecastConfig
from forecast_core.data.features import DAILY_RETURN
from forecast_core.models.baselines import BASELINES
from forecast_core.models.forecaster import Forecaster, ForecastTask
from forecast_core.models.lstm.forecaster import LSTMForecaster
from forecast_core.models.lstm.inputs import RANGE_COLUMNS
from forecast_core.serving import periods
from forecast_core.serving.periods import best_baseline, serving_forecaster

#: Baselines whose fitted state is stored with the period's model (the rest are refitted).
STATEFUL = tuple(name for name, cls in BASELINES.items() if hasattr(cls, "from_state"))


def serving_columns(feature_columns: tuple[str, ...]) -> tuple[str, ...]:
    """The feature columns the LSTM and the volatility baselines read when forecasting: the daily
    log return, the market index's (`mkt_*_ret_1`) and the range columns, where the features have
    them."""
    market = [c for c in feature_columns if c.startswith("mkt_") and c.endswith("_ret_1")]
    ranges = [c for c in RANGE_COLUMNS if c in feature_columns]
    return tuple(c for c in feature_columns if c == DAILY_RETURN or c in market or c in ranges)


def stored_state(fitted: Forecaster) -> str | None:
    """`models.baseline_state` for a fitted baseline: `{"model": name, "state": ...}` as JSON, or
    None for a baseline without a state (it is refitted when it serves)."""
    if fitted.name not in STATEFUL:
        return None
    return json.dumps({"model": fitted.name, "state": fitted.state()})


def restored(
    model_row: dict, name: str, task: ForecastTask, cfg: ForecastConfig, rewritten_since: bool
) -> Forecaster | None:
    """Baseline `name` from the model row's stored state, where that is the model a refit would
    give: the state is `name`'s, the configuration is the one the model was trained with, and no
    price vintage since the model's rewrote history (`rewritten_since`). Else None."""
    raw = model_row.get("baseline_state")
    if raw is None or rewritten_since or model_row.get("prices_vintage") is None:
        return None
    stored = json.loads(raw)
    if stored["model"] != name or json.loads(model_row["config"]) != json.loads(json.dumps(cfg.to_dict())):
        return None
    return BASELINES[name].from_state(task, cfg, stored["state"])


def needs_refit(
    model_row: dict,
    lstm: LSTMForecaster,
    task: ForecastTask,
    cfg: ForecastConfig,
    tickers: list[str],
    rewritten_since: bool,
) -> bool:
    """Whether `serving_plan` has to refit a baseline for `tickers` (so it needs the full panel)."""
    serving = model_row["serving_model"]
    if serving == "lstm":
        if set(tickers) <= set(lstm.tickers):
            return False
        serving = best_baseline(json.loads(model_row["metrics"])["val_pinball"])
    return restored(model_row, serving, task, cfg, rewritten_since) is None


def serving_plan(
    model_row: dict,
    lstm: LSTMForecaster,
    panel: pl.DataFrame,
    task: ForecastTask,
    cfg: ForecastConfig,
    period_start: dt.date,
    tickers: list[str],
    rewritten_since: bool,
) -> list[tuple[Forecaster, list[str]]]:
    """`forecast_core.serving.periods.serving_plan` with the stored baseline restored where it can
    be (`restored`) and refitted on `panel` (the full panel) otherwise."""

    def baseline(name: str) -> Forecaster:
        found = restored(model_row, name, task, cfg, rewritten_since)
        return found or serving_forecaster(name, lstm, panel, task, cfg, period_start)

    stand_in = best_baseline(json.loads(model_row["metrics"])["val_pinball"])
    return periods.serving_plan(
        model_row["serving_model"], stand_in, lstm, panel, task, cfg, period_start, tickers, baseline
    )
