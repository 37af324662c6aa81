"""Training the Flax LSTM: the loss, window gathering, the train step, determinism, early stopping,
chunked prediction and micro-batches (the flax `sst2` train_test). The modules themselves:
test_modules.py."""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest

from forecast_core.columns import DATE
from forecast_core.config import ForecastConfig
from forecast_core.evaluation import metrics
from forecast_core.models.forecaster import training_rows
from forecast_core.models.lstm.train import (
    create_state,
    fit,
    gather_windows,
    model_from_config,
    pinball_loss,
    predict_scaled,
    train_step,
)
from forecast_core.models.lstm.windows import fit_scalers, make_windows
from tests.support.small_lstm import CFG, small_setup

#: Shapes as in tests/models/lstm/test_forecaster.py (lookback 8, 8 hidden units, 3 tickers), so that the jitted and
#: eager computations compiled here serve those tests too.
N_TICKERS = 3
MODEL = model_from_config(CFG, N_TICKERS)


def with_train(**overrides) -> ForecastConfig:
    return dataclasses.replace(CFG, train=dataclasses.replace(CFG.train, **overrides))


@pytest.fixture(scope="module")
def data():
    """Scaled windows of the small synthetic panel: x, y, ticker_id, fold 0's train and val rows.

    The synthetic returns are unpredictable, so y is replaced by a noisy function of the window's
    last features (same shape and missing rows): training then has something to learn.
    """
    panel, task, folds = small_setup()
    f = folds[0]
    scalers = fit_scalers(training_rows(panel, f.train_end, task), task)
    w = make_windows(panel.filter(pl.col(DATE) <= f.val_end), task, scalers, CFG.model.lookback)
    train_rows = w.rows_where(w.dates.min(), f.train_end, need_target=True)
    noise = np.random.default_rng(0).standard_normal(w.y.shape).astype(np.float32)
    signal = np.stack([w.x[:, 0] - w.x[:, 1], 0.5 * w.x[:, 2]], axis=1)
    y = np.where(np.isfinite(w.y), signal + 0.3 * noise, np.nan).astype(np.float32)
    return w.x, y, w.ticker_id, train_rows, w.rows_where(*f.val, need_target=True)


def test_pinball_loss_by_hand():
    pred = jnp.asarray([[[-1.0, 0.0, 2.0], [0.0, 0.5, 1.0]]])  # [B=1, H=2, Q=3]
    y = jnp.asarray([[1.0, 0.25]])
    tau = jnp.asarray([0.1, 0.5, 0.9])
    # h=0: y-q = [2, 1, -1] -> [0.1*2, 0.5*1, 0.1*1] ; h=1: y-q = [0.25, -0.25, -0.75]
    #                                                   -> [0.1*0.25, 0.5*0.25, 0.1*0.75]
    expected = (0.2 + 0.5 + 0.1 + 0.025 + 0.125 + 0.075) / 6
    assert float(pinball_loss(pred, y, tau)) == pytest.approx(expected, rel=1e-6)


def test_pinball_loss_matches_the_metric():
    rng = np.random.default_rng(1)
    pred = np.sort(rng.standard_normal((64, 2, 3)), axis=-1).astype(np.float32)
    y = rng.standard_normal((64, 2)).astype(np.float32)
    tau = (0.1, 0.5, 0.9)
    loss = float(pinball_loss(jnp.asarray(pred), jnp.asarray(y), jnp.asarray(tau)))
    assert loss == pytest.approx(metrics.pinball(y, pred, tau), rel=1e-5)


def test_gather_windows_takes_the_rows_ending_at_each_index():
    x = jnp.arange(40.0).reshape(20, 2)
    w = np.asarray(gather_windows(x, jnp.asarray([3, 19]), 4))
    np.testing.assert_array_equal(w[0], np.asarray(x[0:4]))
    np.testing.assert_array_equal(w[1], np.asarray(x[16:20]))


