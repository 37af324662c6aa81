"""Training of the quantile LSTM: pinball loss, a pure jitted train step, the epoch loop with early
stopping, and batched prediction.

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
from forecast_core.models.lstm.modules import QuantileLSTM


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
    )


def pinball_loss(pred: jax.Array, y: jax.Array, quantiles: jax.Array) -> jax.Array:
    """Mean pinball loss. pred `[B, H, Q]`, y `[B, H]`, quantiles `[Q]` -> scalar.

    L = mean(max(tau * (y - q), (tau - 1) * (y - q))).
    """
    diff = y[..., None] - pred
    return jnp.mean(jnp.maximum(quantiles * diff, (quantiles - 1.0) * diff))


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


def create_state(cfg: ForecastConfig, model: QuantileLSTM, n_features: int, key: jax.Array) -> TrainState:
    """Initialised parameters (`model.init`, jitted) and the optimizer of `cfg.train`."""
    x = jnp.zeros((1, cfg.model.lookback, n_features), jnp.float32)
    params = _jitted_init(model)(key, x, jnp.zeros((1,), jnp.int32))["params"]
    return TrainState.create(apply_fn=model.apply, params=params, tx=optimizer(cfg.train))


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


def _chunked(tree, n: int):
    return jax.tree.map(lambda a: a.reshape(n, a.shape[0] // n, *a.shape[1:]), tree)


def _accumulated_step(
    state: TrainState, chunks, n: int, make_batch: Callable, rng: jax.Array, quantiles: jax.Array
) -> tuple[TrainState, jax.Array]:
    """One optimizer step on `n` micro-batches; `make_batch(chunk)` -> (x, ticker_id, y)."""
    dropout_key = jax.random.fold_in(rng, state.step)

    def loss_fn(params, chunk, index):
        x, tid, y = make_batch(chunk)
        key = dropout_key if n == 1 else jax.random.fold_in(dropout_key, index)
        pred = state.apply_fn({"params": params}, x, tid, train=True, rngs={"dropout": key})
        return pinball_loss(pred, y, quantiles)

    loss, grads = accumulate_gradients(loss_fn, state.params, chunks, n)
    return state.apply_gradients(grads=grads), loss


def train_step(
    state: TrainState,
    batch: tuple[jax.Array, jax.Array, jax.Array],
    rng: jax.Array,
    quantiles: jax.Array,
    micro_batch: int | None = None,
) -> tuple[TrainState, jax.Array]:
    """One AdamW step on a batch (x `[B, L, F]`, ticker_id `[B]`, y `[B, H]`); returns the loss.

    The gradient is accumulated over micro-batches of `micro_batch` windows (default:
    `micro_batch_size(B)`); micro-batch k draws its dropout mask from
    `fold_in(fold_in(rng, step), k)` (the whole batch from `fold_in(rng, step)` when it is one).
    """
    n = batch[0].shape[0] // (micro_batch or micro_batch_size(batch[0].shape[0]))
    return _accumulated_step(state, _chunked(batch, n), n, lambda chunk: chunk, rng, quantiles)


@partial(jax.jit, static_argnames=("lookback", "steps", "batch_size"), donate_argnums=(0,))
def train_epoch(
    state: TrainState,
    x: jax.Array,
    y: jax.Array,
    ticker_id: jax.Array,
    train_rows: jax.Array,
    quantiles: jax.Array,
    key: jax.Array,
    *,
    lookback: int,
    steps: int,
    batch_size: int,
) -> tuple[TrainState, jax.Array]:
    """`steps` train steps on batches drawn uniformly from `train_rows`; returns mean loss.

    Each step's windows are gathered per micro-batch (`micro_batch_size`) inside the step."""
    n = batch_size // micro_batch_size(batch_size)

    def windows(rows):  # gathered per micro-batch, so they are still in cache when used
        return gather_windows(x, rows, lookback), ticker_id[rows], y[rows]

    def body(state, step_key):
        pick = jax.random.randint(step_key, (batch_size,), 0, train_rows.shape[0])
        rows = train_rows[pick].reshape(n, batch_size // n)
        return _accumulated_step(state, rows, n, windows, step_key, quantiles)

    state, losses = jax.lax.scan(body, state, jax.random.split(key, steps))
    return state, losses.mean()


@partial(jax.jit, static_argnames=("apply_fn", "lookback"))
def predict_rows(
    apply_fn: Callable, params, x: jax.Array, ticker_id: jax.Array, rows: jax.Array, *, lookback: int
) -> jax.Array:
    """Scaled quantiles `<float32>[len(rows), H, Q]` for windows ending at `rows`."""
    return apply_fn({"params": params}, gather_windows(x, rows, lookback), ticker_id[rows], train=False)


def predict_scaled(
    state_or_apply: Callable, params, x, ticker_id, rows: np.ndarray, lookback: int, chunk: int = 8192
) -> np.ndarray:
    """`predict_rows` in fixed-size chunks (padded, so one compilation serves every call)."""
    out = []
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        padded = np.pad(part, (0, chunk - len(part)), mode="edge") if len(part) < chunk else part
        pred = predict_rows(state_or_apply, params, x, ticker_id, jnp.asarray(padded), lookback=lookback)
        out.append(np.asarray(pred)[: len(part)])
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


@dataclass
class TrainResult:
    """Best parameters by validation loss and the history that chose them."""

    params: dict
    best_epoch: int
    best_val_loss: float
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    device: str = ""


def fit(
    cfg: ForecastConfig,
    model: QuantileLSTM,
    x: np.ndarray,
    y: np.ndarray,
    ticker_id: np.ndarray,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> TrainResult:
    """Train with early stopping on the validation pinball loss (scaled target space).

    x `<float32>[N, F]`, y `<float32>[N, H]`, ticker_id `<int32>[N]`; train_rows / val_rows are
    indices of window-complete rows with known targets. Deterministic for a given seed and device.
    """
    t, lookback = cfg.train, cfg.model.lookback
    started = time.perf_counter()
    key = jax.random.PRNGKey(t.seed)
    init_key, data_key = jax.random.split(key)
    state = create_state(cfg, model, x.shape[1], init_key)
    q = jnp.asarray(cfg.quantiles, jnp.float32)
    xd, yd, tid = jnp.asarray(x), jnp.asarray(np.nan_to_num(y)), jnp.asarray(ticker_id)
    train_rows_d = jnp.asarray(train_rows)
    y_val = jnp.asarray(y[val_rows])
    best = TrainResult(params=jax.device_get(state.params), best_epoch=-1, best_val_loss=float("inf"))
    since_best = 0
    for epoch in range(t.max_epochs):
        state, loss = train_epoch(
            state,
            xd,
            yd,
            tid,
            train_rows_d,
            q,
            jax.random.fold_in(data_key, epoch),
            lookback=lookback,
            steps=t.steps_per_epoch,
            batch_size=t.batch_size,
        )
        val_pred = predict_scaled(state.apply_fn, state.params, xd, tid, val_rows, lookback)
        val_loss = float(pinball_loss(jnp.asarray(val_pred), y_val, q))
        best.train_losses.append(float(loss))
        best.val_losses.append(val_loss)
        if on_epoch is not None:
            on_epoch(epoch, float(loss), val_loss)
        if val_loss < best.best_val_loss:
            best.params, best.best_epoch, best.best_val_loss = jax.device_get(state.params), epoch, val_loss
            since_best = 0
        else:
            since_best += 1
            if since_best >= t.patience:
                break
    best.seconds = time.perf_counter() - started
    best.device = str(jax.devices()[0])
    return best
