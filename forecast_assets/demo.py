"""Run the whole pipeline on the configured source (the embedded sample by default).

    python -m forecast_assets.demo [--sessions 20] [--verbose]

Loads the code location of workspace.yaml (as `dagster dev` does) and launches its jobs the way
the UI and the daemon launch them, on the instance in $DAGSTER_HOME, so every run is listed under
the code location's jobs in the UI (`make ui`): prices, features and folds for the source's whole
history (one run, one download, every session a partition); then, two runs at a time (the
instance's limit), the walk-forward evaluation (folds in parallel processes) beside the models of
the retrain months covering the last `--sessions` sessions and their forecasts and scores; last,
the strategy backtest and the forecasts' explanations. Each step says what it does as it goes;
Dagster's own output goes to a log file (`--verbose`: to the terminal). Ends with the timings,
the leaderboard and a query to try; a failed run ends it with the reason first.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
TIMINGS = Path("bench/results/demo_timings.json")
#: Run config of every demo run: its steps run in the run worker (one process per run: on two
#: cores a process per step spent more time importing jax and the definitions than training), and
#: two runs go at a time (the evaluation beside the models), which keeps both cores training.
#: Quiet console logs (the event log keeps everything; the UI shows it).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
IN_PROCESS = {**QUIET, "execution": {"config": {"in_process": {}}}}


class Say:
    """Progress lines on the terminal, stamped with the seconds since the demo started."""

    def __init__(self, stream, started: float):
        self.stream = stream
        self.started = started
        self.log_file: Path | None = None  # where Dagster's own output goes (None: the terminal)

    def __call__(self, text: str) -> None:
        self.stream.write(f"[{time.monotonic() - self.started:4.0f}s] {text}\n")
        self.stream.flush()

    def plain(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def _quiet_output(log_file: Path):
    """Send this process's stdout/stderr (and every child's: the code server, run workers, step
    processes) to `log_file`; return a stream on the original stdout for the progress lines."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    terminal = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, sys.stdout.fileno())
    os.dup2(fd, sys.stderr.fileno())
    os.close(fd)
    return terminal


def main(argv: list[str] | None = None) -> None:
    started = time.monotonic()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=20, help="forecast the last N sessions (default 20)")
    parser.add_argument("--verbose", action="store_true", help="Dagster's own logs on the terminal too")
    args = parser.parse_args(argv)
    os.environ.setdefault("DAGSTER_HOME", str(Path.cwd()))
    home = Path(os.environ["DAGSTER_HOME"])
    log_file = home / ".dagster_home" / "logs" / f"demo-{dt.datetime.now():%Y%m%d-%H%M%S}.log"
    config = os.environ.get("FORECAST_CONFIG")
    say = Say(sys.stdout, started)
    say(
        f"Stock forecasting demo: configuration {config or 'defaults (embedded sample)'}, "
        f"Dagster instance in {home}"
    )
    if not args.verbose:
        say.stream = _quiet_output(log_file)
        say.log_file = log_file
        say(f"Dagster's own log (code server, run workers): {log_file}")
    try:
        code = run_demo(args, say, started)
    except KeyboardInterrupt:
        say("interrupted")
        code = 130
    except Exception as exc:  # noqa: BLE001 - the terminal gets the reason, the log the traceback
        import traceback

        traceback.print_exc()  # to the log file
        say.plain(f"\nFAILED: {type(exc).__name__}: {exc}")
        if say.log_file:
            say.plain(f"  the traceback is in {say.log_file}")
        code = 1
    sys.exit(code)