def test_one_train_step_changes_every_parameter(data):
    x, y, tid, train_rows, _ = data
    state = create_state(CFG, MODEL, x.shape[1], jax.random.PRNGKey(0))
    rows = jnp.asarray(train_rows[:: len(train_rows) // 32][:32])
    batch = (gather_windows(jnp.asarray(x), rows, CFG.model.lookback), jnp.asarray(tid)[rows],
             jnp.asarray(y)[rows])  # fmt: skip
    assert set(np.asarray(batch[1]).tolist()) == set(range(N_TICKERS))  # every ticker's embedding
    quantiles = jnp.asarray(CFG.quantiles)
    new_state, loss = jax.jit(train_step)(state, batch, jax.random.PRNGKey(1), quantiles)
    assert np.isfinite(float(loss)) and float(loss) > 0
    assert int(new_state.step) == 1
    before = jax.tree_util.tree_leaves_with_path(state.params)
    after = jax.tree_util.tree_leaves(new_state.params)
    assert len(before) == len(after) >= 8
    for (path, old), new in zip(before, after):
        assert old.shape == new.shape
        assert not np.array_equal(np.asarray(old), np.asarray(new)), jax.tree_util.keystr(path)


#: Training settings for the `fit` tests: a high learning rate and patience 1, so early stopping
#: has a chance to trigger within six short epochs.
FIT_CFG = with_train(max_epochs=6, patience=1, learning_rate=0.02, warmup_steps=0)


@pytest.fixture(scope="module")
def fitted(data):
    """`fit` on the panel's windows, with every (epoch, train loss, val loss) passed to `on_epoch`."""
    x, y, tid, train_rows, val_rows = data
    seen = []
    result = fit(FIT_CFG, MODEL, x, y, tid, train_rows, val_rows,
                 on_epoch=lambda e, tr, va: seen.append((e, tr, va)))  # fmt: skip
    return result, seen


def test_fit_is_deterministic_for_a_seed(data, fitted):
    x, y, tid, train_rows, val_rows = data
    a, _ = fitted
    b = fit(FIT_CFG, MODEL, x, y, tid, train_rows, val_rows)
    other_seed = dataclasses.replace(FIT_CFG, train=dataclasses.replace(FIT_CFG.train, seed=1))
    c = fit(other_seed, MODEL, x, y, tid, train_rows, val_rows)
    leaves_a, leaves_b, leaves_c = (jax.tree_util.tree_leaves(r.params) for r in (a, b, c))
    for la, lb in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(la), np.asarray(lb))
    assert a.val_losses == b.val_losses and a.train_losses == b.train_losses
    assert any(not np.array_equal(np.asarray(la), np.asarray(lc)) for la, lc in zip(leaves_a, leaves_c))
    assert a.val_losses != c.val_losses


def test_fit_keeps_the_best_epoch_and_stops_early(data, fitted):
    x, y, tid, _, val_rows = data
    result, seen = fitted
    losses = result.val_losses
    assert seen == list(zip(range(len(losses)), result.train_losses, losses))
    assert result.best_epoch == int(np.argmin(losses))
    assert result.best_val_loss == min(losses)
    # patience=1: training stops at the first epoch that does not improve on the best so far.
    worse = [i for i in range(1, len(losses)) if losses[i] >= min(losses[:i])]
    assert len(losses) == (worse[0] + 1 if worse else FIT_CFG.train.max_epochs)
    # The returned parameters are the ones that scored best_val_loss...
    q = jnp.asarray(FIT_CFG.quantiles, jnp.float32)

    def val_loss(params) -> float:
        pred = predict_scaled(MODEL.apply, params, jnp.asarray(x), jnp.asarray(tid), val_rows,
                              FIT_CFG.model.lookback)  # fmt: skip
        return float(pinball_loss(jnp.asarray(pred), jnp.asarray(y[val_rows]), q))

    assert val_loss(result.params) == pytest.approx(result.best_val_loss, rel=1e-6)
    # ... and they beat the initial parameters (fit's init key is split(PRNGKey(seed))[0]).
    init_key = jax.random.split(jax.random.PRNGKey(FIT_CFG.train.seed))[0]
    assert result.best_val_loss < val_loss(create_state(FIT_CFG, MODEL, x.shape[1], init_key).params)


def test_predict_scaled_chunks_agree_with_one_chunk(data, fitted):
    x, _, tid, train_rows, _ = data
    params = fitted[0].params
    rows = train_rows[:100]
    args = (MODEL.apply, params, jnp.asarray(x), jnp.asarray(tid))
    whole = predict_scaled(*args, rows, CFG.model.lookback, chunk=100)
    assert whole.shape == (100, len(CFG.horizons), len(CFG.quantiles))
    # 4 chunks, the last one padded. A different batch size compiles to a different program, so
    # equality is up to float32 rounding; the same chunk size gives bit-identical rows.
    chunked = predict_scaled(*args, rows, CFG.model.lookback, chunk=32)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    last = predict_scaled(*args, rows[-1:], CFG.model.lookback, chunk=32)
    np.testing.assert_array_equal(last[0], chunked[-1])
    assert predict_scaled(*args, rows[:0], CFG.model.lookback).shape[0] == 0


def test_micro_batches_give_the_whole_batch_gradient(data):
    """The mean of 4 micro-batches' mean losses and gradients is the whole batch's."""
    from forecast_core.models.lstm.train import accumulate_gradients

    x, y, tid, train_rows, _ = data
    state = create_state(CFG, MODEL, x.shape[1], jax.random.PRNGKey(0))
    rows = jnp.asarray(train_rows[:32])
    batch = (gather_windows(jnp.asarray(x), rows, CFG.model.lookback), jnp.asarray(tid)[rows],
             jnp.asarray(y)[rows])  # fmt: skip
    q = jnp.asarray(CFG.quantiles)

    def loss_fn(params, chunk, index):
        xb, tb, yb = chunk
        return pinball_loss(MODEL.apply({"params": params}, xb, tb, train=False), yb, q)

    def split(n):
        return jax.tree.map(lambda a: a.reshape(n, a.shape[0] // n, *a.shape[1:]), batch)

    whole = jax.jit(lambda p: accumulate_gradients(loss_fn, p, split(1), 1))(state.params)
    micro = jax.jit(lambda p: accumulate_gradients(loss_fn, p, split(4), 4))(state.params)
    assert float(micro[0]) == pytest.approx(float(whole[0]), rel=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(micro[1]), jax.tree_util.tree_leaves(whole[1])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-7)
    # A step on micro-batches of 8 still updates every parameter.
    new_state, loss = jax.jit(partial(train_step, micro_batch=8))(state, batch, jax.random.PRNGKey(1), q)
    assert np.isfinite(float(loss)) and int(new_state.step) == 1
    for old, new in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(new_state.params)):
        assert not np.array_equal(np.asarray(old), np.asarray(new))
