"""Fold evaluation on the small synthetic panel: prediction rows, metric rows, scores."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import polars as pl
import pytest

from forecast_core.columns import DATE, FOLD, HORIZON, MODEL, PRICE, TICKER, target_column
from forecast_core.evaluation import metrics
from forecast_core.evaluation.metrics import panel_diebold_mariano
from forecast_core.evaluation.walk_forward import (
    METRIC,
    VALUE,
    dm_versus,
    evaluate_fold,
    quantile_columns,
    score,
)
from forecast_core.models.baselines import BASELINES, make_baselines
from forecast_core.models.forecaster import rows_between
from forecast_core.models.lstm.forecaster import LSTMForecaster
from tests.support.small_lstm import CFG

POINT_METRICS = ("mae", "rmse", "mape_price", "directional_accuracy", "pinball", "coverage_80")
DM_METRICS = ("dm_stat", "dm_pvalue", "dm_pinball_stat", "dm_pinball_pvalue")
#: The LSTM's extra rows: DM tests against the fold's best other model, and its seed spread.
BEST_DM_METRICS = tuple(k.replace("dm_", "dm_best_", 1) for k in DM_METRICS)
SEED_METRICS = ("n_seeds", "pinball_seed_min", "pinball_seed_max", "pinball_seed_std")
LSTM_METRICS = (*DM_METRICS, *BEST_DM_METRICS, *SEED_METRICS)
MODELS = ("lstm", *BASELINES)


def undefined_dm_metrics(result, horizon: int) -> set[str]:
    """The LSTM's squared-error DM tests that are undefined (identical losses, see
    metrics.diebold_mariano), and so left out of the metric rows: against a reference whose point
    forecasts equal the LSTM's, as when its median is its prior's 0 and the reference's is 0 too."""
    p, out = result.predictions, set()
    if same_points(p, "zero_return", horizon):
        out |= {"dm_stat", "dm_pvalue"}
    if same_points(p, best_other(result.metrics, horizon), horizon):
        out |= {"dm_best_stat", "dm_best_pvalue"}
    return out


def best_other(m: pl.DataFrame, horizon: int) -> str:
    """The model other than the LSTM with the lowest test pinball for `horizon` (the first in
    `MODELS` order on a tie: zero_return and historical_mean have the same bands up to rounding)."""
    rows = m.filter((pl.col(HORIZON) == horizon) & (pl.col(METRIC) == "pinball"))
    pinball = dict(rows.select(MODEL, VALUE).iter_rows())
    return min((name for name in MODELS if name != "lstm"), key=pinball.__getitem__)


def same_points(p: pl.DataFrame, reference: str, horizon: int) -> bool:
    """Whether the LSTM's point forecasts for `horizon` equal `reference`'s on every row."""
    a, b = (p.filter((pl.col(MODEL) == name) & (pl.col(HORIZON) == horizon)).sort(TICKER, DATE)
            for name in ("lstm", reference))  # fmt: skip
    return np.array_equal(a["y_pred"].to_numpy(), b["y_pred"].to_numpy())


@pytest.fixture(scope="module")
def result(setup):
    panel, task, folds = setup
    forecasters = [LSTMForecaster(task, CFG), *make_baselines(task, CFG)]
    return evaluate_fold(panel, folds[0], task, forecasters)


