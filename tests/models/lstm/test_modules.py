"""The Flax modules: shapes, the fused LSTM layer (causal, every hidden state), non-crossing
quantiles, and the recurrence's hand-written backward pass against autodiff."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from forecast_core.models.lstm.modules import FusedLSTM, QuantileLSTM, monotone_quantiles


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
