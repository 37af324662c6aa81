"""Item 7: one retrain month and one walk-forward fold for N synthetic tickers x 20 years.

`python -m bench.scale_training {retrain,fold,publish} N [--chunk C]` (one measurement per
process, for its peak memory) prints JSON: the panel built C tickers at a time (features, targets, prices: what
`panel_known_at` reads) and spilled to disk by a child process (as the job's steps spill it,
`forecast_core.data.spilled_panel`), then either `train_period_model` for the last month (the LSTM, every
baseline on validation, the gate: what `lstm_model` does) or `evaluate_fold` on the last fold
(every model fitted and scored: one of the `fold_evaluation` asset's parallel steps; the asset
runs one such step per fold), with its seconds and the process's peak memory; or `publish`: the
asset's last step, `publish_fold_evaluation`, on every fold's predictions staged as its fold steps
stage them (`--frames`: the way before staging, every fold's rows held as one frame). The demo's configuration otherwise
(lookback 30, 25 epochs at most of 100 steps of 256 windows, so the LSTM's cost does not grow
with the universe; the per-ticker GARCH fits and the panel do).
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import tempfile
import time
from pathlib import Path

from bench._subprocess import emit

YEARS = 20


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def chunked_panel(prices, cfg, chunk: int, spill_to):
    """The modelling panel (features, targets, price) built `chunk` tickers at a time, every chunk
    with the exogenous tickers (their market features are joined by date), spilled a chunk at a
    time to the directory `spill_to` as the job's retraining and fold steps spill theirs
    (`reads.panel_known_at(..., spill_to=)`): a `SpilledPanel`, and the feature columns."""
    import polars as pl

    from forecast_core.columns import TICKER
    from forecast_core.data.features import build_features, build_targets, feature_columns
    from forecast_core.data.panel import assemble_panel
    from forecast_core.data.spilled_panel import SpilledPanel

    tickers, exogenous = list(cfg.universe.tickers), list(cfg.universe.exogenous)
    columns: list[tuple[str, ...]] = [()]

    def parts():
        for i in range(0, len(tickers), chunk):
            names = tickers[i : i + chunk]
            part = prices.filter(pl.col(TICKER).is_in(names + exogenous))
            feats = build_features(part, cfg)
            columns[0] = feature_columns(feats)
            targets = build_targets(part.filter(pl.col(TICKER).is_in(names)), cfg.horizons)
            yield assemble_panel(feats.filter(pl.col(TICKER).is_in(names)), targets, part)

    return SpilledPanel.write(parts(), Path(spill_to)), columns[0]


def _spill(n_tickers: int, chunk: int, spill_to, before: dt.date | None):
    """In a child process: the synthetic prices (those dated before `before`) made into the panel
    and spilled to `spill_to`; the `SpilledPanel`, its feature columns and the child's figures."""
    import polars as pl

    from bench.synthetic import config_for, synthetic_prices
    from forecast_core.columns import DATE

    prices = synthetic_prices(n_tickers, YEARS)
    if before is not None:
        prices = prices.filter(pl.col(DATE) < before)
    out: dict = {"price_rows": prices.height}
    t = time.perf_counter()
    panel, columns = chunked_panel(prices, config_for(n_tickers), chunk, spill_to)
    return panel, columns, out | {"panel_s": round(time.perf_counter() - t, 2), "panel_peak_mb": _peak_mb()}


