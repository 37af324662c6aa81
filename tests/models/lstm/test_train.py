"""Training the Flax LSTM ensemble: the loss (pinball on log returns), window gathering, the start
at the prior, the vmapped epoch, determinism, early stopping with the prior as epoch -1, chunked
prediction and micro-batches (the flax `sst2` train_test). The modules themselves: test_modules.py.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.training.train_state import TrainState

from forecast_core.config import ForecastConfig
from forecast_core.evaluation import metrics
from forecast_core.models.lstm.modules import inverse_monotone_quantiles
from forecast_core.models.lstm.prior import standardised_quantiles
from forecast_core.models.lstm.train import (
    _accumulated_step,
    accumulate_gradients,
    bucket_rows,
    bucketed,
    create_states,
    early_stopping_rows,
    ensemble_apply,
    fit,
    gather_windows,
    model_from_config,
    optimizer,
    pinball_loss,
    predict_rows,
    predict_scaled,
    train_epoch,
)
from forecast_core.models.lstm.windows import WindowData
from tests.support.small_lstm import CFG, fold_windows, small_setup, with_settings

#: Shapes as in tests/models/lstm/test_forecaster.py (lookback 8, 8 hidden units, 3 tickers, the
#: 7 inputs of the synthetic panel), so that the programs compiled here serve those tests too.
N_TICKERS = 3
MODEL = model_from_config(CFG, N_TICKERS)
#: The same network without dropout: its training-mode output is its prediction.
NO_DROPOUT = with_settings(CFG, model={"dropout": 0.0})
Q = jnp.asarray(CFG.quantiles, jnp.float32)
TAU = np.asarray(CFG.quantiles)


@pytest.fixture(scope="module")
def windows():
    """Fold 0 of the small synthetic panel as `LSTMForecaster.fit` sees it: WindowData (rows up to
    val_end), its train rows, its validation rows."""
    panel, task, folds = small_setup()
    return fold_windows(panel, task, CFG, folds[0])


def with_signal(
    data: WindowData, val_rows: np.ndarray | None = None, val_factor: float = 1.0, seed: int = 0
) -> WindowData:
    """`data` with the standardised targets replaced by a noisy function of each window's last
    inputs (same shape, NaN where the target is unknown): the synthetic returns are unpredictable,
    this gives training something to learn. On `val_rows`, if given, the function is multiplied by
    `val_factor`: -1 makes whatever training learns worsen the validation loss; 0.3 makes it
    improve the validation loss at first, then worsen it once the network has learned more than
    0.3 of the signal."""
    noise = np.random.default_rng(seed).standard_normal(data.y.shape)
    signal = np.stack([data.x[:, 0] - data.x[:, 3], 0.5 * data.x[:, 2]], axis=1)
    if val_rows is not None:
        signal[val_rows] *= val_factor
    y = np.where(np.isfinite(data.y), signal + 0.3 * noise, np.nan).astype(np.float32)
    return dataclasses.replace(data, y=y)


def prior_z(data: WindowData, train_rows: np.ndarray) -> np.ndarray:
    """The prior's z-quantiles as `LSTMForecaster.fit` computes them."""
    return standardised_quantiles(data.y[train_rows].astype(np.float64), CFG.quantiles)


def loss_weight(data: WindowData, train_rows: np.ndarray) -> np.ndarray:
    """`<float32>[rows, H]`: each row's scale over the mean training scale (the loss weights)."""
    return (data.target_scale / float(data.target_scale[train_rows].mean())).astype(np.float32)


def member(states: TrainState, k: int) -> TrainState:
    """Member k of stacked states."""
    return jax.tree.map(lambda a: a[k], states)


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(v) for v in jax.tree_util.tree_leaves(tree)]


