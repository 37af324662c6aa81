"""DuckLake warehouses for tests (`warehouse.lake`), and the processes the concurrency test runs.

`new_lake(directory, kind)` writes the settings file of a fresh lake: its catalog in SQLite
(`kind="sqlite"`, a file under `directory`) or in a new database on the test PostgreSQL server
(`kind="postgres"`, `tests.support.postgres.server()`, whose password goes to $PGPASSWORD, where
libpq and so child processes find it), its data files under `directory/data/`.

`requires_ducklake` skips a test outside .venv-ducklake (`make venv-ducklake`): the extensions are
wheels built for DuckDB 1.5.5, and .venv runs DuckDB 2.

    python -m tests.support.lake reader SETTINGS N_TICKERS N_PRICE_TICKERS N_HORIZONS STOP_FILE
    python -m tests.support.lake job SETTINGS CONFIG JOB|assets:A,B START[..END] ...
    python -m tests.support.lake slice-writer SETTINGS WRITER N_TRANSACTIONS
    python -m tests.support.lake slice-reader SETTINGS N_WRITERS STOP_FILE

`reader` queries the lake in a loop until STOP_FILE exists, each round in one snapshot, and prints
a JSON summary: queries, snapshots seen, errors, and anomalies (a forecast session without every
ticker and horizon, a price session without every ticker, a duplicated key, a model without its
artifact). `job` runs a job of `build_defs(CONFIG, SETTINGS)` in process, once per partition range
(START..END) or partition (START), and prints a JSON line per run (with the commits it replayed).
`slice-writer` commits N transactions, each replacing writer WRITER's slices of raw_prices and
forecasts with the next version; `slice-reader` checks that every slice is always one whole version.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import duckdb
import pytest

from warehouse import lake


def available() -> bool:
    try:
        lake._extension("duckdb_extension_ducklake", "ducklake")
        return True
    except lake.LakeError:
        return False


if os.environ.get("FORECAST_REQUIRE_DUCKLAKE") and not available():  # `make test-ducklake`: never skip
    raise RuntimeError(
        f"FORECAST_REQUIRE_DUCKLAKE is set but DuckDB {duckdb.__version__} has no DuckLake extensions"
    )
requires_ducklake = pytest.mark.skipif(
    not available(),
    reason="DuckLake runs in .venv-ducklake (`make venv-ducklake`; extensions built for DuckDB 1.5.5)",
)
KINDS = ("sqlite", "postgres")


def new_lake(directory: Path, kind: str) -> Path:
    """The settings file of a new, empty lake under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        catalog = "sqlite:catalog.sqlite"
    else:
        from tests.support import postgres

        server = postgres.server()
        os.environ["PGPASSWORD"] = server.password
        catalog = f"postgres:{server.libpq(server.create_database('lake'))}"
    return lake.write_settings(directory / "lake.toml", catalog, "data/")


#: Keys of the tables the reader checks for duplicates (DuckLake keeps no primary keys).
KEYS = {
    "raw_prices": "ticker, date",
    "forecasts": "as_of_date, ticker, horizon, model_version",
    "forecast_scores": "as_of_date, ticker, horizon, model_version",
    "models": "model_version",
}


def duplicates(con, table: str) -> int:
    return con.execute(
        f"SELECT count(*) FROM (SELECT {KEYS[table]} FROM {table} GROUP BY ALL HAVING count(*) > 1)"
    ).fetchone()[0]