def run_demo(args, say: Say, started: float) -> int:
    say("loading the pipeline (dagster, jax, polars) ...")
    import dagster as dg

    from forecast_assets.launch import LaunchError, RunProgress, code_location, poll
    from forecast_core.config import load_config
    from forecast_core.data import calendar
    from forecast_core.errors import ForecastError
    from forecast_core.sources import make_source
    from warehouse import warehouse_path

    try:
        cfg = load_config(os.environ.get("FORECAST_CONFIG"))
        start = dt.date.fromisoformat(cfg.source.start_date)
        last = _last_available_session(cfg, make_source, calendar)
    except ForecastError as exc:
        say(f"FAILED before any run: {exc}")
        return 1
    days = calendar.sessions(start, last, cfg.calendar)
    forecast_days = days[-args.sessions :]
    months = sorted({d.replace(day=1) for d in forecast_days})
    path = warehouse_path()
    tickers = len(cfg.universe.all_tickers)
    say(
        f"source {cfg.source.kind}: {tickers} tickers, {len(days):,} sessions {days[0]}..{days[-1]}; "
        f"warehouse {path.resolve()}"
    )
    timings: dict[str, float] = {}
    with dg.DagsterInstance.get() as instance:
        say("starting the code location of workspace.yaml (a code server, as `dagster dev` does) ...")
        try:
            location = code_location(instance)
            launcher = location.__enter__()
        except LaunchError as exc:
            say(f"FAILED: {exc}")
            return 1
        try:
            say(f"code location {launcher.location_name} loaded")
            fc = {RANGE_START: str(forecast_days[0]), RANGE_END: str(forecast_days[-1])}
            stages = [
                [
                    [
                        (
                            "ingest",
                            "ingest_job",
                            {RANGE_START: str(days[0]), RANGE_END: str(days[-1])},
                            IN_PROCESS,
                            f"prices of {tickers} tickers for {len(days):,} sessions, features, folds",
                        )
                    ]
                ],
                [
                    [
                        (
                            "evaluation",
                            "evaluation_job",
                            {},
                            IN_PROCESS,
                            f"walk-forward evaluation, {cfg.folds.n_folds} folds",
                        )
                    ],
                    [
                        *[
                            (
                                f"model {m:%Y-%m}",
                                "retrain_job",
                                {"dagster/partition": m.isoformat()},
                                IN_PROCESS,
                                f"the production LSTM of {m:%Y-%m} (data up to {m - dt.timedelta(days=1)})",
                            )
                            for m in months
                        ],
                        (
                            "forecasts",
                            "forecast_job",
                            fc,
                            IN_PROCESS,
                            f"forecasts for {len(forecast_days)} sessions "
                            f"{forecast_days[0]}..{forecast_days[-1]} and their scores",
                        ),
                    ],
                ],
                [
                    [
                        (
                            "decision",
                            "decision_job",
                            fc,
                            IN_PROCESS,
                            "strategy backtest and forecast explanations",
                        )
                    ]
                ],
            ]
            total_runs = sum(len(lane) for stage in stages for lane in stage)
            number = 0
            active: dict[int, tuple[str, RunProgress, float]] = {}
            pipeline_started = time.monotonic()
            for stage in stages:
                lanes = [list(lane) for lane in stage]
                while any(lanes) or active:
                    for i, lane in enumerate(lanes):
                        if i not in active and lane:
                            label, job, tags, run_config, what = lane.pop(0)
                            number += 1
                            run_id = launcher.launch(job, tags, run_config)
                            say(f"{number}/{total_runs} {label}: {what} ({job}, run {run_id[:8]})")
                            active[i] = (label, RunProgress(run_id), time.monotonic())
                    for i, (label, progress, t0) in list(active.items()):
                        if not poll(instance, progress, say, label=label):
                            continue
                        del active[i]
                        timings[label] = time.monotonic() - t0
                        if progress.status != dg.DagsterRunStatus.SUCCESS:
                            return _failed(say, label, progress, instance)
                        say(f"{label}: succeeded in {timings[label]:.0f}s{_recorded(progress)}")
                    time.sleep(0.5)
            wall = time.monotonic() - pipeline_started
        except BaseException:
            # Interrupted or broken: stop the runs still going (they are the code server's
            # subprocesses and would outlive the demo), then let the exception through.
            for _, progress, _ in active.values():
                say(f"terminating run {progress.run_id[:8]}")
                instance.run_launcher.terminate(progress.run_id)
            raise
        finally:
            location.__exit__(None, None, None)
    write_timings(timings, wall, time.monotonic() - started, say, os.environ.get("FORECAST_CONFIG"))
    print_summary(path, say)
    return 0


def _recorded(progress) -> str:
    counts = progress.materializations
    if not counts:
        return ""
    parts = [f"{asset} x{n:,}" if n > 1 else asset for asset, n in counts.items()]
    return "; materialized " + ", ".join(parts)


