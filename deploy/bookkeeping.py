"""What Dagster's own bookkeeping costs per partition, on PostgreSQL against SQLite.

A range run over N daily partitions records, per partition, a materialization in the event log
(and, unless batched, a planned materialization too), so its cost grows with N even when the asset
does nothing. This times one run of a do-nothing asset (single-run backfill policy, like
raw_prices and daily_forecasts) over N partitions, in process, on four instances:

- `sqlite`: Dagster's stock SQLite storage, events written one by one;
- `sqlite_batched`: the project's storage (`dagster.yaml`: `forecast_assets.instance`), with the
  asset events of a range written in batches (DAGSTER_EVENT_BATCH_SIZE) and one planned event per
  range (DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS);
- `postgres`: the storage block of `deploy/postgres/dagster.yaml`, events one by one;
- `postgres_batched`: the same with those two switches on (as deploy/postgres/dagster.yaml runs,
  since it names `forecast_assets.instance`);

and reports seconds per run and milliseconds per partition (the slope between the smallest and
the largest N).

    python -m deploy.bookkeeping [--partitions 1 100 366] [--repeat 3]

PostgreSQL: the server named by DAGSTER_PG_HOST, _PORT, _USER, _PASSWORD (a database is created on
it and dropped), else a throwaway server (`tests.support.postgres`, as the tests start one).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import yaml

ROOT = Path(__file__).resolve().parents[1]
START = dt.date(2020, 1, 1)
SWITCHES_ON = {"DAGSTER_EVENT_BATCH_SIZE": "1000", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1"}
SWITCHES_OFF = {"DAGSTER_EVENT_BATCH_SIZE": "0", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "0"}
DAYS = dg.DailyPartitionsDefinition(start_date=START.isoformat(), end_date="2030-01-01")


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def bookkeeping_probe(context) -> None:  # (a string annotation is refused by Dagster)
    """Does nothing: what a run over its partitions costs is Dagster's bookkeeping."""
    context.log.info(f"{len(context.partition_keys)} partitions")


def _run(instance: dg.DagsterInstance, n: int) -> float:
    end = START + dt.timedelta(days=n - 1)
    tags = {
        "dagster/asset_partition_range_start": START.isoformat(),
        "dagster/asset_partition_range_end": end.isoformat(),
    }
    t0 = time.perf_counter()
    result = dg.materialize([bookkeeping_probe], instance=instance, tags=tags)
    elapsed = time.perf_counter() - t0
    assert result.success
    return elapsed


def _postgres_block() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "postgres" / "dagster.yaml").read_text())["storage"]


@contextlib.contextmanager
def _postgres_env() -> Iterator[dict[str, str]]:
    """DAGSTER_PG_* of a server with a fresh database (dropped afterwards)."""
    import psycopg2

    stop = None
    if os.environ.get("DAGSTER_PG_HOST"):
        base = {k: os.environ[k] for k in os.environ if k.startswith("DAGSTER_PG_")}
    else:
        from tests.support import postgres

        server, directory = postgres.start()
        stop = lambda: postgres.stop(directory)  # noqa: E731
        base = server.env("postgres")
    conn = dict(
        host=base["DAGSTER_PG_HOST"],
        port=int(base.get("DAGSTER_PG_PORT", 5432)),
        user=base["DAGSTER_PG_USER"],
        password=base.get("DAGSTER_PG_PASSWORD", ""),
    )
    name = f"bookkeeping_{os.getpid()}"
    admin = psycopg2.connect(dbname="postgres", **conn)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        yield {**base, "DAGSTER_PG_DB": name}
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        admin.close()
        if stop:
            stop()


def _instance(home: Path, storage: dict) -> dg.DagsterInstance:
    (home / "dagster.yaml").write_text(yaml.safe_dump({"telemetry": {"enabled": False}, "storage": storage}))
    return dg.DagsterInstance.from_config(str(home))


def measure(partitions: list[int], repeat: int) -> dict:
    results: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, _postgres_env() as pg_env:
        saved = {k: os.environ.get(k) for k in [*pg_env, *SWITCHES_ON]}
        os.environ.update(pg_env)
        try:
            sqlite = {"sqlite": {"base_dir": str(Path(tmp) / "sqlite" / "storage")}}
            batched = {
                "custom": {
                    "module": "forecast_assets.instance",
                    "class": "ForecastSqliteStorage",
                    "config": {"base_dir": str(Path(tmp) / "sqlite_batched" / "storage")},
                }
            }
            configurations = {
                "sqlite": (sqlite, False),
                "sqlite_batched": (batched, True),
                "postgres": (_postgres_block(), False),
                "postgres_batched": (_postgres_block(), True),
            }
            for name, (storage, batch) in configurations.items():
                os.environ.update(SWITCHES_ON if batch else SWITCHES_OFF)
                home = Path(tmp) / name
                home.mkdir()
                with _instance(home, storage) as instance:
                    _run(instance, 1)  # warm: schema, caches, first connection
                    results[name] = {
                        n: statistics.median(_run(instance, n) for _ in range(repeat)) for n in partitions
                    }
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    lo, hi = min(partitions), max(partitions)
    report = {
        "partitions": partitions,
        "repeat": repeat,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    for name, times in results.items():
        report[name] = {
            "seconds_per_run": {str(n): round(t, 3) for n, t in times.items()},
            "ms_per_partition": round(1000 * (times[hi] - times[lo]) / (hi - lo), 2) if hi > lo else None,
        }
    if hi > lo:
        for a, b in (("postgres", "sqlite"), ("postgres_batched", "sqlite_batched")):
            report[f"{a}_over_{b}_per_partition"] = round(
                report[a]["ms_per_partition"] / report[b]["ms_per_partition"], 2
            )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, nargs="+", default=[1, 100, 366])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(sorted(args.partitions), args.repeat), indent=2))


if __name__ == "__main__":
    main()