def test_prediction_rows_cover_the_test_slice_once(setup, result):
    panel, task, folds = setup
    f = folds[0]
    p = result.predictions
    assert p.columns == [FOLD, MODEL, TICKER, DATE, HORIZON, "last_close", "y_true", "y_pred",
                         *quantile_columns(task.quantiles)]  # fmt: skip
    assert set(p[MODEL].unique()) == set(MODELS)
    assert (p[FOLD] == 0).all()
    assert p[DATE].min() >= f.test_start and p[DATE].max() <= f.test_end
    assert p.select(MODEL, TICKER, DATE, HORIZON).is_unique().all()
    test_rows = rows_between(panel, f.test_start, f.test_end)
    known = sum(test_rows[target_column(h)].is_not_null().sum() for h in task.horizons)
    assert p.group_by(MODEL).len()["len"].to_list() == [known] * len(MODELS)
    # Outcomes and prices are the panel's own.
    long = pl.concat(
        test_rows.select(TICKER, DATE, pl.lit(h, pl.Int32).alias(HORIZON),
                         pl.col(target_column(h)).alias("expected"), PRICE)
        for h in task.horizons
    )  # fmt: skip
    joined = p.join(long, on=[TICKER, DATE, HORIZON], how="left")
    np.testing.assert_array_equal(joined["y_true"].to_numpy(), joined["expected"].to_numpy())
    np.testing.assert_array_equal(joined["last_close"].to_numpy(), joined[PRICE].to_numpy())
    # Point forecasts: the baseline's own point for zero_return, the median for the LSTM.
    assert (p.filter(pl.col(MODEL) == "zero_return")["y_pred"] == 0).all()
    lstm = p.filter(pl.col(MODEL) == "lstm")
    np.testing.assert_array_equal(lstm["y_pred"].to_numpy(), lstm["q50"].to_numpy())
    assert lstm.select((pl.col("q10") <= pl.col("q50")) & (pl.col("q50") <= pl.col("q90"))).to_series().all()


def test_rows_without_a_known_target_are_left_out(setup):
    """A test slice that runs to the last session: no row for a horizon whose outcome is unknown."""
    panel, task, folds = setup
    last = panel[DATE].max()
    fold = dataclasses.replace(folds[1], test_end=last)
    p = evaluate_fold(panel, fold, task, make_baselines(task, CFG)).predictions
    dates = sorted(panel[DATE].unique())
    for h in task.horizons:
        part = p.filter(pl.col(HORIZON) == h)
        assert part["y_true"].null_count() == 0
        assert part[DATE].max() == dates[-h - 1]  # the last h sessions have no h-session outcome
        n_days = len([d for d in dates if fold.test_start <= d <= dates[-h - 1]])
        assert part.height == len(BASELINES) * 3 * n_days


def test_metric_rows_for_every_model_horizon_and_metric(setup, result):
    _, task, _ = setup
    m = result.metrics
    assert m.schema == {FOLD: pl.Int32, MODEL: pl.String, HORIZON: pl.Int32, METRIC: pl.String,
                        VALUE: pl.Float64}  # fmt: skip
    assert m.select(MODEL, HORIZON, METRIC).is_unique().all()
    for model in MODELS:
        for h in task.horizons:
            rows = m.filter((pl.col(MODEL) == model) & (pl.col(HORIZON) == h))
            names = set(rows[METRIC])
            assert set(POINT_METRICS) <= names
            undefined = undefined_dm_metrics(result, h) if model == "lstm" else set()
            if model == "lstm":
                assert names == {*POINT_METRICS, "n", *LSTM_METRICS} - undefined
            else:
                assert names == {*POINT_METRICS, "n"}
            values = dict(rows.select(METRIC, VALUE).iter_rows())
            assert all(math.isfinite(v) for v in values.values())
            assert 0 <= values["coverage_80"] <= 1 and 0 <= values["directional_accuracy"] <= 1
            for k in ("dm_pvalue", "dm_pinball_pvalue", "dm_best_pvalue", "dm_best_pinball_pvalue"):
                assert k not in values or 0 <= values[k] <= 1, k
    assert set(result.seconds) == set(MODELS)


def test_metrics_match_direct_computations(setup, result):
    _, task, _ = setup
    m = result.metrics
    for (model, h), part in result.predictions.group_by(MODEL, HORIZON):
        y, y_hat = part["y_true"].to_numpy(), part["y_pred"].to_numpy()
        q = part.select("q10", "q50", "q90").to_numpy()
        tau = np.array([0.1, 0.5, 0.9])
        err = y[:, None] - q
        expected = {
            "mae": np.abs(y - y_hat).mean(),
            "rmse": np.sqrt(((y - y_hat) ** 2).mean()),
            "mape_price": 100 * np.mean(np.abs(np.exp(y_hat) - np.exp(y)) / np.exp(y)),
            "directional_accuracy": np.mean((y_hat >= 0) == (y >= 0)),  # zero counts as up
            "pinball": np.mean(np.where(err >= 0, tau * err, (tau - 1) * err)),
            "coverage_80": np.mean((y >= q[:, 0]) & (y <= q[:, 2])),
            "n": len(y),
        }
        got = score(part, task)
        recorded = dict(m.filter((pl.col(MODEL) == model) & (pl.col(HORIZON) == h))
                        .select(METRIC, VALUE).iter_rows())  # fmt: skip
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-9), (model, h, name)
            assert recorded[name] == pytest.approx(value, rel=1e-9), (model, h, name)


