"""Attributions of the LSTM's median forecast: exact on a linear model, complete on a small random
LSTM (they sum to f(x) - f(baseline)), the right shapes, and stored rows that add up per forecast."""

from __future__ import annotations

import datetime as dt

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest

from forecast_core.models.lstm import explain
from forecast_core.models.lstm.forecaster import LSTMForecaster
from forecast_core.models.lstm.train import model_from_config
from forecast_core.models.lstm.windows import fit_scalers
from tests.support.small_lstm import CFG as SMALL
from tests.support.small_lstm import small_setup

TICKERS, LOOKBACK, FEATURES = 3, 6, 5
STEPS = 16


def linear_apply(variables, x, ticker_id, train=False):
    """A linear "model": every quantile of horizon h is sum(w_h * x), shape [B, H=2, Q=3]."""
    w = variables["params"]["w"]  # [2, L, F]
    out = jnp.einsum("blf,hlf->bh", x, w)
    return jnp.repeat(out[:, :, None], 3, axis=2)


@pytest.fixture(scope="module")
def lstm():
    """A small, randomly initialised LSTM forecaster (the small config of tests.support.small_lstm:
    lookback 8, 8 hidden units, 3 tickers) with scalers from its synthetic panel, and random
    scaled windows of its shape. The tests share its shapes, so each program compiles once."""
    panel, task, folds = small_setup()
    forecaster = LSTMForecaster(task, SMALL)
    forecaster.scalers = fit_scalers(panel.filter(pl.col("date") <= folds[0].train_end), task)
    model = forecaster.model  # model_from_config(SMALL, 3), one instance per config
    assert model == model_from_config(SMALL, len(forecaster.scalers.tickers))
    kx, kp = jax.random.split(jax.random.PRNGKey(0))
    x = jax.random.normal(kx, (3, SMALL.model.lookback, len(task.feature_columns))) * 1.5
    tid = jnp.arange(3, dtype=jnp.int32)
    forecaster.params = model.init(kp, x, tid, train=False)["params"]
    return forecaster, panel, x, tid


def test_integrated_gradients_are_exact_for_a_linear_model():
    w = jax.random.normal(jax.random.PRNGKey(1), (2, LOOKBACK, FEATURES))
    x = jax.random.normal(jax.random.PRNGKey(2), (TICKERS, LOOKBACK, FEATURES))
    tid = jnp.zeros(TICKERS, jnp.int32)
    for h in range(2):
        attr = explain.integrated_gradients(linear_apply, {"w": w}, x, tid, h, median_index=1, steps=4)
        np.testing.assert_allclose(attr, x * w[h], rtol=1e-5, atol=1e-6)


def test_integrated_gradients_are_complete_on_a_random_lstm(lstm):
    forecaster, _, x, tid = lstm
    apply, params, m = forecaster.model.apply, forecaster.params, SMALL.median_index
    for h in range(len(SMALL.horizons)):
        attr = explain.integrated_gradients(apply, params, x, tid, h, median_index=m, steps=STEPS)
        assert attr.shape == x.shape and attr.dtype == jnp.float32  # [tickers, lookback, features]
        fx = explain.median_forecast(apply, params, x, tid, h, m)
        f0 = explain.median_forecast(apply, params, jnp.zeros_like(x), tid, h, m)
        gap = np.abs(np.asarray(attr.sum(axis=(1, 2))) - np.asarray(fx - f0))
        assert np.all(np.abs(fx - f0) > 1e-3)  # a test with something to explain
        assert gap.max() < 1e-3 * float(np.abs(fx - f0).max()) + 1e-6, gap


def test_gradient_x_input_shape_and_value(lstm):
    forecaster, _, x, tid = lstm
    apply, params, m = forecaster.model.apply, forecaster.params, SMALL.median_index
    gxi = explain.gradient_x_input(apply, params, x, tid, 1, median_index=m)
    assert gxi.shape == x.shape
    # Ticker 1's own gradient, computed on its window alone.
    one = jax.grad(lambda z: explain.median_forecast(apply, params, z, tid[1:2], 1, m)[0])(x[1:2])
    np.testing.assert_allclose(gxi[1], (one * x[1:2])[0], rtol=1e-4, atol=1e-7)


def test_summaries_per_feature_and_per_lookback_step():
    attr = np.arange(TICKERS * LOOKBACK * FEATURES, dtype=np.float32).reshape(TICKERS, LOOKBACK, FEATURES)
    assert explain.per_feature(attr).shape == (TICKERS, FEATURES)
    assert explain.per_lookback_step(attr).shape == (TICKERS, LOOKBACK)
    np.testing.assert_allclose(explain.per_feature(attr).sum(1), explain.per_lookback_step(attr).sum(1))
    assert explain.lags(4).tolist() == [3, 2, 1, 0]  # the as-of session is the last step, lag 0


def test_explain_sessions_rows_add_up_to_each_forecast(lstm):
    forecaster, panel, _, _ = lstm
    task = forecaster.task
    days = sorted(panel["date"].unique().to_list())[-2:]
    out = explain.explain_sessions(forecaster, panel, days, steps=STEPS)
    assert [e.day for e in out] == days
    e = out[-1]
    n_h, n_t, n_f = len(task.horizons), 3, len(task.feature_columns)
    assert e.attributions.shape == (n_h, n_t, SMALL.model.lookback, n_f)
    assert e.completeness_gap < 1e-3 * float(np.abs(e.forecast - e.baseline_forecast).max()) + 1e-7
    # The explained median is the forecaster's own median forecast (log return).
    q = forecaster.predict(panel, days[-1], days[-1])
    np.testing.assert_allclose(e.forecast, q[:, :, task.median_index].T, rtol=1e-4, atol=1e-7)
    frame = e.frame("v1")
    assert frame.height == n_h * n_t * SMALL.model.lookback * n_f
    totals = frame.group_by("horizon", "ticker").agg(pl.col("attribution").sum()).sort("horizon", "ticker")
    np.testing.assert_allclose(
        totals["attribution"].to_numpy(), e.attributions.sum(axis=(2, 3)).reshape(-1), rtol=1e-5, atol=1e-9
    )
    assert isinstance(frame["as_of_date"][0], dt.date)