def _failed(say: Say, label: str, progress, instance) -> int:
    reason = progress.reason
    where = str(say.log_file) if say.log_file else "above"
    if reason is None:  # the run failed outside a step (it could not start, or was canceled)
        reason = f"run ended {progress.status.value if progress.status else 'unknown'}"
        failure = [
            r.event_log_entry.dagster_event.message
            for r in instance.get_records_for_run(progress.run_id).records
            if r.event_log_entry.dagster_event and r.event_log_entry.dagster_event.is_failure
        ]
        if failure:
            reason += f": {failure[-1]}"
    step = progress.failures[0][0] if progress.failures else None
    say.plain()
    say.plain(f"FAILED: {reason}")
    say.plain(
        f"  in {label}" + (f", step {step}" if step else "") + f" (run {progress.run_id}); "
        f"Dagster's full log: {where}; the run's events: `make ui`, Runs."
    )
    return 1


def _last_available_session(cfg, make_source, calendar) -> dt.date:
    source = make_source(cfg)
    if hasattr(source, "last_date"):  # sample and file sources
        return source.last_date()
    return calendar.previous_session(dt.date.today(), cfg.calendar)


def write_timings(
    timings: dict[str, float], pipeline_s: float, demo_s: float, say: Say, config: str | None
) -> None:
    """Wall seconds per run, the pipeline's wall time (runs overlap, so it is less than their sum),
    and peak memory: to bench/results/demo_timings.json for the default configuration (the
    published numbers), to bench/results/demo_timings.<config name>.json for another."""
    import json
    import platform
    import resource

    import jax

    out = TIMINGS if not config else TIMINGS.with_name(f"demo_timings.{Path(config).stem}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    peak_kb = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    record = {
        "steps_s": {k: round(v, 1) for k, v in timings.items()},
        "total_s": round(pipeline_s, 1),
        "demo_wall_s": round(demo_s, 1),
        "runs_at_once": 2,
        "config": config or "defaults",
        "peak_rss_mb": round(peak_kb / 1024),
        # getrusage sees this process and the code server, not the run workers (the code server's
        # children), where the training happens.
        "peak_rss_scope": "demo process and code server (run workers not included)",
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "jax_backend": jax.default_backend(),
        "date": dt.date.today().isoformat(),
    }
    out.write_text(json.dumps(record, indent=2))
    say.plain()
    say.plain(
        "Timings (s, wall per run; two at a time): "
        + ", ".join(f"{k} {v:.0f}" for k, v in record["steps_s"].items())
        + f"; pipeline {record['total_s']:.0f}, demo {record['demo_wall_s']:.0f} ({out})"
    )


def print_summary(path: Path, say: Say) -> None:
    import polars as pl

    from warehouse import read_sql
    from warehouse.replica import replica_path

    pl.Config.set_tbl_cols(12)
    pl.Config.set_tbl_width_chars(160)
    pl.Config.set_tbl_hide_dataframe_shape(True)
    pl.Config.set_float_precision(5)
    board = read_sql(
        "SELECT model, horizon, pinball, pinball_skill_vs_zero_return AS skill, coverage_80, rmse, "
        "directional_accuracy AS dir_acc, dm_pvalue_min FROM model_leaderboard ORDER BY horizon, pinball"
    )
    say.plain("\nLeaderboard (test slices of every fold; skill = 1 - pinball / zero_return's):")
    say.plain(str(board))
    scores = read_sql(
        "SELECT horizon, count(*) AS scored, avg(covered_80::INT) AS coverage_80, avg(pinball) AS pinball "
        "FROM forecast_scores GROUP BY horizon ORDER BY horizon"
    )
    say.plain("\nScored daily forecasts:")
    say.plain(str(scores))
    replica = replica_path(path)
    say.plain(
        f"\nWarehouse: {path.resolve()}\nRead replica for queries (safe while the job runs): {replica.absolute()}"
    )
    say.plain(
        "Try:\n  .venv/bin/python -c \"import duckdb; print(duckdb.connect('"
        + str(replica)
        + "', read_only=True)"
        ".sql('SELECT ticker, horizon, as_of_date, target_date, q10_close, q50_close, q90_close "
        "FROM latest_forecasts ORDER BY ticker, horizon'))\""
    )
    say.plain(
        "The runs, their partitions and metadata: `make ui`, then http://127.0.0.1:3000 (Overview, Jobs, Runs)."
    )


if __name__ == "__main__":
    main()
