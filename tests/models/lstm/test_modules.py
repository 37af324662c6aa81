"""The Flax modules: shapes, the fused LSTM layer (causal, every hidden state), non-crossing
quantiles and their inverse (the head's starting bias), the head's zero-initialised last kernel,
and the recurrence's hand-written backward pass against autodiff."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from forecast_core.models.lstm.modules import (
    FusedLSTM,
    QuantileLSTM,
    inverse_monotone_quantiles,
    monotone_quantiles,
)


@pytest.mark.parametrize("num_layers,embedding", [(1, 4), (2, 0)])
def test_output_shapes(num_layers, embedding):
    """Shapes by abstract evaluation (no compilation): params per layer, output [B, H, Q]."""
    model = QuantileLSTM(hidden_size=6, num_layers=num_layers, n_tickers=3, ticker_embedding_dim=embedding,
                         n_horizons=2, quantiles=(0.1, 0.5, 0.9), dropout=0.1)  # fmt: skip
    x = jax.ShapeDtypeStruct((7, 11, 4), jnp.float32)
    tid = jax.ShapeDtypeStruct((7,), jnp.int32)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x, tid)["params"]
    for train in (False, True):
        out = jax.eval_shape(partial(model.apply, train=train, rngs={"dropout": jax.random.PRNGKey(1)}),
                             {"params": params}, x, tid)  # fmt: skip
        assert out.shape == (7, 2, 3) and out.dtype == jnp.float32
    assert ("ticker_embedding" in params) == (embedding > 0)
    assert sum(k.startswith("lstm_") for k in params) == num_layers
    assert params["lstm_0"]["input"]["kernel"].shape == (4, 4 * 6)
    assert params["lstm_0"]["recurrent"].shape == (6, 4 * 6)
    assert params["head_out"]["kernel"].shape == (6, 2 * 3)


def test_fused_lstm_returns_every_hidden_state_and_is_causal():
    layer = FusedLSTM(hidden_size=5)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 9, 3))
    params = jax.jit(layer.init)(jax.random.PRNGKey(1), x)
    apply = jax.jit(layer.apply)
    hs = apply(params, x)
    assert hs.shape == (4, 9, 5)
    assert np.all(np.abs(np.asarray(hs)) < 1.0)  # o * tanh(c)
    # Changing step 6 leaves the hidden states of steps 0..5 unchanged and changes step 6.
    hs2 = apply(params, x.at[:, 6].add(1.0))
    np.testing.assert_array_equal(np.asarray(hs2[:, :6]), np.asarray(hs[:, :6]))
    assert not np.allclose(np.asarray(hs2[:, 6]), np.asarray(hs[:, 6]))
    # The forget gate's bias starts at 1, the other gates' at 0.
    bias = np.asarray(params["params"]["input"]["bias"])
    np.testing.assert_array_equal(bias, np.r_[np.zeros(5), np.ones(5), np.zeros(10)])


@pytest.mark.parametrize("n_quantiles,median_index", [(3, 1), (5, 2), (4, 0), (4, 3), (1, 0)])
def test_monotone_quantiles_never_cross(n_quantiles, median_index):
    """Property test: random raw outputs at scales 1 .. 1e30, and constant rows, never cross."""
    rng = np.random.default_rng(n_quantiles * 10 + median_index)
    scales = np.array([1.0, 30.0, 1e4, 1e30])[:, None, None, None]
    raw = (rng.standard_normal((4, 250, 2, n_quantiles)) * scales).reshape(-1, 2, n_quantiles)
    raw = np.concatenate([raw, np.full((4, 2, n_quantiles), 1e30), np.full((4, 2, n_quantiles), -1e30),
                          np.zeros((4, 2, n_quantiles))]).astype(np.float32)  # fmt: skip
    q = np.asarray(monotone_quantiles(jnp.asarray(raw), median_index))
    assert q.shape == raw.shape
    assert not np.isnan(q).any()
    assert np.all(np.diff(q, axis=-1) >= 0)
    np.testing.assert_array_equal(q[..., median_index], raw[..., median_index])


def test_monotone_quantiles_gaps_are_softplus():
    raw = jnp.asarray([[-1.0, 0.3, 2.0, -4.0]])  # median at index 1
    q = np.asarray(monotone_quantiles(raw, 1))[0]
    sp = lambda v: np.log1p(np.exp(v))  # noqa: E731
    np.testing.assert_allclose(q, [0.3 - sp(-1.0), 0.3, 0.3 + sp(2.0), 0.3 + sp(2.0) + sp(-4.0)],
                               rtol=1e-6)  # fmt: skip


@pytest.mark.parametrize("n_quantiles,median_index", [(3, 1), (5, 2), (4, 0), (4, 3), (1, 0)])
def test_inverse_monotone_quantiles_round_trips(n_quantiles, median_index):
    """`monotone_quantiles(inverse_monotone_quantiles(q)) == q` for sorted q (float32 rounding),
    with gaps below `min_gap` raised to it."""
    rng = np.random.default_rng(n_quantiles)
    q = np.sort(rng.standard_normal((50, 2, n_quantiles)) * 2.0, axis=-1)
    back = np.asarray(monotone_quantiles(jnp.asarray(inverse_monotone_quantiles(q, median_index), jnp.float32),
                                         median_index))  # fmt: skip
    gaps = np.diff(q, axis=-1)
    ok = np.all(gaps >= 1e-3, axis=-1)  # rows whose every gap is at least min_gap
    assert ok.mean() > 0.5
    np.testing.assert_allclose(back[ok], q[ok], rtol=1e-5, atol=1e-5)
    # Tied quantiles come back min_gap apart, around the same median.
    tied = np.zeros((1, n_quantiles))
    back = np.asarray(monotone_quantiles(jnp.asarray(inverse_monotone_quantiles(tied, median_index, 0.01),
                                                     jnp.float32), median_index))  # fmt: skip
    expected = (np.arange(n_quantiles) - median_index) * 0.01
    np.testing.assert_allclose(back[0], expected, rtol=1e-5, atol=1e-7)


def test_untrained_head_returns_its_bias_quantiles_for_any_input():
    """The head's last kernel starts at zero: an initialised network's output is
    `monotone_quantiles(bias)` whatever the window and ticker (train.create_states sets that bias
    to the prior's z-quantiles)."""
    model = QuantileLSTM(hidden_size=6, num_layers=1, n_tickers=3, ticker_embedding_dim=2, n_horizons=2,
                         quantiles=(0.1, 0.5, 0.9), dropout=0.1)  # fmt: skip
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 7, 4)) * 3.0
    tid = jnp.asarray([0, 1, 2, 0, 1], jnp.int32)
    params = jax.jit(model.init)(jax.random.PRNGKey(1), x, tid)["params"]
    np.testing.assert_array_equal(np.asarray(params["head_out"]["kernel"]), 0.0)
    z = np.asarray([[-1.2, 0.0, 1.3], [-1.4, 0.0, 1.1]])
    bias = jnp.asarray(inverse_monotone_quantiles(z, 1).reshape(-1), jnp.float32)
    params = {**params, "head_out": {**params["head_out"], "bias": bias}}
    out = np.asarray(jax.jit(model.apply)({"params": params}, x, tid))
    np.testing.assert_allclose(out, np.broadcast_to(z, out.shape), rtol=1e-6, atol=1e-7)