def _panel(n_tickers: int, chunk: int, spill_to, before: dt.date | None = None):
    """The panel of the synthetic prices (those dated before `before`, as `panel_known_at` reads
    them for a retrain month: targets known then), spilled to `spill_to` by a child process, as
    the job's step reads it from the warehouse: the prices and the panel's building never count
    in this process's peak memory, which is the models'."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from bench.synthetic import config_for
    from forecast_core.models.forecaster import ForecastTask

    cfg = config_for(n_tickers)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        panel, columns, built = pool.submit(_spill, n_tickers, chunk, spill_to, before).result()
    out = {"tickers": n_tickers, "years": YEARS, "chunk": chunk, **built}
    out |= {
        "panel_rows": panel.height,
        "panel_files": len(panel.files),
        "panel_disk_mb": round(sum(f.stat().st_size for f in panel.files) / 2**20, 1),
    }
    return cfg, panel, ForecastTask(columns, cfg.horizons, cfg.quantiles), out


def retrain(n_tickers: int, chunk: int) -> dict:
    """`train_period_model` for the panel's last whole month, on the panel as known before it."""
    from bench.synthetic import SESSIONS_PER_YEAR, synthetic_sessions
    from forecast_core.serving.periods import train_period_model

    last = synthetic_sessions(YEARS * SESSIONS_PER_YEAR)[-1]
    period_start = (last.replace(day=1) - dt.timedelta(days=1)).replace(day=1)  # a month with data
    with tempfile.TemporaryDirectory(prefix="forecast-panel-") as spill:
        cfg, panel, task, out = _panel(n_tickers, chunk, spill, before=period_start)
        t = time.perf_counter()
        pm = train_period_model(panel, task, cfg, period_start)
        seconds = time.perf_counter() - t
    return out | {
        "retrain_month": period_start.isoformat(),
        "retrain_s": round(seconds, 2),
        "retrain_lstm_s": round(pm.lstm.result.seconds, 2),
        "retrain_epochs": len(pm.lstm.result.train_losses),
        "retrain_serving": pm.serving_model,
        "retrain_val_pinball": pm.val_pinball,
    }


def fold(n_tickers: int, chunk: int) -> dict:
    """`evaluate_fold` on the last walk-forward fold: every model fitted, predicted, scored."""
    from forecast_core.data.spilled_panel import complete_sessions
    from forecast_core.evaluation.folds import walk_forward_folds
    from forecast_core.evaluation.walk_forward import evaluate_fold
    from forecast_core.models.baselines import make_baselines
    from forecast_core.models.lstm.forecaster import LSTMForecaster

    with tempfile.TemporaryDirectory(prefix="forecast-panel-") as spill:
        cfg, panel, task, out = _panel(n_tickers, chunk, spill)
        # The sessions with complete rows, as `walk_forward_folds` lays the folds out.
        last = walk_forward_folds(complete_sessions(panel), cfg.folds, cfg.purge_sessions)[-1]
        forecasters = [LSTMForecaster(task, cfg), *make_baselines(task, cfg)]
        t = time.perf_counter()
        result = evaluate_fold(panel, last, task, forecasters)
        seconds = time.perf_counter() - t
    return out | {
        "fold": last.fold,
        "fold_test": f"{last.test_start}..{last.test_end}",
        "fold_s": round(seconds, 2),
        "fold_model_s": {k: round(v, 2) for k, v in result.seconds.items()},
        "fold_prediction_rows": result.predictions.height,
        "n_folds": cfg.folds.n_folds,
    }


#: A fold's test slice: about a year of sessions (the demo's folds' 251 to 253 at 20 years).
TEST_SESSIONS = 252


