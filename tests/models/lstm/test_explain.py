"""Attributions of the LSTM ensemble's median forecast: exact on a linear model, complete on a
small random ensemble (they sum to f(x) - f(baseline)) and the mean of its members', the right
shapes, the model's input names, and stored rows that add up per forecast."""

from __future__ import annotations

import datetime as dt

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest

from forecast_core.columns import DATE, TICKER
from forecast_core.models.lstm import explain
from forecast_core.models.lstm.forecaster import LSTMForecaster
from forecast_core.models.lstm.inputs import input_names
from forecast_core.models.lstm.prior import make_prior, sorted_panel
from forecast_core.models.lstm.train import create_states, ensemble_apply, model_from_config
from forecast_core.models.lstm.windows import fit_scalers, raw_inputs
from tests.support.small_lstm import CFG, small_setup, with_settings

TICKERS, LOOKBACK, FEATURES = 3, 6, 5
STEPS = 16
#: A 3-member ensemble of the small config (lookback 8, 8 hidden units, 3 tickers).
SMALL = with_settings(CFG, model={"ensemble_size": 3})


def linear_apply(variables, x, ticker_id, train=False):
    """A linear "model": every quantile of horizon h is sum(w_h * x), shape [B, H=2, Q=3]."""
    w = variables["params"]["w"]  # [2, L, F]
    out = jnp.einsum("blf,hlf->bh", x, w)
    return jnp.repeat(out[:, :, None], 3, axis=2)


@pytest.fixture(scope="module")
def lstm():
    """A small random LSTM ensemble as a fitted forecaster, without training: the ewma prior and
    the input scaler fitted on fold 0's training rows of the synthetic panel, `create_states`'
    three members with random last kernels (an untrained network returns its prior whatever the
    inputs: nothing to explain), and random scaled windows of its shape. The tests share its
    shapes, so each program compiles once."""
    panel, task, folds = small_setup()
    train_end = folds[0].train_end
    forecaster = LSTMForecaster(task, SMALL)
    visible = sorted_panel(panel.filter(pl.col(DATE) <= train_end))
    forecaster.prior = make_prior("ewma", task, SMALL).fit(visible, train_end)
    names, raw = raw_inputs(visible, forecaster.prior.scales(visible), task)
    forecaster.scalers = fit_scalers(visible[TICKER].unique().to_list(), names, raw)
    forecaster.prior_z_ = np.asarray([[-1.2, 0.0, 1.2], [-1.3, 0.0, 1.3]])
    model = forecaster.model  # model_from_config(SMALL, 3), one instance per config
    assert model == model_from_config(SMALL, len(forecaster.scalers.tickers))
    kx, kp, kk = jax.random.split(jax.random.PRNGKey(0), 3)
    states = create_states(SMALL, model, len(names), kp, forecaster.prior_z_)
    head = states.params["head_out"]
    kernel = jax.random.normal(kk, head["kernel"].shape) * 0.5
    forecaster.params = jax.device_get({**states.params, "head_out": {**head, "kernel": kernel}})
    x = jax.random.normal(kx, (3, SMALL.model.lookback, len(names))) * 1.5
    tid = jnp.arange(3, dtype=jnp.int32)
    return forecaster, panel, x, tid


def test_integrated_gradients_are_exact_for_a_linear_model():
    w = jax.random.normal(jax.random.PRNGKey(1), (2, LOOKBACK, FEATURES))
    x = jax.random.normal(jax.random.PRNGKey(2), (TICKERS, LOOKBACK, FEATURES))
    tid = jnp.zeros(TICKERS, jnp.int32)
    for h in range(2):
        attr = explain.integrated_gradients(linear_apply, {"w": w}, x, tid, h, median_index=1, steps=4)
        np.testing.assert_allclose(attr, x * w[h], rtol=1e-5, atol=1e-6)


def test_integrated_gradients_are_complete_on_a_random_ensemble(lstm):
    forecaster, _, x, tid = lstm
    apply, params, m = ensemble_apply(forecaster.model), forecaster.params, SMALL.median_index
    for h in range(len(SMALL.horizons)):
        attr = explain.integrated_gradients(apply, params, x, tid, h, median_index=m, steps=STEPS)
        assert attr.shape == x.shape and attr.dtype == jnp.float32  # [tickers, lookback, features]
        fx = explain.median_forecast(apply, params, x, tid, h, m)
        f0 = explain.median_forecast(apply, params, jnp.zeros_like(x), tid, h, m)
        gap = np.abs(np.asarray(attr.sum(axis=(1, 2))) - np.asarray(fx - f0))
        assert np.all(np.abs(fx - f0) > 1e-3)  # a test with something to explain
        assert gap.max() < 1e-3 * float(np.abs(fx - f0).max()) + 1e-6, gap


