"""Training of the quantile LSTM ensemble: pinball loss on log returns, the jitted epoch, the loop
with early stopping that starts from the volatility prior, and batched prediction.

The network predicts standardised quantiles z (see `prior.py`); the loss is the evaluation's
pinball loss on R = scale * z, computed as the pinball of `w * z` against `w * z_true` with
`w = scale / mean training scale` (the same minimiser as the loss on R; only its units differ).

A seed ensemble of K members trains as one program: the members' parameters and optimizer states
are stacked on a leading axis and the train step is `vmap`ped over it, each member drawing its own
initialisation, batches and dropout from its own key. Forecasts average the members' quantiles
(an average of non-decreasing quantile vectors is non-decreasing). Early stopping watches the
ensemble's validation pinball, and "epoch -1" is the untrained network, i.e. the prior itself: if
no epoch beats it, the prior is what the model returns (`TrainResult.best_epoch == -1`).

Arrays live on the default JAX device (a GPU when JAX sees one, else the CPU). A training
"epoch" is `steps_per_epoch` batches drawn at random from the training rows inside one jitted
`lax.scan`, so Python is entered once per epoch, not once per step.

On a CPU, a step runs its batch as micro-batches of `MICRO_BATCH` windows, each gathered and
differentiated inside the jitted step (a `lax.scan` that sums their gradients), and applies one
optimizer update with the mean: the same gradient as the whole batch at once (the loss is a mean,
the micro-batches are equal in size), but each micro-batch's activations stay in the core's cache.
With the LSTM's hand-written backward pass (`model.py`) this makes a step 1.5 to 1.6 times as fast
as before on this project's 2-core CPU (`python -m bench`). XLA runs this model on one core per
process; the second core is used by a second process (Dagster's multiprocess executor trains
folds that way). On a GPU the whole batch goes at once.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training.train_state import TrainState

from forecast_core.config import ForecastConfig, TrainConfig
from forecast_core.models.lstm.modules import QuantileLSTM, inverse_monotone_quantiles


@functools.lru_cache(maxsize=32)
def model_from_config(cfg: ForecastConfig, n_tickers: int) -> QuantileLSTM:
    """The module for a config and vocabulary size. Cached: jitted functions take the module's
    `apply` as a static argument, and a new (even equal) module would recompile them."""
    m = cfg.model
    return QuantileLSTM(
        hidden_size=m.hidden_size,
        num_layers=m.num_layers,
        n_tickers=n_tickers,
        ticker_embedding_dim=m.ticker_embedding_dim,
        n_horizons=len(cfg.horizons),
        quantiles=tuple(cfg.quantiles),
        dropout=m.dropout,
        zero_median=m.median == "zero",
    )


def pinball_loss(pred: jax.Array, y: jax.Array, quantiles: jax.Array) -> jax.Array:
    """Mean pinball loss. pred `[B, H, Q]`, y `[B, H]`, quantiles `[Q]` -> scalar.

    L = mean(max(tau * (y - q), (tau - 1) * (y - q))).
    """
    diff = y[..., None] - pred
    return jnp.mean(jnp.maximum(quantiles * diff, (quantiles - 1.0) * diff))


@functools.lru_cache(maxsize=32)
def ensemble_apply(model: QuantileLSTM) -> Callable:
    """`apply(variables, x, ticker_id, train=False)` of the ensemble: the members' mean quantiles
    `[B, H, Q]` for stacked `variables["params"]`. Cached, so that it is one static argument."""

    def apply(variables, x, ticker_id, train=False):
        members = jax.vmap(lambda p: model.apply({"params": p}, x, ticker_id, train=train))(
            variables["params"]
        )
        return members.mean(axis=0)

    return apply


@functools.lru_cache(maxsize=32)
def _jitted_init(model: QuantileLSTM) -> Callable:
    return jax.jit(functools.partial(model.init, train=False))


@functools.lru_cache(maxsize=32)
def optimizer(t: TrainConfig) -> optax.GradientTransformation:
    """AdamW with a warmup-cosine schedule and global-norm clipping. Cached per config, so that
    the jitted epoch (whose state carries the optimizer as a static field) compiles once."""
    total = t.max_epochs * t.steps_per_epoch
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=t.learning_rate / 10,
        peak_value=t.learning_rate,
        warmup_steps=min(t.warmup_steps, total - 1),
        decay_steps=total,
        end_value=t.learning_rate / 20,
    )
    return optax.chain(
        optax.clip_by_global_norm(t.clip_norm),
        optax.adamw(schedule, weight_decay=t.weight_decay),
    )


def create_states(
    cfg: ForecastConfig, model: QuantileLSTM, n_features: int, key: jax.Array, prior_z: np.ndarray
) -> TrainState:
    """K = `cfg.model.ensemble_size` members' parameters (`model.init` with keys split from
    `key`) and optimizer states, stacked on a leading axis. Every member's head bias is set so
    that the untrained network returns the prior's z-quantiles `prior_z <float64>[H, Q]`."""
    x = jnp.zeros((1, cfg.model.lookback, n_features), jnp.float32)
    keys = jax.random.split(key, cfg.model.ensemble_size)
    init = _jitted_init(model)
    bias = jnp.asarray(
        inverse_monotone_quantiles(prior_z, list(model.quantiles).index(0.5)).reshape(-1), jnp.float32
    )

    def member(k: jax.Array) -> TrainState:
        params = init(k, x, jnp.zeros((1,), jnp.int32))["params"]
        params = {**params, "head_out": {**params["head_out"], "bias": bias}}
        return TrainState.create(apply_fn=model.apply, params=params, tx=optimizer(cfg.train))

    members = [member(k) for k in keys]
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *members)


