"""Item 2: forecasts for 20, 100 and 500 tickers: time and memory.

`python -m bench.inference N` (one size per process) prints JSON for a model of the default
configuration (its `model.ensemble_size` members, their initial parameters from `create_states`
on the ewma prior fitted to the panel: the cost does not depend on the values) over N synthetic
tickers with two years of history:
- `jit_call_s`: one jitted call (`train.predict_rows`) on the N windows of the last session,
  median over repeats after compilation (`compile_s`); `xla_temp_mb`: the call's working memory
  from XLA's memory analysis;
- `predict_s`: the project's path for one session, `LSTMForecaster.predict` (the prior's scales
  and the inputs of the panel, its windows, `predict_scaled` in 8192-row chunks, the members'
  mean);
- `forecasts_s`: `make_forecasts` for one session (what `daily_forecasts` computes per night).
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time

from bench._subprocess import emit

SIZES = (20, 100, 500)


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(n_tickers: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import polars as pl

    from bench.synthetic import config_for, synthetic_prices
    from forecast_core.columns import DATE, TICKER
    from forecast_core.data.features import build_features, build_targets, feature_columns
    from forecast_core.data.panel import assemble_panel
    from forecast_core.models.forecaster import ForecastTask
    from forecast_core.models.lstm import train
    from forecast_core.models.lstm.forecaster import LSTMForecaster
    from forecast_core.models.lstm.prior import make_prior, sorted_panel, standardised_quantiles
    from forecast_core.models.lstm.windows import fit_scalers, make_windows, raw_inputs
    from forecast_core.serving.forecasts import make_forecasts

    cfg = config_for(n_tickers)
    prices = synthetic_prices(n_tickers, years=2)
    universe = prices.filter(pl.col(TICKER).is_in(list(cfg.universe.tickers)))
    feats = build_features(prices, cfg)
    panel = assemble_panel(feats, build_targets(universe, cfg.horizons), prices)
    task = ForecastTask(feature_columns(feats), cfg.horizons, cfg.quantiles)
    day = panel[DATE].max()
    lstm = LSTMForecaster(task, cfg)  # fitted by hand, as `fit` does up to training
    panel = sorted_panel(panel)
    lstm.prior = make_prior(cfg.model.sigma_prior, task, cfg).fit(panel, day)
    scales = lstm.prior.scales(panel)
    names, raw = raw_inputs(panel, scales, task)
    lstm.scalers = fit_scalers(panel[TICKER].unique().to_list(), names, raw)
    data = make_windows(panel, task, lstm.scalers, cfg.model.lookback, scales)
    labelled = data.rows_where(data.dates.min(), day, need_target=True)
    lstm.prior_z_ = standardised_quantiles(data.y[labelled].astype(np.float64), task.quantiles)
    model = lstm.model
    states = train.create_states(cfg, model, len(names), jax.random.PRNGKey(0), lstm.prior_z_)
    lstm.params = jax.device_get(states.params)
    rows = np.flatnonzero(data.dates == np.datetime64(day)).astype(np.int32)
    x, tid, rows_d = jnp.asarray(data.x), jnp.asarray(data.ticker_id), jnp.asarray(rows)

    def call():
        return train.predict_rows(
            model.apply, lstm.params, x, tid, rows_d, lookback=cfg.model.lookback
        ).block_until_ready()

    t = time.perf_counter()
    call()
    compile_s = time.perf_counter() - t
    jit_call_s = _median_time(call, 20)
    compiled = (
        jax.jit(train.predict_rows, static_argnames=("apply_fn", "lookback"))
        .lower(model.apply, lstm.params, x, tid, rows_d, lookback=cfg.model.lookback)
        .compile()
    )
    memory = compiled.memory_analysis()
    temp_mb = getattr(memory, "temp_size_in_bytes", 0) / 2**20 if memory is not None else None

    lstm.predict(panel, day, day)  # compiles the 8192-row chunk program
    predict_s = _median_time(lambda: lstm.predict(panel, day, day), 5)
    created = dt.datetime.now(dt.UTC)
    forecasts = make_forecasts(panel, lstm, task, day, day, "bench", created, cfg.calendar)
    forecasts_s = _median_time(
        lambda: make_forecasts(panel, lstm, task, day, day, "bench", created, cfg.calendar), 5
    )
    return {
        "tickers": n_tickers,
        "ensemble_size": cfg.model.ensemble_size,
        "inputs": len(names),
        "windows": int(len(rows)),
        "forecast_rows": forecasts.height,
        "backend": jax.default_backend(),
        "compile_s": round(compile_s, 3),
        "jit_call_s": round(jit_call_s, 5),
        "xla_temp_mb": None if temp_mb is None else round(temp_mb, 2),
        "predict_s": round(predict_s, 4),
        "forecasts_s": round(forecasts_s, 4),
    }


if __name__ == "__main__":
    emit(measure(int(sys.argv[1])))