def test_dm_statistics_compare_lstm_with_zero_return(setup, result):
    _, task, _ = setup
    p, m = result.predictions, result.metrics
    for h in task.horizons:
        a, b = (p.filter((pl.col(MODEL) == name) & (pl.col(HORIZON) == h)).sort(TICKER, DATE)
                for name in ("lstm", "zero_return"))  # fmt: skip
        stat, pvalue = panel_diebold_mariano(
            ((a["y_true"] - a["y_pred"]) ** 2).to_numpy(),
            ((b["y_true"] - b["y_pred"]) ** 2).to_numpy(),
            a[DATE].to_numpy(),
            h,
        )
        recorded = dict(m.filter((pl.col(MODEL) == "lstm") & (pl.col(HORIZON) == h))
                        .select(METRIC, VALUE).iter_rows())  # fmt: skip
        if same_points(p, "zero_return", h):  # undefined, so left out of the metric rows
            assert math.isnan(stat) and math.isnan(pvalue)
            assert "dm_stat" not in recorded and "dm_pvalue" not in recorded
        else:
            assert math.isfinite(stat)
            assert recorded["dm_stat"] == pytest.approx(stat, rel=1e-12)
            assert recorded["dm_pvalue"] == pytest.approx(pvalue, rel=1e-12)
        # The pinball test is defined either way: the LSTM's bands are not zero_return's.
        q = ["q10", "q50", "q90"]
        pstat, ppvalue = panel_diebold_mariano(
            metrics.pinball_per_row(a["y_true"].to_numpy(), a.select(q).to_numpy(), task.quantiles),
            metrics.pinball_per_row(b["y_true"].to_numpy(), b.select(q).to_numpy(), task.quantiles),
            a[DATE].to_numpy(),
            h,
        )
        assert math.isfinite(pstat)
        assert recorded["dm_pinball_stat"] == pytest.approx(pstat, rel=1e-12)
        assert recorded["dm_pinball_pvalue"] == pytest.approx(ppvalue, rel=1e-12)


def test_dm_best_compares_lstm_with_the_folds_best_other_model(setup, result):
    """`dm_best_*`: the same tests against the other model with the lowest test pinball."""
    _, task, _ = setup
    p, m = result.predictions, result.metrics
    for h in task.horizons:
        best = best_other(m, h)
        expected = dm_versus(p, task, "lstm", best, h)
        recorded = dict(m.filter((pl.col(MODEL) == "lstm") & (pl.col(HORIZON) == h))
                        .select(METRIC, VALUE).iter_rows())  # fmt: skip
        assert math.isfinite(expected["dm_pinball_stat"])
        for k, v in expected.items():
            name = k.replace("dm_", "dm_best_", 1)
            if math.isnan(v):  # undefined (identical losses): left out of the metric rows
                assert name not in recorded and name in undefined_dm_metrics(result, h), (h, k)
            else:
                assert recorded[name] == pytest.approx(v, rel=1e-12), (h, k)


def test_seed_spread_of_a_single_model_is_its_own_pinball(result):
    """With `ensemble_size` 1 (the small config), the one member is the model: min = max = its
    test pinball, standard deviation 0."""
    assert CFG.model.ensemble_size == 1
    m = result.metrics.filter(pl.col(MODEL) == "lstm")
    for (_h,), part in m.group_by(HORIZON):
        values = dict(part.select(METRIC, VALUE).iter_rows())
        assert values["n_seeds"] == 1 and values["pinball_seed_std"] == 0
        assert values["pinball_seed_min"] == pytest.approx(values["pinball"], rel=1e-6)
        assert values["pinball_seed_max"] == pytest.approx(values["pinball"], rel=1e-6)
