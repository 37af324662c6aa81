"""Item 1: LSTM training throughput of the project's model against a PyTorch `nn.LSTM` mirror.

Two shapes:
- `issue`: the issue's reference (2 layers, 16 features, hidden 64, lookback 60, batch 256, Adam,
  MSE, float32). The Flax side is the project's `QuantileLSTM` (one median output, no embedding,
  no dropout) trained with the project's micro-batched gradient (`accumulate_gradients`).
- `default`: the project's own configuration (`ForecastConfig()`: lookback 30, hidden 32, one
  layer, the LSTM's inputs on the sample (`models.lstm.inputs`), 20 tickers with an embedding,
  pinball loss over 2 horizons x 3 quantiles, AdamW with warmup-cosine and clipping, dropout), one
  model (an ensemble of 1, whatever `model.ensemble_size` says). The Flax side is the project's
  real jitted epoch, `forecast_core.models.lstm.train.train_epoch`, from `create_states`.

Both sides draw random windows from the same kind of `[rows, features]` panel inside each step.
Two forms, each side measured in separate worker processes, alternating, medians over repeats:
- per core: one model on one core (`taskset`; XLA's Eigen threading off, `torch.set_num_threads(1)`);
- whole machine: training `FOLDS` fold models, as the job does. The project runs them the way
  Dagster's multiprocess executor does, one process per fold, two at a time (default XLA
  settings, no pinning); PyTorch in its best configuration, the faster of one process with two
  threads and two single-threaded processes. Workers are started and compiled before the clock
  starts; what a fold process costs before it trains (importing JAX and the project, compiling
  from the persistent cache) is measured separately, alone (`fold_process_start_s`).

The seed ensemble's cost (`measure_ensemble`, part of the default shape's item; alone:
`python -m bench.training ensemble [--steps N] [--repeats R] [--sizes 1,3,5]`): seconds of one
`train_epoch` call (`train.steps_per_epoch` steps) with K = 1, 3 and 5 members stacked and
vmapped, at the default shape, in one process on one core (as a fold process runs), the sizes
alternating; `cost_vs_k_singles` < 1 is what the vmap saves over K separate models.
"""

from __future__ import annotations

import dataclasses
import json
import os
import selectors
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
#: Fold models of the job's default configuration (`folds.n_folds`).
FOLDS = 5
PANEL_ROWS = 160_000  # about the sample's 20 tickers x 8,000 sessions


@dataclass(frozen=True)
class Shape:
    name: str
    batch: int
    lookback: int
    features: int
    hidden: int
    layers: int
    n_tickers: int
    embedding: int
    horizons: int
    quantiles: tuple[float, ...]
    dropout: float
    loss: str  # "mse" or "pinball"
    optimizer: str  # "adam" or "adamw" (warmup-cosine, clipping)
    learning_rate: float
    weight_decay: float = 0.0
    clip_norm: float = 0.0
    warmup_steps: int = 0
    schedule_steps: int = 1
    #: Members of the seed ensemble the Flax side trains (the `default` shape only).
    ensemble: int = 1

    def describe(self) -> str:
        extra = f", {self.n_tickers} tickers' embedding ({self.embedding})" if self.embedding else ""
        if self.ensemble > 1:
            extra += f", an ensemble of {self.ensemble}"
        layers = f"{self.layers} layer" + ("s" if self.layers > 1 else "")
        loss = {
            "mse": "MSE",
            "pinball": f"pinball ({self.horizons} horizons x {len(self.quantiles)} quantiles)",
        }
        opt = {"adam": "Adam", "adamw": "AdamW, warmup-cosine, clipping"}
        return (
            f"{layers}, {self.features} features, hidden {self.hidden}, lookback {self.lookback}, "
            f"batch {self.batch}{extra}, {loss[self.loss]}, {opt[self.optimizer]}, float32"
        )


ISSUE_SHAPE = Shape(
    name="issue",
    batch=256,
    lookback=60,
    features=16,
    hidden=64,
    layers=2,
    n_tickers=1,
    embedding=0,
    horizons=1,
    quantiles=(0.5,),
    dropout=0.0,
    loss="mse",
    optimizer="adam",
    learning_rate=1e-3,
)


