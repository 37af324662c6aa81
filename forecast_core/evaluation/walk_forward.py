"""Walk-forward evaluation: every forecaster trained and scored identically on each fold.

For one fold, each forecaster (the LSTM and every baseline) is fitted on the fold's training
slice (early stopping on its validation slice where it has any use for one) and predicts the test
slice; predictions and metrics come out as the `fold_predictions` and `fold_metrics` rows. The
LSTM is also compared with `zero_return` by Diebold-Mariano tests on squared error and on pinball
loss. Nothing here selects a fold or a model on test scores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from forecast_core.columns import DATE, FOLD, HORIZON, MODEL, PRICE, TICKER, target_column
from forecast_core.data.spilled_panel import Panel
from forecast_core.evaluation import metrics
from forecast_core.evaluation.folds import Fold
from forecast_core.models.forecaster import Forecaster, ForecastTask, columns_between, model_parts

METRIC = "metric"
VALUE = "value"


def quantile_columns(quantiles: tuple[float, ...]) -> list[str]:
    """`q10`, `q50`, `q90` for 0.1, 0.5, 0.9."""
    return [f"q{round(q * 100):d}" for q in quantiles]


def predictions_frame(
    fold: Fold, model_name: str, rows: pl.DataFrame, point: np.ndarray, q: np.ndarray, task: ForecastTask
) -> pl.DataFrame:
    """Long `fold_predictions` rows (one per ticker, date, horizon) with a known outcome."""
    qcols = quantile_columns(task.quantiles)
    frames = []
    for h_i, (h, target) in enumerate(zip(task.horizons, task.target_columns)):
        frames.append(
            rows.select(
                TICKER, DATE, pl.col(PRICE).alias("last_close"), pl.col(target).alias("y_true")
            ).with_columns(
                pl.lit(h, pl.Int32).alias(HORIZON),
                pl.Series("y_pred", point[:, h_i], pl.Float64),
                *[pl.Series(c, q[:, h_i, j], pl.Float64) for j, c in enumerate(qcols)],
            )
        )
    return (
        pl.concat(frames)
        .filter(pl.col("y_true").is_not_null())
        .with_columns(pl.lit(fold.fold, pl.Int32).alias(FOLD), pl.lit(model_name).alias(MODEL))
        .select(FOLD, MODEL, TICKER, DATE, HORIZON, "last_close", "y_true", "y_pred", *qcols)
    )


def score(predictions: pl.DataFrame, task: ForecastTask) -> dict[str, float]:
    """Metrics of one model and horizon from its `fold_predictions` rows."""
    y, y_hat = predictions["y_true"].to_numpy(), predictions["y_pred"].to_numpy()
    qcols = quantile_columns(task.quantiles)
    q = predictions.select(qcols).to_numpy()
    lo, hi = task.quantiles.index(0.1), task.quantiles.index(0.9)
    return {
        "mae": metrics.mae(y, y_hat),
        "rmse": metrics.rmse(y, y_hat),
        "mape_price": metrics.mape_price(predictions["last_close"].to_numpy(), y, y_hat),
        "directional_accuracy": metrics.directional_accuracy(y, y_hat),
        "pinball": metrics.pinball(y, q, task.quantiles),
        "coverage_80": metrics.coverage(y, q[:, lo], q[:, hi]),
        "n": float(len(y)),
    }


def _per_row_losses(p: pl.DataFrame, task: ForecastTask) -> tuple[np.ndarray, np.ndarray]:
    y = p["y_true"].to_numpy()
    sq = (y - p["y_pred"].to_numpy()) ** 2
    q = p.select(quantile_columns(task.quantiles)).to_numpy()
    return sq, metrics.pinball_per_row(y, q, task.quantiles)


def dm_versus(
    predictions: pl.DataFrame, task: ForecastTask, model: str, reference: str, horizon: int
) -> dict[str, float]:
    """DM tests of `model` against `reference` for one horizon (negative: `model` is better)."""
    keys = [TICKER, DATE]
    a = predictions.filter((pl.col(MODEL) == model) & (pl.col(HORIZON) == horizon)).sort(keys)
    b = predictions.filter((pl.col(MODEL) == reference) & (pl.col(HORIZON) == horizon)).sort(keys)
    if a.height == 0 or not a.select(keys).equals(b.select(keys)):
        raise ValueError(f"DM test needs {model} and {reference} predictions on the same rows")
    sq_a, pin_a = _per_row_losses(a, task)
    sq_b, pin_b = _per_row_losses(b, task)
    dates = a[DATE].to_numpy()
    stat, p = metrics.panel_diebold_mariano(sq_a, sq_b, dates, horizon)
    pstat, pp = metrics.panel_diebold_mariano(pin_a, pin_b, dates, horizon)
    return {"dm_stat": stat, "dm_pvalue": p, "dm_pinball_stat": pstat, "dm_pinball_pvalue": pp}


@dataclass
class FoldResult:
    predictions: pl.DataFrame
    metrics: pl.DataFrame
    seconds: dict[str, float]


def evaluate_fold(panel: Panel, fold: Fold, task: ForecastTask, forecasters: list[Forecaster]) -> FoldResult:
    """Fit every forecaster on `fold`, predict its test slice, score them all the same way.

    For the LSTM, besides its own metrics: Diebold-Mariano tests against `zero_return` (`dm_*`)
    and against the best other model of the fold and horizon (`dm_best_*`: the lowest test
    pinball, a conservative reference), and the spread of its ensemble members' single-seed
    pinball (`pinball_seed_min`, `_max`, `_std`, `n_seeds`), so a difference smaller than seed
    noise is visible beside it."""
    rows = columns_between(panel, task, fold.test_start, fold.test_end, PRICE)
    preds, seconds, members = [], {}, {}
    for model in forecasters:
        started = time.perf_counter()
        model.fit(panel, fold.train_end, fold.val)
        members[model.name], point = _test_forecasts(model, panel, fold)
        q = members[model.name].mean(axis=0) if len(members[model.name]) > 1 else members[model.name][0]
        preds.append(predictions_frame(fold, model.name, rows, point, q, task))
        seconds[model.name] = time.perf_counter() - started
    predictions = pl.concat(preds)
    metric_rows = []
    names = [m.name for m in forecasters]
    scores = {
        (name, h): score(predictions.filter((pl.col(MODEL) == name) & (pl.col(HORIZON) == h)), task)
        for name in names
        for h in task.horizons
    }
    for name in names:
        for h_i, h in enumerate(task.horizons):
            values = dict(scores[(name, h)])
            if name == "lstm":
                if "zero_return" in names:
                    values |= dm_versus(predictions, task, "lstm", "zero_return", h)
                others = [n for n in names if n != "lstm"]
                if others:
                    best = min(others, key=lambda n: scores[(n, h)]["pinball"])
                    values |= {
                        k.replace("dm_", "dm_best_", 1): v
                        for k, v in dm_versus(predictions, task, "lstm", best, h).items()
                    }
                values |= _seed_spread(members[name][:, :, h_i], rows, task, h)
                # A DM test of identical losses (the LSTM at its prior has zero_return's zero
                # median, so equal squared errors) is undefined: its rows are left out, not NaN.
                values = {k: v for k, v in values.items() if not (k.startswith("dm_") and np.isnan(v))}
            metric_rows += [
                {FOLD: fold.fold, MODEL: name, HORIZON: h, METRIC: k, VALUE: v} for k, v in values.items()
            ]
    metrics_frame = pl.DataFrame(
        metric_rows,
        schema={FOLD: pl.Int32, MODEL: pl.String, HORIZON: pl.Int32, METRIC: pl.String, VALUE: pl.Float64},
    )
    return FoldResult(predictions=predictions, metrics=metrics_frame, seconds=seconds)


def _test_forecasts(model: Forecaster, panel: Panel, fold: Fold) -> tuple[np.ndarray, np.ndarray]:
    """A fitted model's members' quantiles `[K, rows, H, Q]` and point forecasts `[rows, H]` of
    the fold's test rows, predicted a part of the panel at a time (`model_parts`)."""
    members, points = [], []
    for part in model_parts(model, panel):
        m = model.predict_members(part, fold.test_start, fold.test_end)
        members.append(m)
        q = m.mean(axis=0) if len(m) > 1 else m[0]
        points.append(model.point_forecast(part, fold.test_start, fold.test_end, q))
    if len(members) == 1:
        return members[0], points[0]
    return np.concatenate(members, axis=1), np.concatenate(points)


def _seed_spread(
    member_q: np.ndarray, rows: pl.DataFrame, task: ForecastTask, horizon: int
) -> dict[str, float]:
    """Min, max and standard deviation of the members' test pinball: member_q `[K, rows, Q]`."""
    y = rows[target_column(horizon)].to_numpy()
    known = np.isfinite(y)
    per_member = np.array([metrics.pinball(y[known], m[known], task.quantiles) for m in member_q])
    return {
        "n_seeds": float(len(per_member)),
        "pinball_seed_min": float(per_member.min()),
        "pinball_seed_max": float(per_member.max()),
        "pinball_seed_std": float(per_member.std(ddof=1)) if len(per_member) > 1 else 0.0,
    }