def reader(settings: str, n_tickers: int, n_price_tickers: int, n_horizons: int, stop: Path) -> dict:
    from warehouse import connect

    queries = rounds = 0
    snapshots: set[int] = set()
    errors: list[str] = []
    anomalies: list[str] = []
    while not stop.exists():
        try:
            with connect(settings, read_only=True) as con:
                con.execute("BEGIN TRANSACTION")  # one snapshot for the whole round
                snapshots.add(con.execute("SELECT id FROM current_snapshot()").fetchone()[0])
                for day, n in con.execute(
                    "SELECT as_of_date, count(*) FROM forecasts GROUP BY ALL HAVING count(*) <> ?",
                    [n_tickers * n_horizons],
                ).fetchall():
                    anomalies.append(f"forecasts {day}: {n} rows")
                for day, n in con.execute(
                    "SELECT date, count(*) FROM raw_prices GROUP BY ALL HAVING count(*) <> ?",
                    [n_price_tickers],
                ).fetchall():
                    anomalies.append(f"raw_prices {day}: {n} tickers")
                latest = con.execute("SELECT count(*) FROM latest_forecasts").fetchone()[0]
                if latest not in (0, n_tickers * n_horizons):
                    anomalies.append(f"latest_forecasts: {latest} rows")
                orphans = con.execute(
                    "SELECT count(*) FROM models ANTI JOIN model_artifacts USING (model_version)"
                ).fetchone()[0]
                if orphans:
                    anomalies.append(f"{orphans} model(s) without an artifact")
                for table in KEYS:
                    if duplicates(con, table):
                        anomalies.append(f"{table}: duplicated keys")
                con.execute("SELECT ticker, max(date) FROM features GROUP BY ALL").fetchall()
                con.execute("COMMIT")
                queries += 6 + len(KEYS)
                rounds += 1
        except Exception as exc:  # noqa: BLE001 - every error is the finding, reported below
            errors.append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.002)
    return {
        "queries": queries,
        "rounds": rounds,
        "snapshots": len(snapshots),
        "errors": errors[:20],
        "n_errors": len(errors),
        "anomalies": anomalies[:20],
        "n_anomalies": len(anomalies),
    }


# --- slice writers (the DuckLake transactions alone, no Dagster) ---------------------------------

SLICE_DATES = [dt.date(2022, 1, 3) + dt.timedelta(days=i) for i in range(20)]
STAMP = dt.datetime(2022, 9, 1, tzinfo=dt.UTC)


def slice_tickers(writer: int) -> list[str]:
    return [f"W{writer}T{i}" for i in range(5)]


def slice_frames(writer: int, version: int):
    """Writer `writer`'s slice at `version`: its tickers' prices and forecasts, every value tagged."""
    import polars as pl

    tickers = slice_tickers(writer)
    rows = [(t, d) for t in tickers for d in SLICE_DATES]
    close = [100.0 + version + i / 100 for i in range(len(rows))]
    prices = pl.DataFrame(
        {
            "ticker": [t for t, _ in rows],
            "date": [d for _, d in rows],
            "close": close,
            "adj_close": close,
            "source": f"v{version}",
            "ingested_at": [STAMP] * len(rows),
        }
    )
    q = [version / 1000] * len(rows)
    forecasts = pl.DataFrame(
        {
            "as_of_date": [d for _, d in rows],
            "ticker": [t for t, _ in rows],
            "horizon": pl.Series([1] * len(rows), dtype=pl.Int32),
            "model_version": f"v{version}",
            "model": "lstm",
            "target_date": [d + dt.timedelta(days=1) for _, d in rows],
            "last_close": close,
            **{c: q for c in ("pred_log_return", "q10", "q50", "q90")},
            **{c: close for c in ("pred_close", "q10_close", "q50_close", "q90_close")},
            "created_at": [STAMP] * len(rows),
        }
    )
    return prices, forecasts


def slice_writer(settings: str, writer: int, transactions: int) -> dict:
    """`transactions` transactions, each replacing this writer's slices of raw_prices and
    forecasts with the next version (1, 2, ...), as one write of a step does."""
    from warehouse import transaction

    retries, errors = 0, []
    t0 = time.monotonic()
    for version in range(1, transactions + 1):
        prices, forecasts = slice_frames(writer, version)
        tickers = slice_tickers(writer)
        try:
            with transaction(settings) as w:
                w.replace("raw_prices", prices, "list_contains(?, ticker)", [tickers])
                w.replace("forecasts", forecasts, "list_contains(?, ticker)", [tickers])
            retries += w.retries
        except Exception as exc:  # noqa: BLE001 - counted and reported
            errors.append(f"{type(exc).__name__}: {exc}")
    return {"writer": writer, "transactions": transactions, "retries": retries, "errors": errors,
            "seconds": round(time.monotonic() - t0, 2)}  # fmt: skip