def default_shape(n_features: int, ensemble: int = 1) -> Shape:
    """The shape of `ForecastConfig()` (the job's defaults) with the sample's input count, and
    `ensemble` members (1: one model, what the PyTorch mirror trains)."""
    from forecast_core.config import ForecastConfig

    cfg = ForecastConfig()
    m, t = cfg.model, cfg.train
    return Shape(
        name="default",
        batch=t.batch_size,
        lookback=m.lookback,
        features=n_features,
        hidden=m.hidden_size,
        layers=m.num_layers,
        n_tickers=len(cfg.universe.tickers),
        embedding=m.ticker_embedding_dim,
        horizons=len(cfg.horizons),
        quantiles=cfg.quantiles,
        dropout=m.dropout,
        loss="pinball",
        optimizer="adamw",
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        clip_norm=t.clip_norm,
        warmup_steps=t.warmup_steps,
        schedule_steps=t.max_epochs * t.steps_per_epoch,
        ensemble=ensemble,
    )


def sample_feature_count() -> int:
    """Number of inputs the LSTM reads on the embedded sample (`models.lstm.inputs.input_names`
    of its features: the volatility-standardised shocks and, the sample having `^GSPC`, the
    market's; no range inputs, the sample having closes only)."""
    import datetime as dt

    from forecast_core.config import ForecastConfig
    from forecast_core.data.features import build_features
    from forecast_core.models.lstm.inputs import input_names
    from forecast_core.sources import make_source

    cfg = ForecastConfig()
    source = make_source(cfg)
    last = source.last_date()
    prices = source.fetch(cfg.universe.all_tickers, last - dt.timedelta(days=500), last)
    return len(input_names(build_features(prices, cfg)))


def panel_arrays(shape: Shape, seed: int = 0):
    """Random scaled panel: x `<float32>[rows, F]`, y `<float32>[rows, horizons]` (standardised
    targets, for the Flax side of the `default` shape), ticker ids, and the rows whose window is
    complete."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((PANEL_ROWS, shape.features), dtype=np.float32)
    y = rng.standard_normal((PANEL_ROWS, shape.horizons), dtype=np.float32)
    tid = (np.arange(PANEL_ROWS) * shape.n_tickers // PANEL_ROWS).astype(np.int32)
    rows = np.arange(shape.lookback - 1, PANEL_ROWS, dtype=np.int32)
    return x, y, tid, rows


# --- the Flax side ------------------------------------------------------------------------------


class JaxTrainer:
    """Fresh models ("folds") trained for a number of steps with the project's code."""

    def __init__(self, shape: Shape, seed: int = 0) -> None:
        import jax
        import jax.numpy as jnp
        import optax

        from forecast_core.config import ForecastConfig
        from forecast_core.models.lstm import train
        from forecast_core.models.lstm.modules import QuantileLSTM

        self.shape, self.jax, self.jnp, self.train = shape, jax, jnp, train
        x, y, tid, rows = panel_arrays(shape, seed)
        self.x, self.y, self.tid, self.rows = (jnp.asarray(a) for a in (x, y, tid, rows))
        self.key = jax.random.PRNGKey(seed)
        self.folds = 0
        if shape.name == "default":  # the job's own configuration, model and jitted epoch
            from forecast_core.models.lstm.prior import standardised_quantiles

            cfg = ForecastConfig()
            self.cfg = dataclasses.replace(
                cfg, model=dataclasses.replace(cfg.model, ensemble_size=shape.ensemble)
            )
            self.model = train.model_from_config(self.cfg, shape.n_tickers)
            self.q = jnp.asarray(self.cfg.quantiles, jnp.float32)
            # The prior's z-quantiles (the head's starting bias) and loss weights (each row's
            # scale over the mean training scale) as `fit` makes them, from random scales.
            self.prior_z = standardised_quantiles(y[rows].astype(np.float64), self.cfg.quantiles)
            scale = np.random.default_rng(seed + 1).lognormal(0.0, 0.3, y.shape)
            self.weight = jnp.asarray((scale / scale[rows].mean()).astype(np.float32))
        else:
            self.model = QuantileLSTM(hidden_size=shape.hidden, num_layers=shape.layers, n_tickers=1,
                                      ticker_embedding_dim=0, n_horizons=1, quantiles=(0.5,),
                                      dropout=0.0)  # fmt: skip
            self.epoch = _mse_epoch(self.model, shape)
            self.init = jax.jit(self.model.init)
            self.tx = optax.adam(shape.learning_rate)  # one object: the jitted epoch keys on it

    def _states(self, init_key):
        return self.train.create_states(self.cfg, self.model, self.shape.features, init_key, self.prior_z)

    def _epoch(self, states, data_key, steps: int):
        s = self.shape
        return self.train.train_epoch(
            states,
            self.x,
            self.y,
            self.weight,
            self.tid,
            self.rows,
            self.q,
            data_key,
            lookback=s.lookback,
            steps=steps,
            batch_size=s.batch,
        )

    def fold(self, steps: int) -> float:
        """A fresh model (new initial parameters and optimizer state) trained for `steps` steps."""
        jax, jnp, train, s = self.jax, self.jnp, self.train, self.shape
        self.folds += 1
        init_key, data_key = jax.random.split(jax.random.fold_in(self.key, self.folds))
        if s.name == "default":
            state, loss = self._epoch(self._states(init_key), data_key, steps)
            loss = loss.mean()
        else:
            x0 = jnp.zeros((1, s.lookback, s.features), jnp.float32)
            params = self.init(init_key, x0, jnp.zeros((1,), jnp.int32))["params"]
            state = train.TrainState.create(apply_fn=self.model.apply, params=params, tx=self.tx)
            state, loss = self.epoch(state, self.x, self.y, self.rows, data_key, steps)
        return float(loss)

    def epoch_seconds(self, steps: int) -> float:
        """Seconds of one `train_epoch` call of `steps` steps on fresh states (the `default` shape;
        creating the states is not timed)."""
        jax = self.jax
        self.folds += 1
        init_key, data_key = jax.random.split(jax.random.fold_in(self.key, self.folds))
        states = jax.block_until_ready(self._states(init_key))
        t = time.perf_counter()
        jax.block_until_ready(self._epoch(states, data_key, steps))
        return time.perf_counter() - t


