"""The nightly run end to end (prices to scores) at N synthetic tickers x 20 years, through the
real assets.

`python -m bench.universe_nightly build N DIR` writes a warehouse in DIR with the prices of every
session but the last NIGHTS (`bench.synthetic`), the held-back sessions to a Parquet file, runs
the `features` asset once (a full, blocked rebuild: `full_s`), then the `lstm_model` asset for the
held-back sessions' retrain month on a cheap training configuration (`TRAIN`: the model's cost is
not a nightly one, `model_s`), and `daily_forecasts` + `forecast_scores` for the sessions before
the nights (so the nights score forecasts that mature). `python -m bench.universe_nightly night N
DIR` then, in a fresh process (its peak memory is the nightly run's), runs what `nightly_job` runs
for each held-back session: stores its prices as the prices asset does (a price vintage), the
`features` asset (incremental: the new session's block), `daily_forecasts` for the session and
`forecast_scores`. Prints JSON: seconds per step and night, rows, the checks that failed, the
process's peak RSS after each step. `python -m bench.universe_nightly verify N DIR` (another fresh
process) checks the nights against full recomputes: the last session's forecasts recomputed from
the whole panel of their price vintage with the serving baseline refitted (`forecasts_reproducible`'s
path: it rebuilds every feature from the prices, about 30 GB at 5,000 tickers, so up to 500) and
every score rebuilt from all forecasts and prices. `python -m bench.universe_nightly check N DIR`
runs the `forecasts_reproducible` asset check on the latest session, as `nightly_job` does after
the forecasts.

`build N DIR baseline` trains with `promotion_tolerance = 0`, so that the gate serves its best
baseline unless the one-epoch LSTM beats it (at 500 tickers gjr_garch serves): the nights then
forecast with the baseline restored from `models.baseline_state`. `build N DIR features` stops
after the features (no model: its nights store prices and run `features` only), what item 6
(`bench.universe`) measures.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

from bench._subprocess import emit

YEARS = 20
NIGHTS = 3
#: Sessions forecast (and scored as they mature) in `build`, before the nights.
WARM_SESSIONS = 10
NOW = dt.datetime(2023, 1, 3, tzinfo=dt.UTC)
#: The retrain's training settings: one short epoch (the model's quality is not measured here).
TRAIN = "[train]\nmax_epochs = 1\nsteps_per_epoch = 5\nwarmup_steps = 1\n"


def _config(n_tickers: int, folder: Path, serving: str | None = None) -> str:
    """The bench's TOML: the synthetic universe, `TRAIN`, and `promotion_tolerance`: 10, so that
    the LSTM serves (`serving` None), or 0 ("baseline"), so that it serves only if it beats every
    baseline on validation."""
    from bench.synthetic import config_for

    cfg = config_for(n_tickers)
    path = folder / "config.toml"
    tickers = ", ".join(json.dumps(t) for t in cfg.universe.tickers)
    exogenous = ", ".join(json.dumps(t) for t in cfg.universe.exogenous)
    # A tolerance of 10 lets even a one-epoch LSTM serve; 0 serves it only if it beats every baseline.
    tolerance = 10.0 if serving is None else 0.0
    path.write_text(
        f"promotion_tolerance = {tolerance}\n[universe]\ntickers = [{tickers}]\nexogenous = [{exogenous}]\n"
        + TRAIN
    )
    return str(path)


def _resources(folder: Path, config: str) -> dict:
    from forecast_assets.resources import PipelineConfig, WarehouseResource

    return {
        "warehouse": WarehouseResource(path=str(folder / "w.duckdb")),
        "pipeline": PipelineConfig(config_file=config),
    }


def _partitioned(config: str):
    """The `daily_forecasts` and `lstm_model` assets on the configuration's partitions (as
    `build_defs` makes them)."""
    from forecast_assets.assets.forecasts import daily_forecasts_asset
    from forecast_assets.assets.model import lstm_model_asset
    from forecast_assets.definitions import source_last_date
    from forecast_assets.partitions import retrain_partitions, trading_day_partitions
    from forecast_core.config import load_config

    cfg = load_config(config)
    end = source_last_date(cfg)
    return (
        daily_forecasts_asset(trading_day_partitions(cfg.source.start_date, cfg.calendar, end)),
        lstm_model_asset(retrain_partitions(cfg.source.start_date, cfg.calendar, end)),
    )


def _meta(result) -> dict:
    return {k: getattr(v, "value", v) for k, v in (result.metadata or {}).items()}


def _run_model(folder: Path, config: str, period_start: dt.date) -> dict:
    import dagster as dg

    _, model = _partitioned(config)
    result = model(
        dg.build_asset_context(partition_key=period_start.isoformat()), **_resources(folder, config)
    )
    return _meta(result)


def _run_forecasts(folder: Path, config: str, first: dt.date, last: dt.date) -> tuple[int, list[str]]:
    """`daily_forecasts` for the sessions first..last (one partition, or a range run), in process
    through `dg.materialize` (a directly invoked context cannot record the per-partition metadata
    the asset writes): the rows stored and the checks that failed (a blocking check that fails,
    such as `complete_forecasts` where a ticker's features are not all finite on a session, fails
    the run after the forecasts are stored). Raises if the forecasts were not stored."""
    import dagster as dg

    from warehouse import read_sql

    forecasts, _ = _partitioned(config)
    tags = (
        None
        if first == last
        else {
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        }
    )
    result = dg.materialize(
        [forecasts],
        resources=_resources(folder, config),
        partition_key=first.isoformat() if first == last else None,
        tags=tags,
        instance=_instance(),
        raise_on_error=False,
    )
    if not result.asset_materializations_for_node("daily_forecasts"):
        raise RuntimeError(f"daily_forecasts {first}..{last} failed: {result.get_step_failure_events()}")
    failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    rows = read_sql(
        "SELECT count(*) AS n FROM forecasts WHERE as_of_date BETWEEN ? AND ?",
        [first, last],
        folder / "w.duckdb",
    )
    return int(rows["n"][0]), failed


_INSTANCE = []


def _instance():
    """One ephemeral Dagster instance per process (as a run's process has one)."""
    import dagster as dg

    if not _INSTANCE:
        _INSTANCE.append(dg.DagsterInstance.ephemeral())
    return _INSTANCE[0]


def _run_scores(folder: Path, config: str) -> dict:
    import dagster as dg

    from forecast_assets.assets.forecasts import forecast_scores

    return _meta(forecast_scores(dg.build_asset_context(), **_resources(folder, config)))


def _run_features(folder: Path, config: str) -> dict:
    import dagster as dg

    from forecast_assets.assets.features import features

    return _meta(features(dg.build_asset_context(), **_resources(folder, config)))


def build(n_tickers: int, folder: Path, serving: str | None = None) -> dict:
    import polars as pl

    from bench.synthetic import synthetic_prices
    from warehouse import transaction

    prices = synthetic_prices(n_tickers, YEARS).with_columns(
        pl.lit(NOW, pl.Datetime("us", "UTC")).alias("ingested_at")
    )
    days = prices["date"].unique().sort().to_list()
    held = days[-NIGHTS:]
    prices.filter(pl.col("date") >= held[0]).write_parquet(folder / "nights.parquet")
    t = time.perf_counter()
    with transaction(folder / "w.duckdb") as w:
        w.replace("raw_prices", prices.filter(pl.col("date") < held[0]), "TRUE")
    store_s = time.perf_counter() - t
    del prices
    config = _config(n_tickers, folder, serving)
    t = time.perf_counter()
    meta = _run_features(folder, config)
    full_s = time.perf_counter() - t
    out = {
        "tickers": n_tickers,
        "years": YEARS,
        "store_prices_s": round(store_s, 2),
        "full_s": round(full_s, 2),
        "full_mode": meta["mode"],
        "full_feature_rows": meta["dagster/row_count"],
    }
    if serving == "features":
        return {**out, "warehouse_mb": round((folder / "w.duckdb").stat().st_size / 2**20, 1)}
    t = time.perf_counter()
    model = _run_model(folder, config, held[0].replace(day=1))
    model_s = time.perf_counter() - t
    warm = [d for d in days[:-NIGHTS] if d >= held[0].replace(day=1)][-WARM_SESSIONS:]
    t = time.perf_counter()
    warm_rows, warm_failed = _run_forecasts(folder, config, warm[0], warm[-1]) if warm else (0, [])
    warm_s = time.perf_counter() - t
    t = time.perf_counter()
    scores = _run_scores(folder, config)
    return {
        **out,
        "model_s": round(model_s, 2),
        "serving_model": model["serving_model"],
        "model_version": model["model_version"],
        "warm_sessions": len(warm),
        "warm_forecast_rows": warm_rows,
        "warm_forecasts_s": round(warm_s, 2),
        "warm_checks_failed": warm_failed,
        "warm_scores_s": round(time.perf_counter() - t, 2),
        "warm_scored_rows": scores["scored_rows"],
        "warehouse_mb": round((folder / "w.duckdb").stat().st_size / 2**20, 1),
    }


def night(n_tickers: int, folder: Path) -> dict:
    import polars as pl

    from bench._subprocess import peak_rss_mb
    from warehouse import read_sql, transaction

    nights = pl.read_parquet(folder / "nights.parquet")
    config = str(folder / "config.toml")
    # A `build ... features` warehouse has no model: its nights store prices and run `features` only.
    forecast = bool(read_sql("SELECT count(*) AS n FROM models", [], folder / "w.duckdb")["n"][0])
    out: list[dict] = []
    for day in nights["date"].unique().sort().to_list():
        start = time.perf_counter()
        t = start
        with transaction(folder / "w.duckdb") as w:
            w.store_prices(nights.filter(pl.col("date") == day), "date = ?", [day], "synthetic", NOW)
        store_s, store_mb = time.perf_counter() - t, peak_rss_mb()
        t = time.perf_counter()
        meta = _run_features(folder, config)
        features_s, features_mb = time.perf_counter() - t, peak_rss_mb()
        t = time.perf_counter()
        forecast_rows, failed = _run_forecasts(folder, config, day, day) if forecast else (0, [])
        forecasts_s, forecasts_mb = time.perf_counter() - t, peak_rss_mb()
        t = time.perf_counter()
        scores = _run_scores(folder, config) if forecast else {"scored_rows": 0}
        scores_s = time.perf_counter() - t
        out.append(
            {
                "day": str(day),
                "store_s": round(store_s, 3),
                "features_s": round(features_s, 3),
                "forecasts_s": round(forecasts_s, 3),
                "scores_s": round(scores_s, 3),
                "night_s": round(time.perf_counter() - start, 3),
                # The process's peak RSS so far after each step (the step that raised it shows).
                "peak_mb_after": {
                    "store": store_mb,
                    "features": features_mb,
                    "forecasts": forecasts_mb,
                    "scores": peak_rss_mb(),
                },
                "mode": meta["mode"],
                "tickers": meta["tickers_recomputed"],
                "feature_rows": meta["dagster/row_count"],
                "target_rows": meta["target_rows"],
                "forecast_rows": forecast_rows,
                "checks_failed": failed,
                "scores_mode": scores.get("mode"),
                "scores_written": scores.get("rows_written"),
                "scored_rows": scores["scored_rows"],
            }
        )

    def median_max(key: str) -> tuple[float, float]:
        times = sorted(n[key] for n in out)
        return times[len(times) // 2], times[-1]

    summary = {"tickers": n_tickers, "nights": out}
    for key in ("features_s", "forecasts_s", "scores_s", "night_s"):
        summary[f"{key}_median"], summary[f"{key}_max"] = median_max(key)
    return summary


def verify(n_tickers: int, folder: Path) -> dict:
    """The nights against full recomputes: the last session's forecasts recomputed from the whole
    panel of their price vintage (`checks.recompute_forecasts`), and the scores rebuilt from every
    forecast and price (`score_forecasts`), compared bit for bit (`scored_at` aside)."""
    from polars.testing import assert_frame_equal

    from forecast_assets.checks import forecast_differences, recompute_forecasts
    from forecast_core.config import load_config
    from forecast_core.serving.forecasts import score_forecasts
    from warehouse import read_table, reads

    path, cfg = str(folder / "w.duckdb"), load_config(str(folder / "config.toml"))
    stored = read_table("forecasts", "as_of_date = (SELECT max(as_of_date) FROM forecasts)", [], path)
    day, version = stored["as_of_date"][0], stored["model_version"][0]
    t = time.perf_counter()
    recomputed = recompute_forecasts(path, cfg, day, version, int(stored["prices_vintage"][0]))
    recompute_s = time.perf_counter() - t
    different, worst = forecast_differences(stored, recomputed)
    t = time.perf_counter()
    full = score_forecasts(read_table("forecasts", path=path), reads.prices(path), cfg.quantiles, NOW)
    full_scores_s = time.perf_counter() - t
    scores = read_table("forecast_scores", path=path, order_by="as_of_date, ticker, horizon, model_version")
    key = ["as_of_date", "ticker", "horizon", "model_version"]
    assert_frame_equal(scores.drop("scored_at").sort(key), full.drop("scored_at").sort(key), check_exact=True)
    if different:
        raise AssertionError(
            f"{len(different)} forecast rows of {day} differ from a full recompute: {different[:5]}"
        )
    return {
        "tickers": n_tickers,
        "day": str(day),
        "forecast_rows": stored.height,
        "forecasts_identical": True,
        "max_abs_difference": worst,
        "scores_identical": True,
        "scores": scores.height,
        "full_recompute_s": round(recompute_s, 2),
        "full_scores_s": round(full_scores_s, 2),
    }


def check(n_tickers: int, folder: Path) -> dict:
    """The `forecasts_reproducible` asset check on the latest session, as `nightly_job` runs it
    after `daily_forecasts` (a sample of tickers where the LSTM served them all)."""
    from forecast_assets.checks import forecasts_reproducible

    t = time.perf_counter()
    result = forecasts_reproducible(**_resources(folder, str(folder / "config.toml")))
    meta = {k: getattr(v, "value", v) for k, v in result.metadata.items()}
    keys = (
        "as_of_date",
        "rows",
        "tickers_checked",
        "tickers_forecast",
        "different_rows",
        "max_abs_difference",
    )
    return {
        "tickers": n_tickers,
        "passed": result.passed,
        **{k: meta[k] for k in keys},
        "check_s": round(time.perf_counter() - t, 2),
    }


if __name__ == "__main__":
    what, n, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    if what == "build":
        emit(build(n, folder, sys.argv[4] if len(sys.argv) > 4 else None))
    else:
        emit({"night": night, "verify": verify, "check": check}[what](n, folder))