def val_pinball(params, data: WindowData, rows: np.ndarray) -> float:
    """The ensemble's pinball on log returns of `rows`, by `metrics.pinball`."""
    z = predict_scaled(MODEL.apply, params, jnp.asarray(data.x), jnp.asarray(data.ticker_id), rows,
                       CFG.model.lookback).mean(axis=0)  # fmt: skip
    scale = data.target_scale[rows].astype(np.float64)
    return metrics.pinball(data.y[rows] * scale, z * scale[:, :, None], CFG.quantiles)


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


@pytest.mark.parametrize("k", [1, 3])
def test_untrained_states_return_the_prior_z_quantiles(windows, k):
    """`create_states`: K members stacked on axis 0, each returning exactly (to float32 rounding)
    the prior's z-quantiles for every window, whatever its inputs: the LSTM starts at its prior."""
    data, train_rows, _ = windows
    cfg = with_settings(CFG, model={"ensemble_size": k})
    z = np.asarray([[-1.3, 0.0, 1.1], [-1.25, 0.0, 1.4]])  # asymmetric, like real standardised returns
    states = create_states(cfg, MODEL, data.x.shape[1], jax.random.PRNGKey(3), z)
    assert all(leaf.shape[0] == k for leaf in leaves(states.params))
    np.testing.assert_array_equal(np.asarray(states.step), np.zeros(k))
    head = states.params["head_out"]
    np.testing.assert_array_equal(np.asarray(head["kernel"]), 0.0)  # zero-initialised last kernel
    bias = inverse_monotone_quantiles(z, CFG.median_index).reshape(-1).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(head["bias"]), np.broadcast_to(bias, (k, bias.size)))
    pred = predict_scaled(MODEL.apply, states.params, jnp.asarray(data.x), jnp.asarray(data.ticker_id),
                          train_rows, CFG.model.lookback)  # fmt: skip
    assert pred.shape == (k, len(train_rows), 2, 3)
    np.testing.assert_allclose(pred, np.broadcast_to(z, pred.shape), rtol=1e-6, atol=1e-7)
    if k > 1:  # the members' own initialisations (keys split from one) differ
        kernels = np.asarray(states.params["lstm_0"]["input"]["kernel"])
        assert not np.array_equal(kernels[0], kernels[1]) and not np.array_equal(kernels[1], kernels[2])