def _mse_epoch(model, shape: Shape):
    """A jitted epoch of `steps` Adam steps on MSE, built from the project's training pieces:
    windows gathered in the step, gradient accumulated over micro-batches (`train.py`)."""
    from functools import partial

    import jax
    import jax.numpy as jnp

    from forecast_core.models.lstm.train import accumulate_gradients, gather_windows, micro_batch_size

    b, lookback = shape.batch, shape.lookback
    n = b // micro_batch_size(b)

    @partial(jax.jit, static_argnums=(5,), donate_argnums=(0,))
    def epoch(state, x, y, rows_all, key, steps):
        def body(state, step_key):
            rows = rows_all[jax.random.randint(step_key, (b,), 0, rows_all.shape[0])]
            chunks = rows.reshape(n, b // n)

            def loss_fn(params, chunk, index):
                xw, yw = gather_windows(x, chunk, lookback), y[chunk]
                pred = model.apply({"params": params}, xw, jnp.zeros(xw.shape[0], jnp.int32))
                return jnp.mean((pred[:, :, 0] - yw) ** 2)

            loss, grads = accumulate_gradients(loss_fn, state.params, chunks, n)
            return state.apply_gradients(grads=grads), loss

        state, losses = jax.lax.scan(body, state, jax.random.split(key, steps))
        return state, losses[-1]

    return epoch


# --- workers ------------------------------------------------------------------------------------


def worker_main(argv: list[str]) -> None:
    """`python -m bench.training SIDE SHAPE_JSON STEPS`: answers `fold` lines with JSON timings."""
    side, shape = argv[0], Shape(**json.loads(argv[1]))
    shape = dataclasses.replace(shape, quantiles=tuple(shape.quantiles))
    steps = int(argv[2])
    out = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = sys.stderr  # nothing else may write to the protocol stream
    started = time.perf_counter()
    if side == "jax":
        import jax

        jax.config.update("jax_compilation_cache_dir", str(ROOT / ".jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
        trainer = JaxTrainer(shape)
    else:
        import torch

        from bench.torch_models import TorchTrainer

        threads = int(os.environ.get("BENCH_TORCH_THREADS", "1"))
        torch.set_num_threads(threads)
        trainer = TorchTrainer(shape, *panel_arrays(shape))
    imported = time.perf_counter()
    trainer.fold(steps)  # compiles (JAX) / warms up (PyTorch)
    ready = time.perf_counter()
    out.write(json.dumps({"startup_s": imported - started, "first_fold_s": ready - imported}) + "\n")
    for line in sys.stdin:
        if line.strip() != "fold":
            break
        t = time.perf_counter()
        loss = trainer.fold(steps)
        out.write(json.dumps({"seconds": time.perf_counter() - t, "loss": loss}) + "\n")


class Worker:
    """A training worker process (one side, one shape), optionally pinned to a core."""

    def __init__(
        self,
        side: str,
        shape: Shape,
        steps: int,
        *,
        threads: int = 1,
        core: int | None = None,
        xla_threading: bool = True,
    ) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env["BENCH_TORCH_THREADS"] = str(threads)
        env["OMP_NUM_THREADS"] = str(threads)
        if not xla_threading:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
        cmd = [
            sys.executable,
            "-m",
            "bench.training",
            side,
            json.dumps(dataclasses.asdict(shape)),
            str(steps),
        ]
        if core is not None:
            cmd = ["taskset", "-c", str(core), *cmd]
        self.side, self.shape, self.steps = side, shape, steps
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT, bufsize=1
        )
        self.ready: dict | None = None

    def wait_ready(self) -> dict:
        if self.ready is None:
            self.ready = self._read()
        return self.ready

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.side} worker exited with {self.proc.wait()} (see stderr above)")
        return json.loads(line)

    def start_fold(self) -> None:
        self.proc.stdin.write("fold\n")
        self.proc.stdin.flush()

    def fold(self) -> float:
        """Samples per second of one fold."""
        self.start_fold()
        return self.steps * self.shape.batch / self._read()["seconds"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def run_folds(workers: list[Worker], n_folds: int) -> float:
    """Train `n_folds` fresh models on a pool of workers (a free worker takes the next fold, like
    the executor's two slots); returns samples per second of the whole job (wall clock)."""
    sel = selectors.DefaultSelector()
    started = time.perf_counter()
    queued = n_folds
    for w in workers[:n_folds]:
        w.start_fold()
        sel.register(w.proc.stdout, selectors.EVENT_READ, w)
        queued -= 1
    done = 0
    while done < n_folds:
        for key, _ in sel.select():
            w = key.data
            w._read()
            done += 1
            if queued:
                w.start_fold()
                queued -= 1
            else:
                sel.unregister(w.proc.stdout)
    wall = time.perf_counter() - started
    return n_folds * workers[0].steps * workers[0].shape.batch / wall


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def measure_shape(shape: Shape, steps: int, repeats: int, *, log=print) -> dict:
    """Both forms for one shape; returns medians, every repeat and the ratios (and, at the
    default shape, the seed ensemble's cost, `measure_ensemble`)."""
    cores = os.sched_getaffinity(0)
    core = max(cores)
    ncpu = len(cores)
    # Start every worker at once (they compile in parallel), then measure one form at a time.
    per_core = {
        "project": Worker("jax", shape, steps, core=core, xla_threading=False),
        "pytorch": Worker("torch", shape, steps, threads=1, core=core),
    }
    whole = {
        "project": [Worker("jax", shape, steps) for _ in range(ncpu)],
        "pytorch_threads": [Worker("torch", shape, steps, threads=ncpu)],
        "pytorch_processes": [Worker("torch", shape, steps, threads=1) for _ in range(ncpu)],
    }
    everyone = [*per_core.values(), *(w for ws in whole.values() for w in ws)]
    try:
        for w in everyone:
            w.wait_ready()
        runs: dict[str, list[float]] = {k: [] for k in ("per_core_project", "per_core_pytorch")}
        for r in range(repeats):
            order = ["project", "pytorch"] if r % 2 == 0 else ["pytorch", "project"]
            for side in order:
                runs[f"per_core_{side}"].append(per_core[side].fold())
        for k in whole:
            runs[f"whole_{k}"] = []
        for r in range(repeats):
            keys = list(whole)
            keys = keys[r % len(keys) :] + keys[: r % len(keys)]
            for k in keys:
                runs[f"whole_{k}"].append(run_folds(whole[k], FOLDS))
            log(f"  {shape.name}: repeat {r + 1}/{repeats} done")
        med = {k: _median(v) for k, v in runs.items()}
        torch_best = max(med["whole_pytorch_threads"], med["whole_pytorch_processes"])
    finally:
        for w in everyone:
            w.close()
    # What the executor pays per fold before training: a fresh process (imports) and its first
    # fold (compilation, from the persistent cache that the workers above filled), alone.
    fresh = Worker("jax", shape, steps)
    try:
        ready = fresh.wait_ready()
    finally:
        fresh.close()
    fold_s = shape.batch * steps / med["per_core_project"]
    ensemble = {"ensemble": measure_ensemble(shape, log=log)} if shape.name == "default" else {}
    return {
        "shape": dataclasses.asdict(shape),
        "description": shape.describe(),
        "steps_per_fold": steps,
        "folds": FOLDS,
        "repeats": repeats,
        "samples_per_s": {k: round(v, 1) for k, v in med.items()},
        "runs": {k: [round(x, 1) for x in v] for k, v in runs.items()},
        "pytorch_best_whole_machine": (
            "threads" if torch_best == med["whole_pytorch_threads"] else "processes"
        ),
        "ratio_per_core": round(med["per_core_project"] / med["per_core_pytorch"], 3),
        "ratio_whole_machine": round(med["whole_project"] / torch_best, 3),
        "fold_process_start_s": round(ready["startup_s"] + max(0.0, ready["first_fold_s"] - fold_s), 2),
        **ensemble,
    }


# --- the seed ensemble's cost --------------------------------------------------------------------

#: Ensemble sizes compared by `measure_ensemble`.
ENSEMBLE_SIZES = (1, 3, 5)


def ensemble_worker_main(argv: list[str]) -> None:
    """`python -m bench.training ensemble-worker SHAPE_JSON STEPS REPEATS SIZES`: one JSON line of
    every size's `train_epoch` seconds, sizes alternating, after compiling each."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(ROOT / ".jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    shape = Shape(**json.loads(argv[0]))
    shape = dataclasses.replace(shape, quantiles=tuple(shape.quantiles))
    steps, repeats = int(argv[1]), int(argv[2])
    sizes = [int(k) for k in argv[3].split(",")]
    trainers = {k: JaxTrainer(dataclasses.replace(shape, ensemble=k)) for k in sizes}
    compile_s = {}
    for k, trainer in trainers.items():
        t = time.perf_counter()
        trainer.epoch_seconds(steps)
        compile_s[k] = time.perf_counter() - t
    runs: dict[int, list[float]] = {k: [] for k in sizes}
    for r in range(repeats):
        for k in sizes if r % 2 == 0 else sizes[::-1]:
            runs[k].append(trainers[k].epoch_seconds(steps))
    print(json.dumps({"runs": runs, "first_call_s": compile_s}), flush=True)


def measure_ensemble(
    shape: Shape, steps: int = 20, repeats: int = 3, sizes=ENSEMBLE_SIZES, *, log=print
) -> dict:
    """`train_epoch` with K members for each K in `sizes` at `shape` (the default one), in one
    worker process pinned to one core with XLA's Eigen threading off (a fold process's setting on
    a busy machine): medians of `repeats` alternating calls of `steps` steps each, scaled to an
    epoch of `train.steps_per_epoch` steps. Ratios are against K = 1: `cost` = time(K) / time(1),
    `cost_vs_k_singles` = time(K) / (K time(1)) (below 1: the vmapped ensemble is cheaper than K
    models trained one after another)."""
    from forecast_core.config import ForecastConfig

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    core = max(os.sched_getaffinity(0))
    shape = dataclasses.replace(shape, ensemble=1)
    cmd = ["taskset", "-c", str(core), sys.executable, "-m", "bench.training", "ensemble-worker",
           json.dumps(dataclasses.asdict(shape)), str(steps), str(repeats), ",".join(map(str, sizes))]  # fmt: skip
    log(f"  ensemble: K = {', '.join(map(str, sizes))}, {repeats} x {steps} steps each, core {core}")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"ensemble worker exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    epoch_steps = ForecastConfig().train.steps_per_epoch
    seconds = {int(k): _median(v) for k, v in out["runs"].items()}
    one = seconds[min(seconds)]
    return {
        "description": shape.describe(),
        "steps_timed": steps,
        "steps_per_epoch": epoch_steps,
        "repeats": repeats,
        "core": core,
        "seconds_per_epoch": {str(k): round(v * epoch_steps / steps, 3) for k, v in seconds.items()},
        "member_samples_per_s": {str(k): round(k * steps * shape.batch / v, 1) for k, v in seconds.items()},
        "cost": {str(k): round(v / one, 3) for k, v in seconds.items()},
        "cost_vs_k_singles": {str(k): round(v / (k * one), 3) for k, v in seconds.items()},
        "runs_s": {str(k): [round(x, 4) for x in v] for k, v in out["runs"].items()},
        "first_call_s": {str(k): round(v, 2) for k, v in out["first_call_s"].items()},
    }


def ensemble_main(argv: list[str]) -> None:
    """`python -m bench.training ensemble [--steps N] [--repeats R] [--sizes 1,3,5]`: prints JSON."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.training ensemble")
    parser.add_argument("--steps", type=int, default=20, help="steps per timed train_epoch call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", default=",".join(map(str, ENSEMBLE_SIZES)))
    args = parser.parse_args(argv)
    sizes = tuple(int(k) for k in args.sizes.split(","))
    shape = default_shape(sample_feature_count())
    result = measure_ensemble(shape, args.steps, args.repeats, sizes, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["ensemble"]:
        ensemble_main(sys.argv[2:])
    elif sys.argv[1:2] == ["ensemble-worker"]:
        ensemble_worker_main(sys.argv[2:])
    else:
        worker_main(sys.argv[1:])