def test_zero_median_keeps_the_priors_median_whatever_the_weights():
    """`zero_median` (model.median = "zero"): the median stays 0 for any parameters, and the
    other quantiles still move with the input."""
    model = QuantileLSTM(hidden_size=6, num_layers=1, n_tickers=3, ticker_embedding_dim=2, n_horizons=2,
                         quantiles=(0.1, 0.5, 0.9), dropout=0.1, zero_median=True)  # fmt: skip
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 7, 4)) * 3.0
    tid = jnp.asarray([0, 1, 2, 0, 1], jnp.int32)
    params = jax.jit(model.init)(jax.random.PRNGKey(1), x, tid)["params"]
    kernel = jax.random.normal(jax.random.PRNGKey(2), params["head_out"]["kernel"].shape)
    params = {**params, "head_out": {**params["head_out"], "kernel": kernel}}
    out = np.asarray(jax.jit(model.apply)({"params": params}, x, tid))
    np.testing.assert_array_equal(out[:, :, 1], 0.0)
    assert np.all(out[:, :, 0] < 0) and np.all(out[:, :, 2] > 0)
    assert np.ptp(out[:, 0, 2]) > 0  # the band still depends on the window


def _reference_recurrence(gates_x, w_h):
    """The LSTM recurrence as a plain `lax.scan`, differentiated by JAX's own autodiff."""

    def step(carry, gx):
        c, h = carry
        i, f, g, o = jnp.split(gx + h @ w_h, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    z = jnp.zeros((gates_x.shape[1], w_h.shape[0]), gates_x.dtype)
    return jax.lax.scan(step, (z, z), gates_x)[1]


def test_hand_written_backward_matches_autodiff():
    """`lstm_recurrence`'s custom VJP against autodiff of the same scan: the outputs are
    identical, the gradients (for a loss on every step's hidden state) agree to float32 rounding."""
    from forecast_core.models.lstm.modules import lstm_recurrence

    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    gates_x = jax.random.normal(k1, (7, 5, 4 * 6))
    w_h = jax.random.normal(k2, (6, 4 * 6)) * 0.5
    weights = jax.random.normal(k3, (7, 5, 6))
    np.testing.assert_array_equal(np.asarray(lstm_recurrence(gates_x, w_h)),
                                  np.asarray(_reference_recurrence(gates_x, w_h)))  # fmt: skip

    def loss(fn):
        return lambda g, w: jnp.sum(jnp.sin(fn(g, w)) * weights)

    ours = jax.grad(loss(lstm_recurrence), argnums=(0, 1))(gates_x, w_h)
    ref = jax.grad(loss(_reference_recurrence), argnums=(0, 1))(gates_x, w_h)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
