"""Run the whole pipeline on the configured source (the embedded sample by default).

    python -m forecast_assets.demo [--sessions 20]

Materializes, through Dagster on the instance in $DAGSTER_HOME (so every run shows in the UI):
prices, features and folds for the source's whole history (one run, one download); the
walk-forward evaluation (folds in parallel processes); the models of the retrain months covering
the last `--sessions` sessions; their forecasts; the scores of those that matured; the strategy
backtest and the forecasts' explanations. Ends by
printing the warehouse path, the leaderboard and a query to try.
"""

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl

from forecast_core.config import load_config
from forecast_core.data import calendar
from forecast_core.sources import make_source
from warehouse import read_sql, warehouse_path
from warehouse.replica import replica_path

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _job(name: str) -> dg.JobDefinition:
    from forecast_assets.definitions import defs

    return defs.resolve_job_def(name)


def ingest_job() -> dg.JobDefinition:
    return _job("ingest_job")


def evaluation_job() -> dg.JobDefinition:
    return _job("evaluation_job")


def retrain_job() -> dg.JobDefinition:
    return _job("retrain_job")


def forecast_job() -> dg.JobDefinition:
    return _job("forecast_job")


def decision_job() -> dg.JobDefinition:
    return _job("decision_job")


def run(job_fn, instance: dg.DagsterInstance, tags: dict[str, str], label: str) -> float:
    """Execute a job (multiprocess executor) and fail loudly if it did not succeed."""
    started = time.perf_counter()
    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    with dg.execute_job(dg.reconstructable(job_fn), instance=instance, tags=tags, run_config=quiet) as result:
        if not result.success:
            failures = [e.message for e in result.all_events if e.is_failure]
            sys.exit(f"{label} failed:\n" + "\n".join(failures[-5:]))
    seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.1f}s", flush=True)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=20, help="forecast the last N sessions (default 20)")
    args = parser.parse_args(argv)
    os.environ.setdefault("DAGSTER_HOME", str(Path.cwd()))
    cfg = load_config(os.environ.get("FORECAST_CONFIG"))
    start = dt.date.fromisoformat(cfg.source.start_date)
    # The last session the source has (the sample ends on 2022-12-28; yfinance: the last close).
    last = _last_available_session(cfg)
    days = calendar.sessions(start, last, cfg.calendar)
    forecast_days = days[-args.sessions :]
    months = sorted({d.replace(day=1) for d in forecast_days})
    path = warehouse_path()
    print(f"warehouse: {path.resolve()}\nsource: {cfg.source.kind}, {days[0]}..{days[-1]}", flush=True)
    timings = {}
    with dg.DagsterInstance.get() as instance:
        timings["ingest"] = run(
            ingest_job,
            instance,
            {RANGE_START: str(days[0]), RANGE_END: str(days[-1])},
            "prices, features, folds",
        )
        timings["evaluation"] = run(evaluation_job, instance, {}, "walk-forward evaluation")
        for month in months:
            timings[f"model {month:%Y-%m}"] = run(
                retrain_job, instance, {"dagster/partition": month.isoformat()}, f"model {month:%Y-%m}"
            )
        timings["forecasts"] = run(
            forecast_job,
            instance,
            {RANGE_START: str(forecast_days[0]), RANGE_END: str(forecast_days[-1])},
            "forecasts and scores",
        )
        timings["decision"] = run(
            decision_job,
            instance,
            {RANGE_START: str(forecast_days[0]), RANGE_END: str(forecast_days[-1])},
            "backtest and explanations",
        )
    write_timings(timings)
    print_summary(path)


def write_timings(timings: dict[str, float]) -> None:
    """Wall seconds per step, total, and peak memory, to bench/results/demo_timings.json."""
    import json
    import platform
    import resource

    import jax

    out = Path("bench/results/demo_timings.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    peak_kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    record = {
        "steps_s": {k: round(v, 1) for k, v in timings.items()},
        "total_s": round(sum(timings.values()), 1),
        "peak_rss_mb": round(peak_kb / 1024),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "jax_backend": jax.default_backend(),
        "date": dt.date.today().isoformat(),
    }
    out.write_text(json.dumps(record, indent=2))
    print(
        "\nTimings (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in record["steps_s"].items())
        + f"; total {record['total_s']:.0f}; peak RSS {record['peak_rss_mb']} MB"
    )


def _last_available_session(cfg) -> dt.date:
    source = make_source(cfg)
    if hasattr(source, "last_date"):  # sample and file sources
        return source.last_date()
    return calendar.previous_session(dt.date.today(), cfg.calendar)


def print_summary(path: Path) -> None:
    pl.Config.set_tbl_cols(12)
    pl.Config.set_tbl_width_chars(160)
    pl.Config.set_tbl_hide_dataframe_shape(True)
    pl.Config.set_float_precision(5)
    board = read_sql(
        "SELECT model, horizon, pinball, pinball_skill_vs_zero_return AS skill, coverage_80, rmse, "
        "directional_accuracy AS dir_acc, dm_pvalue_min FROM model_leaderboard ORDER BY horizon, pinball"
    )
    print("\nLeaderboard (test slices of every fold; skill = 1 - pinball / zero_return's):")
    print(board)
    scores = read_sql(
        "SELECT horizon, count(*) AS scored, avg(covered_80::INT) AS coverage_80, avg(pinball) AS pinball "
        "FROM forecast_scores GROUP BY horizon ORDER BY horizon"
    )
    print("\nScored daily forecasts:")
    print(scores)
    replica = replica_path(path)
    print(
        f"\nWarehouse: {path.resolve()}\nRead replica for queries (safe while the job runs): {replica.resolve()}"
    )
    print(
        "Try:\n  .venv/bin/python -c \"import duckdb; print(duckdb.connect('"
        + str(replica)
        + "', read_only=True)"
        ".sql('SELECT ticker, horizon, as_of_date, target_date, q10_close, q50_close, q90_close "
        "FROM latest_forecasts ORDER BY ticker, horizon'))\""
    )


if __name__ == "__main__":
    main()