def gather_windows(x: jax.Array, rows: jax.Array, lookback: int) -> jax.Array:
    """Windows `<float32>[B, lookback, F]` ending at `rows <int32>[B]` of `x <float32>[N, F]`."""
    offsets = jnp.arange(-lookback + 1, 1)
    return x[rows[:, None] + offsets[None, :]]


#: Windows per micro-batch on a CPU: of 16, 32, 64 and 128, the fastest at the issue's benchmark
#: shape and within noise of the fastest at the default one.
MICRO_BATCH = 32


def micro_batch_size(batch_size: int, platform: str | None = None) -> int:
    """Micro-batch for a batch: the largest divisor of `batch_size` that is <= `MICRO_BATCH` (and at
    least 8; otherwise the whole batch) on a CPU, the whole batch on an accelerator."""
    if (platform or jax.default_backend()) != "cpu":
        return batch_size
    size = next(d for d in range(min(MICRO_BATCH, batch_size), 0, -1) if batch_size % d == 0)
    return size if size >= min(8, batch_size) else batch_size


def accumulate_gradients(
    loss_fn: Callable[[dict, object, jax.Array], jax.Array], params, chunks, n_chunks: int
) -> tuple[jax.Array, dict]:
    """Mean loss and mean gradient over `n_chunks` equal micro-batches, summed in a `lax.scan`.

    `loss_fn(params, chunk, index)` is the mean loss of micro-batch `index`; `chunks` is a pytree
    whose leaves have a leading axis of length `n_chunks` (the micro-batches, or the row indices
    from which `loss_fn` gathers them). For a mean loss, the mean of equal micro-batches' means
    (and of their gradients) is the whole batch's, up to float rounding.
    """
    grad_fn = jax.value_and_grad(loss_fn)
    if n_chunks == 1:
        return grad_fn(params, jax.tree.map(lambda a: a[0], chunks), jnp.int32(0))

    def body(acc, xs):
        index, chunk = xs
        loss, grads = grad_fn(params, chunk, index)
        return jax.tree.map(jnp.add, acc, (loss, grads)), None

    zero = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
    (loss, grads), _ = jax.lax.scan(body, zero, (jnp.arange(n_chunks, dtype=jnp.int32), chunks))
    return jax.tree.map(lambda v: v / n_chunks, (loss, grads))