def slice_reader(settings: str, writers: int, stop: Path) -> dict:
    """Each round, in one snapshot: every writer's slice holds one version in both tables, all of
    its rows (never half a transaction), no key twice."""
    from warehouse import connect

    queries = rounds = 0
    snapshots: set[int] = set()
    errors: list[str] = []
    anomalies: list[str] = []
    per_slice = len(slice_tickers(0)) * len(SLICE_DATES)
    while not stop.exists():
        try:
            with connect(settings, read_only=True) as con:
                con.execute("BEGIN TRANSACTION")
                snapshots.add(con.execute("SELECT id FROM current_snapshot()").fetchone()[0])
                for w in range(writers):
                    tickers = slice_tickers(w)
                    prices = con.execute(
                        "SELECT source, count(*) FROM raw_prices WHERE list_contains(?, ticker) GROUP BY ALL",
                        [tickers],
                    ).fetchall()
                    forecasts = con.execute(
                        "SELECT model_version, count(*) FROM forecasts WHERE list_contains(?, ticker) GROUP BY ALL",
                        [tickers],
                    ).fetchall()
                    if prices or forecasts:  # before the first commit, nothing
                        versions = {p[0][1:] for p in prices} | {f[0][1:] for f in forecasts}
                        counts = {p[1] for p in prices} | {f[1] for f in forecasts}
                        if len(versions) != 1 or counts != {per_slice}:
                            anomalies.append(f"writer {w}: prices {prices}, forecasts {forecasts}")
                    queries += 2
                for table in ("raw_prices", "forecasts"):
                    if duplicates(con, table):
                        anomalies.append(f"{table}: duplicated keys")
                    queries += 1
                con.execute("COMMIT")
                rounds += 1
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.002)
    return {"queries": queries, "rounds": rounds, "snapshots": len(snapshots), "errors": errors[:20],
            "n_errors": len(errors), "anomalies": anomalies[:20], "n_anomalies": len(anomalies)}  # fmt: skip


def run_job(settings: str, config: str, job_name: str, ranges: list[tuple[str, str | None]]) -> None:
    import dagster as dg

    from forecast_assets.definitions import build_defs

    defs = build_defs(config, settings)
    if job_name.startswith("assets:"):  # a backfill of these assets (and their checks) alone
        selection = job_name.removeprefix("assets:").split(",")

        class _Job:
            def execute_in_process(self, **kwargs):
                kwargs.pop("instance")
                return dg.materialize(defs.assets, selection=selection, resources=defs.resources, **kwargs)

        job = _Job()
    else:
        job = defs.resolve_job_def(job_name)
    for start, end in ranges:
        t0, t0_wall = time.monotonic(), time.time()
        if end is None:
            result = job.execute_in_process(partition_key=start, instance=dg.DagsterInstance.ephemeral())
        else:
            tags = {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}
            result = job.execute_in_process(tags=tags, instance=dg.DagsterInstance.ephemeral())
        evaluations = result.get_asset_check_evaluations()
        # Warnings (the freshness check: the sample's sessions are years old) do not count.
        evaluations = [e for e in evaluations if e.severity == dg.AssetCheckSeverity.ERROR]
        checks = [e.passed for e in evaluations]
        line = {"job": job_name, "start": start, "end": end, "success": result.success}
        line |= {"began": t0_wall, "ended": time.time(), "replays": lake.REPLAYS}
        line["failed_checks"] = [
            (e.check_name, {k: str(v)[:300] for k, v in e.metadata.items()})
            for e in evaluations
            if not e.passed
        ]
        line |= {
            "checks_passed": all(checks),
            "n_checks": len(checks),
            "seconds": round(time.monotonic() - t0, 1),
        }
        print(json.dumps(line), flush=True)


def main(argv: list[str]) -> None:
    if argv[0] == "reader":
        settings, n_tickers, n_price, n_horizons, stop = argv[1:6]
        print(json.dumps(reader(settings, int(n_tickers), int(n_price), int(n_horizons), Path(stop))))
    elif argv[0] == "slice-writer":
        print(json.dumps(slice_writer(argv[1], int(argv[2]), int(argv[3]))))
    elif argv[0] == "slice-reader":
        print(json.dumps(slice_reader(argv[1], int(argv[2]), Path(argv[3]))))
    elif argv[0] == "job":
        settings, config, job_name, *bounds = argv[1:]
        ranges: list[tuple[str, str | None]] = []
        for item in bounds:
            start, _, end = item.partition("..")
            dt.date.fromisoformat(start)
            ranges.append((start, end or None))
        run_job(settings, config, job_name, ranges)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