def test_zero_head_kernel_blocks_the_first_gradient_then_every_parameter_learns(windows):
    """The backward pass at the start: the last kernel is zero, so the first gradient reaches only
    the head's last layer; after one update every parameter has a nonzero gradient."""
    data, train_rows, _ = windows
    data = with_signal(data)
    states = create_states(CFG, MODEL, data.x.shape[1], jax.random.PRNGKey(0), prior_z(data, train_rows))
    state = member(states, 0)
    rows = jnp.asarray(train_rows[:: len(train_rows) // 32][:32])
    every_ticker = set(np.asarray(data.ticker_id)[np.asarray(rows)].tolist())
    assert every_ticker == set(range(N_TICKERS))  # every embedding row gets a gradient
    xd, w = jnp.asarray(data.x), jnp.asarray(loss_weight(data, train_rows))
    y, tid = jnp.asarray(np.nan_to_num(data.y)), jnp.asarray(data.ticker_id)

    def loss_fn(params, chunk, index):
        pred = MODEL.apply({"params": params}, gather_windows(xd, chunk, CFG.model.lookback), tid[chunk])
        return pinball_loss(pred * w[chunk][..., None], y[chunk] * w[chunk], Q)

    grad = jax.jit(lambda p: accumulate_gradients(loss_fn, p, rows[None], 1))
    loss, grads = grad(state.params)
    assert np.isfinite(float(loss)) and float(loss) > 0
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        name = jax.tree_util.keystr(path)
        assert np.any(np.asarray(g) != 0) == ("head_out" in name), name
    updated = jax.jit(lambda s, g: s.apply_gradients(grads=g))(state, grads)
    _, grads = grad(updated.params)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.any(np.asarray(g) != 0), jax.tree_util.keystr(path)


def test_one_jitted_epoch_trains_every_member(windows):
    """`train_epoch` on K = 3 stacked members: one call, every parameter of every member changes,
    each member gets its own loss, and the members stay different."""
    data, train_rows, _ = windows
    data = with_signal(data)
    cfg = with_settings(CFG, model={"ensemble_size": 3})
    states = create_states(cfg, MODEL, data.x.shape[1], jax.random.PRNGKey(0), prior_z(data, train_rows))
    before = leaves(states.params)
    states, losses = train_epoch(
        states, jnp.asarray(data.x), jnp.asarray(np.nan_to_num(data.y)),
        jnp.asarray(loss_weight(data, train_rows)), jnp.asarray(data.ticker_id), jnp.asarray(train_rows),
        Q, jax.random.PRNGKey(1), lookback=CFG.model.lookback, steps=3, batch_size=CFG.train.batch_size,
    )  # fmt: skip
    assert losses.shape == (3,) and np.all(np.isfinite(losses)) and len(set(np.asarray(losses).tolist())) == 3
    np.testing.assert_array_equal(np.asarray(states.step), [3, 3, 3])
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(states.params)]
    for name, old, new in zip(paths, before, leaves(states.params), strict=True):
        for k in range(3):
            assert not np.array_equal(old[k], new[k]), (name, k)
        assert not np.array_equal(new[0], new[1]) and not np.array_equal(new[1], new[2]), name


def random_head_state(data: WindowData, train_rows: np.ndarray):
    """The dropout-free network and one member's state from `create_states`, with a random last
    kernel: non-trivial forecasts (the untrained network would return the prior for any input)."""
    model = model_from_config(NO_DROPOUT, N_TICKERS)
    states = create_states(
        NO_DROPOUT, model, data.x.shape[1], jax.random.PRNGKey(0), prior_z(data, train_rows)
    )
    params = member(states, 0).params
    kernel = jax.random.normal(jax.random.PRNGKey(5), params["head_out"]["kernel"].shape) * 0.5
    params = {**params, "head_out": {**params["head_out"], "kernel": kernel}}
    return model, TrainState.create(apply_fn=model.apply, params=params, tx=optimizer(NO_DROPOUT.train))


def test_training_loss_is_pinball_on_log_returns(windows):
    """The loss of a step (`_accumulated_step`'s weighted loss) is the evaluation's pinball on
    R = scale * z divided by the mean training scale, on whole batches and on micro-batches."""
    data, train_rows, _ = windows
    data = with_signal(data)
    model, state = random_head_state(data, train_rows)
    params = state.params
    xd, tid = jnp.asarray(data.x), jnp.asarray(data.ticker_id)
    y, w = jnp.asarray(np.nan_to_num(data.y)), jnp.asarray(loss_weight(data, train_rows))
    rows = train_rows[:32]

    def make_batch(chunk):
        return gather_windows(xd, chunk, CFG.model.lookback), tid[chunk], y[chunk], w[chunk]

    scale = data.target_scale[rows].astype(np.float64)
    z = np.asarray(predict_rows(model.apply, jax.tree.map(lambda a: a[None], params), xd, tid,
                                jnp.asarray(rows), lookback=CFG.model.lookback))[0]  # fmt: skip
    expected = metrics.pinball(data.y[rows] * scale, z * scale[:, :, None], CFG.quantiles)
    expected /= float(data.target_scale[train_rows].mean())
    for n in (1, 4):
        chunks = jnp.asarray(rows.reshape(n, -1))
        step = jax.jit(lambda s, c, n=n: _accumulated_step(s, c, n, make_batch, jax.random.PRNGKey(2), Q))
        _, loss = step(state, chunks)
        assert float(loss) == pytest.approx(expected, rel=1e-5), n


def test_micro_batches_give_the_whole_batch_gradient(windows):
    """The mean of 4 micro-batches' mean losses and gradients is the whole batch's (the loss of
    `_accumulated_step`: pinball of weighted quantiles)."""
    data, train_rows, _ = windows
    data = with_signal(data)
    model, state = random_head_state(data, train_rows)
    xd, tid = jnp.asarray(data.x), jnp.asarray(data.ticker_id)
    y, w = jnp.asarray(np.nan_to_num(data.y)), jnp.asarray(loss_weight(data, train_rows))
    rows = jnp.asarray(train_rows[:32])

    def make_batch(chunk):
        return gather_windows(xd, chunk, CFG.model.lookback), tid[chunk], y[chunk], w[chunk]

    def loss_fn(params, chunk, index):
        xb, tb, yb, wb = make_batch(chunk)
        return pinball_loss(model.apply({"params": params}, xb, tb) * wb[..., None], yb * wb, Q)

    whole = jax.jit(lambda p: accumulate_gradients(loss_fn, p, rows.reshape(1, -1), 1))(state.params)
    micro = jax.jit(lambda p: accumulate_gradients(loss_fn, p, rows.reshape(4, -1), 4))(state.params)
    assert float(micro[0]) == pytest.approx(float(whole[0]), rel=1e-5)
    for a, b in zip(leaves(micro[1]), leaves(whole[1]), strict=True):
        assert np.any(b != 0)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    # A step on micro-batches of 8 still updates every parameter.
    new_state, loss = jax.jit(lambda s: _accumulated_step(s, rows.reshape(4, -1), 4, make_batch,
                                                          jax.random.PRNGKey(1), Q))(state)  # fmt: skip
    assert float(loss) == pytest.approx(float(whole[0]), rel=1e-5) and int(new_state.step) == 1
    for old, new in zip(leaves(state.params), leaves(new_state.params), strict=True):
        assert not np.array_equal(old, new)


#: Training settings for the `fit` tests: a high learning rate and patience 1, so that six short
#: epochs learn the signal of `with_signal` and early stopping can trigger.
FIT_CFG = with_settings(CFG, train={"max_epochs": 6, "patience": 1, "learning_rate": 0.02, "warmup_steps": 0})
ENSEMBLE_CFG = with_settings(FIT_CFG, model={"ensemble_size": 3})


def run_fit(cfg: ForecastConfig, data: WindowData, train_rows, val_rows, on_epoch=None):
    return fit(cfg, MODEL, data, train_rows, val_rows, prior_z(data, train_rows), on_epoch)


@pytest.fixture(scope="module")
def learnable(windows):
    """Targets with a learnable signal, and `fit` on them with every (epoch, train loss, val loss)
    passed to `on_epoch`."""
    data, train_rows, val_rows = windows
    data = with_signal(data)
    seen = []
    result = run_fit(FIT_CFG, data, train_rows, val_rows, lambda e, tr, va: seen.append((e, tr, va)))
    return data, result, seen


@pytest.fixture(scope="module")
def ensemble(windows, learnable):
    """`fit` of a 3-member ensemble on the same learnable targets."""
    data, train_rows, val_rows = windows
    return run_fit(ENSEMBLE_CFG, learnable[0], train_rows, val_rows)


def assert_same_result(a, b) -> None:
    for la, lb in zip(leaves(a.params), leaves(b.params), strict=True):
        np.testing.assert_array_equal(la, lb)
    assert a.val_losses == b.val_losses and a.train_losses == b.train_losses
    assert a.member_val_losses == b.member_val_losses and a.prior_val_loss == b.prior_val_loss
    assert a.best_epoch == b.best_epoch


def test_fit_is_deterministic_for_a_seed(windows, learnable):
    _, train_rows, val_rows = windows
    data, a, _ = learnable
    assert_same_result(a, run_fit(FIT_CFG, data, train_rows, val_rows))
    c = run_fit(with_settings(FIT_CFG, train={"seed": 1}), data, train_rows, val_rows)
    assert any(not np.array_equal(la, lc) for la, lc in zip(leaves(a.params), leaves(c.params)))
    assert a.val_losses != c.val_losses


def test_ensemble_is_deterministic_for_a_seed(windows, learnable, ensemble):
    """What a seed guarantees for an ensemble: the whole ensemble (every member, every loss, the
    epoch kept) is the same on every run, bit for bit, and another seed gives another ensemble.

    Its members are NOT guaranteed to equal single models, and no test relies on it: member 0
    draws the keys of the 1-member model of the same seed (JAX's key splits are prefix-consistent
    under `jax_threefry_partitionable`) but the vmapped step's arithmetic differs from the
    single model's in the last bits, and the ensemble keeps the epoch of its own best validation
    loss; members 1..K-1 correspond to no single model at all."""
    _, train_rows, val_rows = windows
    data = learnable[0]
    assert_same_result(ensemble, run_fit(ENSEMBLE_CFG, data, train_rows, val_rows))
    other = run_fit(with_settings(ENSEMBLE_CFG, train={"seed": 1}), data, train_rows, val_rows)
    assert other.val_losses != ensemble.val_losses


def test_ensemble_members_differ_and_average_to_sorted_quantiles(windows, learnable, ensemble):
    """The members are different networks; the ensemble's forecast (`ensemble_apply`) is their
    mean, sorted along Q; its validation loss is at most the members' mean (pinball is convex)."""
    _, _, val_rows = windows
    data = learnable[0]
    assert ensemble.best_epoch >= 0  # trained members (the prior's would all be equal)
    xd, tid = jnp.asarray(data.x), jnp.asarray(data.ticker_id)
    members = predict_scaled(MODEL.apply, ensemble.params, xd, tid, val_rows, CFG.model.lookback)
    assert members.shape == (3, len(val_rows), 2, 3)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert np.abs(members[i] - members[j]).max() > 1e-3
    windows_x = gather_windows(xd, jnp.asarray(val_rows), CFG.model.lookback)
    mean = np.asarray(jax.jit(ensemble_apply(MODEL))({"params": ensemble.params}, windows_x, tid[val_rows]))
    np.testing.assert_allclose(mean, members.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(mean, axis=-1) >= 0) and np.all(np.diff(members, axis=-1) >= 0)
    assert len(ensemble.member_val_losses) == len(ensemble.val_losses)
    for total, per_member in zip(ensemble.val_losses, ensemble.member_val_losses, strict=True):
        assert len(per_member) == 3 and total <= np.mean(per_member) * (1 + 1e-9)
    assert_best_epoch_rule(ensemble, ENSEMBLE_CFG)
    assert val_pinball(ensemble.params, data, val_rows) == pytest.approx(ensemble.best_val_loss, rel=1e-5)


def test_fit_starts_from_the_prior_and_trains_with_the_documented_loss(windows, learnable):
    """Epoch -1 is the untrained network: `prior_val_loss` is the pinball of the prior's bands on
    the validation rows (log returns); epoch 0 is one `train_epoch` call from `create_states` with
    fit's keys (split(PRNGKey(seed)): init, data; the epoch's key folds in its number) and loss
    weights scale / mean training scale."""
    _, train_rows, val_rows = windows
    data, result, _ = learnable
    z = prior_z(data, train_rows)
    scale = data.target_scale[val_rows].astype(np.float64)
    prior_bands = z[None] * scale[:, :, None]
    assert result.prior_val_loss == pytest.approx(
        metrics.pinball(data.y[val_rows] * scale, prior_bands, CFG.quantiles), rel=1e-5
    )
    init_key, data_key = jax.random.split(jax.random.PRNGKey(FIT_CFG.train.seed))
    states = create_states(FIT_CFG, MODEL, data.x.shape[1], init_key, z)
    assert val_pinball(states.params, data, val_rows) == pytest.approx(result.prior_val_loss, rel=1e-6)
    _, losses = train_epoch(
        states, jnp.asarray(data.x), jnp.asarray(np.nan_to_num(data.y)),
        jnp.asarray(loss_weight(data, train_rows)), jnp.asarray(data.ticker_id), jnp.asarray(train_rows),
        Q, jax.random.fold_in(data_key, 0), lookback=CFG.model.lookback,
        steps=FIT_CFG.train.steps_per_epoch, batch_size=FIT_CFG.train.batch_size,
    )  # fmt: skip
    assert result.train_losses[0] == float(np.mean(losses))


def assert_best_epoch_rule(result, cfg: ForecastConfig = FIT_CFG) -> None:
    """best_val_loss <= prior_val_loss always; best_epoch -1 iff no epoch beat the prior, else the
    first epoch with the lowest validation loss; training stops after `patience` epochs without a
    better loss than the best so far (the prior, epoch -1, included), or after `max_epochs`."""
    losses = result.val_losses
    assert result.best_val_loss <= result.prior_val_loss
    assert (result.best_epoch == -1) == (min(losses) >= result.prior_val_loss)
    if result.best_epoch == -1:
        assert result.best_val_loss == result.prior_val_loss
    else:
        assert result.best_epoch == int(np.argmin(losses)) and result.best_val_loss == min(losses)
    best, since, expected = result.prior_val_loss, 0, cfg.train.max_epochs
    for epoch, loss in enumerate(losses):
        best, since = (loss, 0) if loss < best else (best, since + 1)
        if since >= cfg.train.patience:
            expected = epoch + 1
            break
    assert len(losses) == expected


def test_early_stopping_scores_at_most_max_val_windows_rows(windows, learnable):
    """Beyond `train.max_val_windows` validation rows, early stopping scores a seeded sample of
    that many (sorted, distinct, the same every time): the prior's loss is then its pinball on
    exactly those rows; below the cap every row is scored."""
    _, train_rows, val_rows = windows
    data = learnable[0]
    assert early_stopping_rows(val_rows, len(val_rows), 0) is val_rows
    picked = early_stopping_rows(val_rows, 25, FIT_CFG.train.seed)
    assert len(picked) == len(np.unique(picked)) == 25 and np.all(np.diff(picked) > 0)
    assert np.isin(picked, val_rows).all()
    np.testing.assert_array_equal(picked, early_stopping_rows(val_rows, 25, FIT_CFG.train.seed))
    capped = with_settings(FIT_CFG, train={"max_epochs": 1, "max_val_windows": 25})
    result = run_fit(capped, data, train_rows, val_rows)
    z, scale = prior_z(data, train_rows), data.target_scale[picked].astype(np.float64)
    expected = metrics.pinball(data.y[picked] * scale, z[None] * scale[:, :, None], CFG.quantiles)
    assert result.prior_val_loss == pytest.approx(expected, rel=1e-5)
    assert result.prior_val_loss != pytest.approx(learnable[1].prior_val_loss, rel=1e-3)


def test_fit_learns_and_reports_every_epoch(windows, learnable):
    _, _, val_rows = windows
    data, result, seen = learnable
    losses = result.val_losses
    assert seen == list(zip(range(len(losses)), result.train_losses, losses))
    assert_best_epoch_rule(result)
    assert result.best_epoch >= 0 and result.best_val_loss < result.prior_val_loss  # it learned
    assert len(result.member_val_losses) == len(losses) and all(len(m) == 1 for m in result.member_val_losses)
    assert [m[0] for m in result.member_val_losses] == losses  # one member: the ensemble is it
    assert val_pinball(result.params, data, val_rows) == pytest.approx(result.best_val_loss, rel=1e-5)


def test_fit_keeps_the_best_epoch_and_stops_early(windows):
    """Validation targets with 0.3 of the training signal: the validation loss falls, then rises
    as the network learns the whole signal. Training stops `patience` epochs after the best one
    and returns that epoch's parameters, not the last."""
    data, train_rows, val_rows = windows
    data = with_signal(data, val_rows, val_factor=0.3)
    cfg = with_settings(FIT_CFG, train={"patience": 2, "max_epochs": 8})
    result = run_fit(cfg, data, train_rows, val_rows)
    assert_best_epoch_rule(result, cfg)
    losses = result.val_losses
    assert 0 <= result.best_epoch < len(losses) - 1 and len(losses) < cfg.train.max_epochs
    assert len(losses) == result.best_epoch + 1 + cfg.train.patience
    assert min(losses[result.best_epoch + 1 :]) > result.best_val_loss
    assert val_pinball(result.params, data, val_rows) == pytest.approx(result.best_val_loss, rel=1e-5)


def test_fit_returns_the_prior_when_no_epoch_beats_it(windows):
    """Targets whose signal flips sign on the validation rows: every epoch is worse than the
    prior, so fit returns the untrained network (bit for bit) and its loss."""
    data, train_rows, val_rows = windows
    flipped = with_signal(data, val_rows, val_factor=-1.0)
    result = run_fit(FIT_CFG, flipped, train_rows, val_rows)
    assert_best_epoch_rule(result)
    assert result.best_epoch == -1 and len(result.val_losses) == FIT_CFG.train.patience
    assert min(result.val_losses) > result.prior_val_loss
    init_key = jax.random.split(jax.random.PRNGKey(FIT_CFG.train.seed))[0]
    untrained = create_states(FIT_CFG, MODEL, data.x.shape[1], init_key, prior_z(flipped, train_rows))
    for a, b in zip(leaves(result.params), leaves(untrained.params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_real_targets_follow_the_best_epoch_rule(windows):
    """On the unpredictable synthetic returns themselves, whichever way it goes."""
    data, train_rows, val_rows = windows
    assert_best_epoch_rule(run_fit(FIT_CFG, data, train_rows, val_rows))


def test_predict_scaled_chunks_agree_with_one_chunk(windows, learnable, ensemble):
    _, train_rows, _ = windows
    data = learnable[0]
    rows = train_rows[:100]
    args = (MODEL.apply, ensemble.params, jnp.asarray(data.x), jnp.asarray(data.ticker_id))
    whole = predict_scaled(*args, rows, CFG.model.lookback, chunk=100)
    assert whole.shape == (3, 100, len(CFG.horizons), len(CFG.quantiles))
    # 4 chunks, the last one padded. A different batch size compiles to a different program, so
    # equality is up to float32 rounding; the same chunk size gives bit-identical rows.
    chunked = predict_scaled(*args, rows, CFG.model.lookback, chunk=32)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    last = predict_scaled(*args, rows[-1:], CFG.model.lookback, chunk=32)
    np.testing.assert_array_equal(last[:, 0], chunked[:, -1])
    assert predict_scaled(*args, rows[:0], CFG.model.lookback).shape[0] == 0


def test_bucketed_arrays_forecast_as_the_unpadded_ones(windows, learnable, ensemble):
    """The forecast pads its arrays to `bucket_rows` (so that nights share a compiled shape): the
    padding is never inside a window, and the forecasts are the unpadded arrays' to rounding."""
    _, train_rows, _ = windows
    data = learnable[0]
    x, tid = bucketed(data.x, data.ticker_id)
    n = data.x.shape[0]
    assert x.shape == (bucket_rows(n), data.x.shape[1]) and n <= x.shape[0] <= max(4096, 1.25 * n)
    np.testing.assert_array_equal(x[:n], data.x)
    np.testing.assert_array_equal(tid[:n], data.ticker_id)
    assert not x[n:].any() and not tid[n:].any()
    rows = train_rows[-64:]
    plain = predict_scaled(MODEL.apply, ensemble.params, data.x, data.ticker_id, rows, CFG.model.lookback)
    padded = predict_scaled(MODEL.apply, ensemble.params, x, tid, rows, CFG.model.lookback)
    np.testing.assert_allclose(padded, plain, rtol=1e-5, atol=1e-6)
    assert [bucket_rows(k) for k in (1, 4096, 4097, 300_000, 300_001)] == [4096, 4096, 5120, 327_680, 327_680]