def _stage_folds(n_tickers: int, directory: str) -> list:
    """In a child process: every fold's predictions for `n_tickers`, as many rows as `evaluate_fold`
    gives at that size (every model, both horizons, a year of test sessions; the values are noise of
    a return's scale), staged as the fold steps stage them (`stage_fold`), with their metrics."""
    import numpy as np
    import polars as pl

    from bench.synthetic import SESSIONS_PER_YEAR, config_for, synthetic_sessions
    from forecast_assets.assets.evaluation import stage_fold
    from forecast_core.evaluation.walk_forward import FoldResult
    from forecast_core.models.baselines import BASELINES

    cfg = config_for(n_tickers)
    models, horizons = ["lstm", *BASELINES], list(cfg.horizons)
    tickers = list(cfg.universe.tickers)
    sessions = synthetic_sessions(YEARS * SESSIONS_PER_YEAR)
    rng = np.random.default_rng(0)
    staged = []
    for k in range(cfg.folds.n_folds):
        dates = sessions[-(cfg.folds.n_folds - k) * TEST_SESSIONS :][:TEST_SESSIONS]
        per_model = len(tickers) * len(dates)
        frames = []
        for model in models:
            for h in horizons:
                q50 = rng.normal(0, 0.002, per_model)
                width = np.abs(rng.normal(0.02 * h**0.5, 0.005, per_model))
                frames.append(
                    pl.DataFrame(
                        {
                            "fold": pl.Series([k] * per_model, dtype=pl.Int32),
                            "model": [model] * per_model,
                            "ticker": np.repeat(tickers, len(dates)),
                            "date": np.tile(np.array(dates, dtype="datetime64[D]"), len(tickers)),
                            "horizon": pl.Series([h] * per_model, dtype=pl.Int32),
                            "last_close": rng.lognormal(4, 0.5, per_model),
                            "y_true": rng.normal(0, 0.02 * h**0.5, per_model),
                            "y_pred": q50,
                            "q10": q50 - width,
                            "q50": q50,
                            "q90": q50 + width,
                        }
                    )
                )
        metrics = pl.DataFrame(
            [
                {
                    "fold": k,
                    "model": m,
                    "horizon": h,
                    "metric": name,
                    "value": float(rng.uniform(0.005, 0.02)),
                }
                for m in models
                for h in horizons
                for name in ("pinball", "coverage_80", "mae", "rmse", "mape_price", "directional_accuracy")
            ],
            schema={
                "fold": pl.Int32,
                "model": pl.String,
                "horizon": pl.Int32,
                "metric": pl.String,
                "value": pl.Float64,
            },
        )
        result = FoldResult(predictions=pl.concat(frames), metrics=metrics, seconds={m: 0.0 for m in models})
        staged.append(stage_fold(result, k, Path(directory)))
    return staged


def publish(n_tickers: int, frames: bool = False) -> dict:
    """`publish_fold_evaluation` on every fold's staged predictions, into a new warehouse (with its
    read replica, seeded by this first commit); `frames`: instead, every fold's rows read into one
    frame and written from memory, as the step did before the fold steps staged them."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import dagster as dg
    import polars as pl

    from forecast_assets.assets.evaluation import publish_fold_evaluation
    from forecast_assets.resources import WarehouseResource
    from warehouse import transaction

    with tempfile.TemporaryDirectory(prefix="forecast-publish-") as tmp:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            staged = pool.submit(_stage_folds, n_tickers, str(Path(tmp) / "staging")).result()
        staged_mb = sum(Path(s.predictions).stat().st_size for s in staged) / 2**20
        db = Path(tmp) / "w.duckdb"
        t = time.perf_counter()
        if frames:
            predictions = pl.concat([pl.read_parquet(s.predictions) for s in staged])
            with transaction(db) as w:
                w.replace("fold_predictions", predictions)
                w.replace("fold_metrics", pl.concat([s.metrics for s in staged]))
        else:
            context = dg.build_op_context(resources={"warehouse": WarehouseResource(path=str(db))})
            publish_fold_evaluation(context, staged)
        seconds = time.perf_counter() - t
        warehouse_mb = db.stat().st_size / 2**20
    return {
        "tickers": n_tickers,
        "publish_from": "frames" if frames else "staged",
        "folds": len(staged),
        "prediction_rows": sum(s.prediction_rows for s in staged),
        "staged_mb": round(staged_mb, 1),
        "publish_s": round(seconds, 2),
        "warehouse_mb": round(warehouse_mb, 1),
    }


def build_backtest_warehouse(n_tickers: int, folder: str) -> dict:
    """A warehouse in `folder` (`w.duckdb`, `config.toml`) for `strategy_backtest` at
    `n_tickers`: 20 years of synthetic prices and every fold's predictions (`_stage_folds`), as
    `fold_evaluation` leaves them; no published forecasts."""
    import json

    import polars as pl

    from bench.synthetic import config_for, synthetic_prices
    from warehouse import transaction
    from warehouse.io import ParquetRows

    cfg = config_for(n_tickers)
    tickers = ", ".join(json.dumps(t) for t in cfg.universe.tickers)
    exogenous = ", ".join(json.dumps(t) for t in cfg.universe.exogenous)
    (Path(folder) / "config.toml").write_text(
        f"[universe]\ntickers = [{tickers}]\nexogenous = [{exogenous}]\n"
    )
    staged = _stage_folds(n_tickers, str(Path(folder) / "staging"))
    ingested = dt.datetime(2023, 1, 3, tzinfo=dt.UTC)
    prices = synthetic_prices(n_tickers, YEARS).with_columns(
        pl.lit(ingested, pl.Datetime("us", "UTC")).alias("ingested_at")
    )
    with transaction(Path(folder) / "w.duckdb") as w:
        w.replace("raw_prices", prices)
        w.replace("fold_predictions", ParquetRows(tuple(s.predictions for s in staged)))
    return {"price_rows": prices.height, "prediction_rows": sum(s.prediction_rows for s in staged)}


def backtest(n_tickers: int) -> dict:
    """The `strategy_backtest` asset on `build_backtest_warehouse`'s warehouse (built by a child
    process, so that its prices do not count in this process's peak memory)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import dagster as dg

    from forecast_assets.assets.decision import strategy_backtest
    from forecast_assets.resources import PipelineConfig, WarehouseResource
    from warehouse import read_sql

    with tempfile.TemporaryDirectory(prefix="forecast-backtest-bench-") as tmp:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            built = pool.submit(build_backtest_warehouse, n_tickers, tmp).result()
        db = str(Path(tmp) / "w.duckdb")
        resources = {
            "warehouse": WarehouseResource(path=db),
            "pipeline": PipelineConfig(config_file=str(Path(tmp) / "config.toml")),
        }
        t = time.perf_counter()
        dg.materialize([strategy_backtest], resources=resources)
        seconds = time.perf_counter() - t
        rows = read_sql(
            "SELECT (SELECT count(*) FROM backtest_returns) AS r, (SELECT count(*) FROM backtest_metrics) AS m",
            path=db,
        )
    return {
        "tickers": n_tickers,
        **built,
        "backtest_s": round(seconds, 2),
        "return_rows": rows["r"][0],
        "metric_rows": rows["m"][0],
    }


