"""The Flax modules of the quantile LSTM (modules only; `train.py` builds them from config).

The LSTM layer projects every time step's input to the four gates in one matrix product
(`<float32>[lookback * batch, F] @ [F, 4H]`), then runs only the recurrent product inside a
`lax.scan` over time: the usual fused formulation, cheaper than a cell that does both per step.
The recurrence has a hand-written backward pass (`lstm_recurrence`, a `jax.custom_vjp`): the
reverse scan does only the one product per step that it cannot avoid (`dgates @ W_h^T`), and the
recurrent weight's gradient is a single `[H, lookback * batch] @ [lookback * batch, 4H]` product
after the scan, where autodiff of the scan would accumulate it step by step inside the loop.
The head turns the last hidden state (and a learned ticker embedding) into one median and
positive gaps per horizon, so the quantiles cannot cross by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def _gates(pre: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Activated gates (i, f, g, o), each `[batch, H]`, from pre-activations `[batch, 4H]`."""
    i, f, g, o = jnp.split(pre, 4, axis=-1)
    return jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)


def _zeros(gates_x: jax.Array, w_h: jax.Array) -> jax.Array:
    return jnp.zeros((gates_x.shape[1], w_h.shape[0]), gates_x.dtype)


@jax.custom_vjp
def lstm_recurrence(gates_x: jax.Array, w_h: jax.Array) -> jax.Array:
    """Hidden states `<float32>[T, B, H]` of an LSTM from zero state.

    gates_x `<float32>[T, B, 4H]`: each step's input already projected to the gates (bias
    included); w_h `<float32>[H, 4H]`: the recurrent kernel. Gate order i, f, g, o:
    `c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)`, `h_t = sigmoid(o) tanh(c_t)`.
    """

    def step(carry, gx):
        c, hidden = carry
        i, f, g, o = _gates(gx + hidden @ w_h)
        c = f * c + i * g
        hidden = o * jnp.tanh(c)
        return (c, hidden), hidden

    z = _zeros(gates_x, w_h)
    return jax.lax.scan(step, (z, z), gates_x)[1]


def _recurrence_fwd(gates_x: jax.Array, w_h: jax.Array):
    """The same forward pass, keeping what the backward pass needs: h, c and the activated
    gates of every step (`[T, B, H]`, `[T, B, H]`, `[T, B, 4H]`).

    All four activations come from one `tanh` over the `[B, 4H]` pre-activations,
    `a = s tanh(s z) + (1 - s)` with s = 1/2 on the sigmoid gates (sigmoid(z) = (1 + tanh(z/2)) / 2)
    and s = 1 on g: one elementwise pass instead of four slices. It equals `_gates` up to float32
    rounding (a few ulp).
    """
    n = w_h.shape[0]
    s = jnp.full((4 * n,), 0.5, gates_x.dtype).at[2 * n : 3 * n].set(1.0)

    def step(carry, gx):
        c, hidden = carry
        a = jnp.tanh((gx + hidden @ w_h) * s) * s + (1.0 - s)
        i, f, g, o = jnp.split(a, 4, axis=-1)
        c = f * c + i * g
        hidden = o * jnp.tanh(c)
        return (c, hidden), (hidden, c, a)

    z = _zeros(gates_x, w_h)
    hs, cs, acts = jax.lax.scan(step, (z, z), gates_x)[1]
    return hs, (hs, cs, acts, w_h)


def _recurrence_bwd(residuals, d_hs: jax.Array):
    """Backpropagation through time. d_hs `[T, B, H]` -> (d_gates_x `[T, B, 4H]`, d_w_h `[H, 4H]`).

    Per step (reverse): dh = d_hs[t] + dh_{t+1}; dc = dc_{t+1} + dh o (1 - tanh(c)^2);
    d(pre-activation) = (dc, dc, dc, dh) * (g, c_{t-1}, i, tanh(c)) * the activations'
    derivatives (a (1 - a) for the sigmoids, 1 - g^2 for tanh); dh_{t-1} = d(pre) @ W_h^T;
    dc_{t-1} = dc f. Every factor that does not depend on the carry is computed for all steps at
    once before the loop, so the loop does one product and two small elementwise passes per step;
    dW_h = sum_t h_{t-1}^T d(pre)_t is one product after it.
    """
    hs, cs, acts, w_h = residuals
    n = w_h.shape[0]
    z = jnp.zeros_like(hs[0])
    c_prev = jnp.concatenate([z[None], cs[:-1]], axis=0)
    h_prev = jnp.concatenate([z[None], hs[:-1]], axis=0)
    i, f, g, o = jnp.split(acts, 4, axis=-1)
    tanh_c = jnp.tanh(cs)
    is_g = (jnp.arange(4 * n) >= 2 * n) & (jnp.arange(4 * n) < 3 * n)
    d_act = jnp.where(is_g, 1.0 - acts * acts, acts * (1.0 - acts))
    through_c = o * (1.0 - tanh_c * tanh_c)  # d h_t / d c_t
    factors = jnp.concatenate([g, c_prev, i, tanh_c], axis=-1) * d_act
    w_t = w_h.T

    def step(carry, xs):
        dh_next, dc_next = carry
        dh_out, to_c, factor, forget = xs
        dh = dh_out + dh_next
        dc = dc_next + dh * to_c
        d_pre = jnp.concatenate([dc, dc, dc, dh], axis=-1) * factor
        return (d_pre @ w_t, dc * forget), d_pre

    d_pre = jax.lax.scan(step, (z, z), (d_hs, through_c, factors, f), reverse=True)[1]
    d_w = jnp.einsum("tbh,tbg->hg", h_prev, d_pre)
    return d_pre, d_w


