"""The Flax modules of the quantile LSTM (modules only; `train.py` builds them from config).

The LSTM layer projects every time step's input to the four gates in one matrix product
(`<float32>[batch * lookback, F] @ [F, 4H]`), then runs only the recurrent product inside a
`lax.scan` over time: the usual fused formulation, cheaper than a cell that does both per step.
The head turns the last hidden state (and a learned ticker embedding) into one median and
positive gaps per horizon, so the quantiles cannot cross by construction.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class FusedLSTM(nn.Module):
    """One LSTM layer over a whole sequence.

    Input `<float32>[batch, time, features]`; returns all hidden states `<float32>[batch, time, H]`.
    Gate order i, f, g, o; the forget gate's bias starts at 1 (Jozefowicz et al., 2015).
    """

    hidden_size: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.hidden_size
        batch = x.shape[0]
        forget_bias = lambda key, shape, dtype=jnp.float32: jnp.zeros(shape, dtype).at[h : 2 * h].set(1.0)  # noqa: E731
        gates_x = nn.Dense(4 * h, bias_init=forget_bias, name="input")(x)  # [B, T, 4H]
        w_h = self.param("recurrent", nn.initializers.orthogonal(), (h, 4 * h))

        def step(carry, gx):
            c, hidden = carry
            gates = gx + hidden @ w_h
            i, f, g, o = jnp.split(gates, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            hidden = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (c, hidden), hidden

        init = (jnp.zeros((batch, h), x.dtype), jnp.zeros((batch, h), x.dtype))
        _, hs = jax.lax.scan(step, init, jnp.swapaxes(gates_x, 0, 1))
        return jnp.swapaxes(hs, 0, 1)


def monotone_quantiles(raw: jax.Array, median_index: int) -> jax.Array:
    """Map unconstrained `<float32>[..., Q]` to non-decreasing quantiles.

    The median is `raw[..., m]`; each quantile above (below) it adds (subtracts) a softplus gap to
    its neighbour, so q[..., j+1] >= q[..., j] for any input.
    """
    m = median_index
    median = raw[..., m : m + 1]
    upper = median + jnp.cumsum(jax.nn.softplus(raw[..., m + 1 :]), axis=-1)
    lower = median - jnp.cumsum(jax.nn.softplus(raw[..., :m][..., ::-1]), axis=-1)[..., ::-1]
    return jnp.concatenate([lower, median, upper], axis=-1)


class QuantileLSTM(nn.Module):
    """Global LSTM over all tickers with a ticker embedding and a quantile head.

    __call__(x `<float32>[B, lookback, F]`, ticker_id `<int32>[B]`, train) ->
    `<float32>[B, n_horizons, n_quantiles]` quantiles of the scaled forward log return.
    """

    hidden_size: int
    num_layers: int
    n_tickers: int
    ticker_embedding_dim: int
    n_horizons: int
    quantiles: Sequence[float]
    dropout: float

    @nn.compact
    def __call__(self, x: jax.Array, ticker_id: jax.Array, train: bool = False) -> jax.Array:
        h = x
        for layer in range(self.num_layers):
            h = FusedLSTM(self.hidden_size, name=f"lstm_{layer}")(h)
        last = h[:, -1, :]
        if self.ticker_embedding_dim > 0:
            emb = nn.Embed(self.n_tickers, self.ticker_embedding_dim, name="ticker_embedding")
            last = jnp.concatenate([last, emb(ticker_id)], axis=-1)
        z = nn.gelu(nn.Dense(self.hidden_size, name="head_hidden")(last))
        z = nn.Dropout(self.dropout, deterministic=not train)(z)
        n_q = len(self.quantiles)
        raw = nn.Dense(self.n_horizons * n_q, name="head_out")(z)
        raw = raw.reshape(raw.shape[0], self.n_horizons, n_q)
        return monotone_quantiles(raw, list(self.quantiles).index(0.5))