SIZES = (20, 500, 5000)


def measure(sizes: tuple[int, ...] = SIZES, log=print) -> list[dict]:
    """Item 7 of `python -m bench`: for each size, the retrain and the fold, a process each."""
    from bench._subprocess import run_item

    rows = []
    for n in sizes:
        row: dict = {"tickers": n}
        for what in ("retrain", "fold"):
            log(f"  bench.scale_training {what}: {n} tickers")
            row[what] = run_item("bench.scale_training", what, str(n), timeout=3600)
        rows.append(row)
    return rows


def measure_publication(sizes: tuple[int, ...] = SIZES, log=print) -> list[dict]:
    """Item 8 of `python -m bench`: for each size, `publish_fold_evaluation` from the staged files
    and, for comparison, from one frame in memory (the way before staging), a process each."""
    from bench._subprocess import run_item

    rows = []
    for n in sizes:
        row: dict = {"tickers": n}
        for how, flags in (("staged", ()), ("frames", ("--frames",))):
            log(f"  bench.scale_training publish: {n} tickers, {how}")
            row[how] = run_item("bench.scale_training", "publish", str(n), *flags, timeout=3600)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=("retrain", "fold", "publish", "backtest"))
    parser.add_argument("tickers", type=int)
    parser.add_argument("--chunk", type=int, default=250, help="tickers per feature chunk (default 250)")
    parser.add_argument(
        "--frames", action="store_true", help="publish: from one frame in memory, as before staging"
    )
    args = parser.parse_args(argv)
    if args.what == "publish":
        emit(publish(args.tickers, args.frames))
    elif args.what == "backtest":
        emit(backtest(args.tickers))
    else:
        emit((retrain if args.what == "retrain" else fold)(args.tickers, args.chunk))


if __name__ == "__main__":
    main()