lstm_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)


class FusedLSTM(nn.Module):
    """One LSTM layer over a whole sequence.

    Input `<float32>[batch, time, features]` (`[time, batch, features]` with `time_major`);
    returns all hidden states in the same layout, `<float32>[batch, time, H]`.
    Gate order i, f, g, o; the forget gate's bias starts at 1 (Jozefowicz et al., 2015).
    """

    hidden_size: int
    time_major: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = self.hidden_size
        forget_bias = lambda key, shape, dtype=jnp.float32: jnp.zeros(shape, dtype).at[h : 2 * h].set(1.0)  # noqa: E731
        xt = x if self.time_major else jnp.swapaxes(x, 0, 1)
        gates_x = nn.Dense(4 * h, bias_init=forget_bias, name="input")(xt)  # [T, B, 4H]
        w_h = self.param("recurrent", nn.initializers.orthogonal(), (h, 4 * h))
        hs = lstm_recurrence(gates_x, w_h.astype(gates_x.dtype))
        return hs if self.time_major else jnp.swapaxes(hs, 0, 1)


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


def inverse_monotone_quantiles(q: np.ndarray, median_index: int, min_gap: float = 1e-3) -> np.ndarray:
    """Raw values `<float64>[..., Q]` that `monotone_quantiles` maps to `q` (gaps below `min_gap`
    are raised to it): the head's bias that makes an untrained network return `q`."""
    q = np.asarray(q, dtype=np.float64)
    m = median_index
    raw = np.empty_like(q)
    raw[..., m] = q[..., m]
    gaps_up = np.maximum(np.diff(q[..., m:], axis=-1), min_gap)
    gaps_down = np.maximum(np.diff(q[..., : m + 1], axis=-1), min_gap)  # q[j+1] - q[j] below m
    raw[..., m + 1 :] = np.log(np.expm1(gaps_up))
    raw[..., :m] = np.log(np.expm1(gaps_down))
    return raw


class QuantileLSTM(nn.Module):
    """Global LSTM over all tickers that corrects a volatility prior's standardised quantiles.

    __call__(x `<float32>[B, lookback, F]`, ticker_id `<int32>[B]`, train) ->
    `<float32>[B, n_horizons, n_quantiles]`: quantiles of the standardised target
    `z = R_h / scale_h` (the prior's h-session scale; the caller multiplies back). The head's last
    layer starts with a zero kernel; `train.create_states` sets its bias to
    `inverse_monotone_quantiles(prior_z)`, so an untrained network returns exactly the prior's
    empirical z-quantiles and training learns a correction to them. The layers run time-major (one transpose of the input).
    """

    hidden_size: int
    num_layers: int
    n_tickers: int
    ticker_embedding_dim: int
    n_horizons: int
    quantiles: Sequence[float]
    dropout: float
    zero_median: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, ticker_id: jax.Array, train: bool = False) -> jax.Array:
        h = jnp.swapaxes(x, 0, 1)  # [lookback, B, F]
        for layer in range(self.num_layers):
            h = FusedLSTM(self.hidden_size, time_major=True, name=f"lstm_{layer}")(h)
        last = h[-1]
        if self.ticker_embedding_dim > 0:
            emb = nn.Embed(self.n_tickers, self.ticker_embedding_dim, name="ticker_embedding")
            last = jnp.concatenate([last, emb(ticker_id)], axis=-1)
        z = nn.gelu(nn.Dense(self.hidden_size, name="head_hidden")(last))
        z = nn.Dropout(self.dropout, deterministic=not train)(z)
        n_q = len(self.quantiles)
        raw = nn.Dense(self.n_horizons * n_q, kernel_init=nn.initializers.zeros, name="head_out")(z)
        raw = raw.reshape(raw.shape[0], self.n_horizons, n_q)
        m = list(self.quantiles).index(0.5)
        if self.zero_median:  # the prior's median (0): the network shapes the band only
            raw = raw.at[..., m].set(0.0)
        return monotone_quantiles(raw, m)