def _accumulated_step(
    state: TrainState, chunks, n: int, make_batch: Callable, rng: jax.Array, quantiles: jax.Array
) -> tuple[TrainState, jax.Array]:
    """One optimizer step of one member on `n` micro-batches; `make_batch(chunk)` -> (x, ticker_id,
    z_true, w): windows, ids, standardised targets and loss weights `[b, H]`."""
    dropout_key = jax.random.fold_in(rng, state.step)

    def loss_fn(params, chunk, index):
        x, tid, y, w = make_batch(chunk)
        key = dropout_key if n == 1 else jax.random.fold_in(dropout_key, index)
        pred = state.apply_fn({"params": params}, x, tid, train=True, rngs={"dropout": key})
        return pinball_loss(pred * w[..., None], y * w, quantiles)

    loss, grads = accumulate_gradients(loss_fn, state.params, chunks, n)
    return state.apply_gradients(grads=grads), loss


@partial(jax.jit, static_argnames=("lookback", "steps", "batch_size"), donate_argnums=(0,))
def train_epoch(
    states: TrainState,
    x: jax.Array,
    y: jax.Array,
    weight: jax.Array,
    ticker_id: jax.Array,
    train_rows: jax.Array,
    quantiles: jax.Array,
    key: jax.Array,
    *,
    lookback: int,
    steps: int,
    batch_size: int,
) -> tuple[TrainState, jax.Array]:
    """`steps` train steps of every member (stacked `states`, `vmap`ped) on batches drawn uniformly
    from `train_rows`; returns the members' mean loss `[K]`.

    x `[N, F]`, y (standardised targets) and weight `[N, H]`, ticker_id `[N]`; each step's windows
    are gathered per micro-batch (`micro_batch_size`) inside the step."""
    n = batch_size // micro_batch_size(batch_size)

    def windows(rows):  # gathered per micro-batch, so they are still in cache when used
        return gather_windows(x, rows, lookback), ticker_id[rows], y[rows], weight[rows]

    def member_step(state, step_key):
        pick = jax.random.randint(step_key, (batch_size,), 0, train_rows.shape[0])
        rows = train_rows[pick].reshape(n, batch_size // n)
        return _accumulated_step(state, rows, n, windows, step_key, quantiles)

    def body(states, step_key):
        members = jax.random.split(step_key, states.step.shape[0])
        return jax.vmap(member_step)(states, members)

    states, losses = jax.lax.scan(body, states, jax.random.split(key, steps))
    return states, losses.mean(axis=0)


@partial(jax.jit, static_argnames=("apply_fn", "lookback"))
def predict_rows(
    apply_fn: Callable, params, x: jax.Array, ticker_id: jax.Array, rows: jax.Array, *, lookback: int
) -> jax.Array:
    """Standardised quantiles `<float32>[K, len(rows), H, Q]` of every member (stacked `params`)
    for the windows ending at `rows`."""
    windows, tid = gather_windows(x, rows, lookback), ticker_id[rows]
    return jax.vmap(lambda p: apply_fn({"params": p}, windows, tid, train=False))(params)


def bucket_rows(n: int) -> int:
    """`n` rounded up to a number with 3 significant bits (at most 1/4 more; at least 4,096)."""
    if n <= 4096:
        return 4096
    step = 1 << (n.bit_length() - 3)
    return -(-n // step) * step


def bucketed(x: np.ndarray, ticker_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`x <float32>[N, F]` and `ticker_id <int32>[N]` padded with zero rows to `bucket_rows(N)`.

    Windows never read the padding. A night's arrays (each ticker's last `lookback` rows) differ
    in rows from the next night's by a few, so they share a padded shape and the persistent
    compilation cache serves the forecast's jitted call instead of compiling it again."""
    pad = bucket_rows(x.shape[0]) - x.shape[0]
    return np.pad(x, ((0, pad), (0, 0))), np.pad(ticker_id, (0, pad))


def predict_scaled(
    apply_fn: Callable, params, x, ticker_id, rows: np.ndarray, lookback: int, chunk: int = 8192
) -> np.ndarray:
    """`predict_rows` `[K, len(rows), H, Q]` in fixed-size chunks (padded, so one compilation
    serves every call)."""
    out = []
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        padded = np.pad(part, (0, chunk - len(part)), mode="edge") if len(part) < chunk else part
        pred = predict_rows(apply_fn, params, x, ticker_id, jnp.asarray(padded), lookback=lookback)
        out.append(np.asarray(pred)[:, : len(part)])
    return np.concatenate(out, axis=1) if out else np.zeros((0,), np.float32)


@dataclass
class TrainResult:
    """Best parameters (stacked members) by the ensemble's validation loss, and the history that
    chose them. `best_epoch` -1: no epoch beat the untrained network, which is the prior."""

    params: dict
    best_epoch: int
    best_val_loss: float
    prior_val_loss: float = float("nan")
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    member_val_losses: list[list[float]] = field(default_factory=list)
    seconds: float = 0.0
    device: str = ""


def _val_pinball(pred_z: np.ndarray, scale: np.ndarray, target: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Pinball on log returns of each member: pred_z `[K, n, H, Q]`, scale/target `[n, H]` -> `[K]`."""
    diff = target[None, :, :, None] - pred_z * scale[None, :, :, None]
    return np.maximum(q * diff, (q - 1.0) * diff).mean(axis=(1, 2, 3))


def early_stopping_rows(val_rows: np.ndarray, at_most: int, seed: int) -> np.ndarray:
    """The validation rows early stopping scores: all of them, or `at_most` drawn without
    replacement by `seed` (sorted) where there are more, so an epoch's cost is bounded."""
    if len(val_rows) <= at_most:
        return val_rows
    return np.sort(np.random.default_rng(seed).choice(val_rows, at_most, replace=False))


def fit(
    cfg: ForecastConfig,
    model: QuantileLSTM,
    data,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    prior_z: np.ndarray,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> TrainResult:
    """Train the ensemble with early stopping on the validation pinball loss (log-return units).

    `data` is a `windows.WindowData`; train_rows / val_rows index its window-complete rows with
    known targets (at most `train.max_val_windows` of the validation rows are scored each epoch:
    `early_stopping_rows`). Deterministic for a given seed and device.
    """
    t, lookback = cfg.train, cfg.model.lookback
    started = time.perf_counter()
    key = jax.random.PRNGKey(t.seed)
    init_key, data_key = jax.random.split(key)
    states = create_states(cfg, model, data.x.shape[1], init_key, prior_z)
    q = jnp.asarray(cfg.quantiles, jnp.float32)
    qn = np.asarray(cfg.quantiles, np.float64)
    weight = data.target_scale / float(data.target_scale[train_rows].mean())
    xd, tid = jnp.asarray(data.x), jnp.asarray(data.ticker_id)
    yd, wd = jnp.asarray(np.nan_to_num(data.y)), jnp.asarray(weight.astype(np.float32))
    del weight
    train_rows_d = jnp.asarray(train_rows)
    val_rows = early_stopping_rows(val_rows, t.max_val_windows, t.seed)
    val_scale = data.target_scale[val_rows].astype(np.float64)
    val_target = data.y[val_rows].astype(np.float64) * val_scale

    def validate(params) -> np.ndarray:
        pred = predict_scaled(model.apply, params, xd, tid, val_rows, lookback).astype(np.float64)
        members = _val_pinball(pred, val_scale, val_target, qn)
        ensemble = _val_pinball(pred.mean(axis=0, keepdims=True), val_scale, val_target, qn)[0]
        return np.r_[ensemble, members]

    start = validate(states.params)
    best = TrainResult(params=jax.device_get(states.params), best_epoch=-1, best_val_loss=float(start[0]))
    best.prior_val_loss = float(start[0])
    since_best = 0
    for epoch in range(t.max_epochs):
        states, loss = train_epoch(
            states, xd, yd, wd, tid, train_rows_d, q, jax.random.fold_in(data_key, epoch),
            lookback=lookback, steps=t.steps_per_epoch, batch_size=t.batch_size,
        )  # fmt: skip
        scores = validate(states.params)
        val_loss = float(scores[0])
        best.train_losses.append(float(np.mean(loss)))
        best.val_losses.append(val_loss)
        best.member_val_losses.append([float(v) for v in scores[1:]])
        if on_epoch is not None:
            on_epoch(epoch, float(np.mean(loss)), val_loss)
        if val_loss < best.best_val_loss:
            best.params, best.best_epoch, best.best_val_loss = jax.device_get(states.params), epoch, val_loss
            since_best = 0
        else:
            since_best += 1
            if since_best >= t.patience:
                break
    best.seconds = time.perf_counter() - started
    best.device = str(jax.devices()[0])
    return best