def test_ensemble_attributions_are_the_mean_of_its_members(lstm):
    """Integrated gradients are linear in the function: the ensemble mean's attributions are the
    mean of each member's own (float32 rounding), and the members' differ."""
    forecaster, _, x, tid = lstm
    model, params, m = forecaster.model, forecaster.params, SMALL.median_index
    whole = np.asarray(explain.integrated_gradients(ensemble_apply(model), params, x, tid, 1,
                                                    median_index=m, steps=STEPS))  # fmt: skip
    members = []
    for k in range(SMALL.model.ensemble_size):
        own = jax.tree.map(lambda a, k=k: a[k], params)
        attr = explain.integrated_gradients(model.apply, own, x, tid, 1, median_index=m, steps=STEPS)
        members.append(np.asarray(attr))
    assert not np.allclose(members[0], members[1])
    np.testing.assert_allclose(whole, np.mean(members, axis=0), rtol=1e-4, atol=1e-6)


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
    # The features explained are the model's inputs, in its order.
    assert e.features == forecaster.scalers.inputs == input_names(panel)
    n_h, n_t, n_f = len(task.horizons), 3, len(forecaster.scalers.inputs)
    assert e.attributions.shape == (n_h, n_t, SMALL.model.lookback, n_f)
    assert e.completeness_gap < 1e-3 * float(np.abs(e.forecast - e.baseline_forecast).max()) + 1e-7
    # The explained median is the forecaster's own median forecast (log return).
    q = forecaster.predict(panel, days[-1], days[-1])
    np.testing.assert_allclose(e.forecast, q[:, :, task.median_index].T, rtol=1e-4, atol=1e-7)
    frame = e.frame("v1")  # the full grid, on demand
    assert set(frame["feature"].unique().to_list()) == set(e.features)
    assert frame.height == n_h * n_t * SMALL.model.lookback * n_f
    assert isinstance(frame["as_of_date"][0], dt.date)
    # What is stored: the two margins, each summing to the median minus the baseline's.
    features, by_lag = e.feature_frame("v1"), e.lag_frame("v1")
    assert features.height == n_h * n_t * n_f and by_lag.height == n_h * n_t * SMALL.model.lookback
    gap = e.forecast - e.baseline_forecast
    for margin in (features, by_lag, frame):
        totals = (
            margin.group_by("horizon", "ticker").agg(pl.col("attribution").sum()).sort("horizon", "ticker")
        )
        np.testing.assert_allclose(
            totals["attribution"].to_numpy(),
            e.attributions.sum(axis=(2, 3)).reshape(-1),
            rtol=1e-5,
            atol=1e-9,
        )
        np.testing.assert_allclose(totals["attribution"].to_numpy(), gap.reshape(-1), rtol=1e-3, atol=1e-7)
    checks = features.group_by("horizon", "ticker").agg(
        (pl.col("median") - pl.col("baseline_median")).n_unique().alias("distinct"),
        (pl.col("median") - pl.col("baseline_median")).first().alias("gap"),
        pl.col("attribution").sum(),
    )
    assert checks["distinct"].to_list() == [1] * (n_h * n_t)
    np.testing.assert_allclose(checks["attribution"], checks["gap"], rtol=1e-3, atol=1e-7)
    # The margins are the grid's sums, and the ranks order |attribution| within each forecast.
    grid_by_feature = frame.group_by("horizon", "ticker", "feature").agg(pl.col("attribution").sum())
    joined = features.join(grid_by_feature, on=["horizon", "ticker", "feature"], suffix="_grid")
    np.testing.assert_allclose(joined["attribution"], joined["attribution_grid"], rtol=1e-5, atol=1e-9)
    ranked = features.sort("horizon", "ticker", "rank")
    for _, group in ranked.group_by("horizon", "ticker"):
        assert group["rank"].to_list() == list(range(1, n_f + 1))
        assert (group["attribution"].abs().diff().drop_nulls() <= 0).all()
    assert set(by_lag["lag"].to_list()) == set(range(SMALL.model.lookback))


def test_explain_forecast_is_that_tickers_slice_of_the_sessions_grid(lstm):
    forecaster, panel, _, _ = lstm
    day = max(panel["date"].to_list())
    whole = explain.explain_sessions(forecaster, panel, [day], steps=STEPS)[0]
    ticker = whole.tickers[1]
    one = explain.explain_forecast(forecaster, panel, day, ticker, steps=STEPS)
    assert one.tickers == (ticker,)
    np.testing.assert_allclose(one.attributions[:, 0], whole.attributions[:, 1], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(one.forecast[:, 0], whole.forecast[:, 1], rtol=1e-6, atol=1e-9)
