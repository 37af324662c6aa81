"""Item 4: the whole pipeline on the sample, and a nightly incremental run.

- Cold run: `make demo` writes `bench/results/demo_timings.json` (wall seconds per job, peak RSS);
  the suite reads it rather than running the demo again (`python -m bench --run-demo` runs it).
- Nightly incremental: the `nightly_job` of the definitions (raw_prices and its checks, features,
  daily_forecasts, forecast_scores) for one new session whose month's model is already trained,
  executed in-process (no process start) on a copy of the warehouse; per-step times come from
  Dagster's event log (step start to step success). The copy is the demo's warehouse
  ($FORECAST_WAREHOUSE, else warehouse/forecast.duckdb) with the sample's last session removed,
  or, without one, a warehouse built here first (prices up to the day before, features, folds,
  and the month's model) with the setup time reported apart.

`python -m bench.pipeline setup DIR DAY` and `python -m bench.pipeline nightly DIR DAY` are the
two subprocesses (each prints one JSON line), so that peak memory is the nightly run's own.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench._subprocess import ROOT, emit, run_item

DEMO_TIMINGS = ROOT / "bench" / "results" / "demo_timings.json"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def demo_timings() -> dict | None:
    return json.loads(DEMO_TIMINGS.read_text()) if DEMO_TIMINGS.is_file() else None


def _env(workdir: Path) -> dict[str, str]:
    return {"FORECAST_WAREHOUSE": str(workdir / "forecast.duckdb"), "DAGSTER_HOME": str(workdir)}


def _step_seconds(instance, run_id: str) -> dict[str, float]:
    """Seconds from STEP_START to STEP_SUCCESS per step, from the run's event log."""
    starts, out = {}, {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in starts:
            out[event.step_key] = round(entry.timestamp - starts[event.step_key], 2)
    return out


def _execute(job_name: str, *, partition_key: str | None = None, tags: dict | None = None) -> dict:
    import dagster as dg

    from forecast_assets.definitions import defs

    job = defs.resolve_job_def(job_name)
    with dg.DagsterInstance.ephemeral() as instance:
        started = time.perf_counter()
        result = job.execute_in_process(instance=instance, partition_key=partition_key, tags=tags)
        wall = time.perf_counter() - started
        if not result.success:
            raise RuntimeError(f"{job_name} failed")
        return {"wall_s": round(wall, 2), "steps_s": _step_seconds(instance, result.run_id)}


def setup(day: dt.date) -> dict:
    """A warehouse that knows every session before `day` and has the model of `day`'s month."""
    from forecast_core.config import load_config
    from forecast_core.data import calendar

    cfg = load_config(os.environ.get("FORECAST_CONFIG"))
    previous = calendar.previous_session(day, cfg.calendar)
    ingest = _execute("ingest_job", tags={RANGE_START: cfg.source.start_date, RANGE_END: str(previous)})
    model = _execute("retrain_job", partition_key=day.replace(day=1).isoformat())
    return {"ingest_wall_s": ingest["wall_s"], "retrain_wall_s": model["wall_s"]}


def nightly(day: dt.date) -> dict:
    import jax

    jax.config.update("jax_compilation_cache_dir", str(ROOT / ".jax_cache"))
    run = _execute("nightly_job", partition_key=day.isoformat())
    return {"day": str(day), **run}


def _last_sample_session() -> dt.date:
    from forecast_core.sources import SampleSource

    return SampleSource().last_date()


def measure(log=print) -> dict:
    """Demo timings (if present) and the nightly incremental run."""
    import duckdb

    from warehouse import warehouse_path

    day = _last_sample_session()
    record: dict = {"demo": demo_timings()}
    demo_warehouse = (ROOT / warehouse_path()).resolve()  # $FORECAST_WAREHOUSE or the default
    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as tmp:
        work = Path(tmp)
        shutil.copy(ROOT / "dagster.yaml", work / "dagster.yaml")
        if demo_warehouse.is_file():
            shutil.copy(demo_warehouse, work / "forecast.duckdb")
            with duckdb.connect(str(work / "forecast.duckdb")) as con:
                for table, column in (("raw_prices", "date"), ("forecasts", "as_of_date"),
                                      ("forecast_scores", "as_of_date")):  # fmt: skip
                    con.execute(f"DELETE FROM {table} WHERE {column} >= ?", [day])
            record["warehouse"] = "copy of the demo warehouse, last session removed"
        else:
            log("  no demo warehouse: building prices, features and the month's model first")
            record["setup"] = run_item("bench.pipeline", "setup", str(work), str(day), env=_env(work))
            record["warehouse"] = "built by the bench (prices, features, folds, model of the month)"
        record["nightly"] = run_item("bench.pipeline", "nightly", str(work), str(day), env=_env(work))
    steps = record["nightly"]["steps_s"]
    record["nightly"]["slowest_step_s"] = max(steps.values()) if steps else None
    return record


if __name__ == "__main__":
    command, workdir, day_text = sys.argv[1], Path(sys.argv[2]), dt.date.fromisoformat(sys.argv[3])
    os.chdir(ROOT)
    emit(setup(day_text) if command == "setup" else nightly(day_text))
