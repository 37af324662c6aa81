"""Warehouse maintenance: small files merged, old snapshots expired, unreferenced files deleted.

On DuckLake (`warehouse.lake`) every commit adds Parquet files (a partition's rows, a delete file
for the rows it replaced) or inlines a few rows in the catalog, and keeps the previous snapshot
readable; without maintenance the data directory grows by many small files a night. `maintain`:

1. flushes rows inlined in the catalog into Parquet (`ducklake_flush_inlined_data`);
2. merges adjacent small files of each table (`ducklake_merge_adjacent_files`) and rewrites files
   whose rows are mostly deleted (`ducklake_rewrite_data_files`): compaction;
3. expires snapshots older than `keep` (`ducklake_expire_snapshots`): time travel stays possible
   within `keep`, default 7 days;
4. deletes the files that only expired snapshots reference or that compaction replaced
   (`ducklake_cleanup_old_files`; all of them once the newest is past the grace period, else at
   the next maintenance), and files no snapshot ever referenced, left by writers killed
   before their commit (`ducklake_delete_orphaned_files`), once they are an hour old (`GRACE`), so
   that a query still reading them or a writer about to commit keeps them. Compaction ends time
   travel to the snapshots before it (their files go after the grace period).

Each step is its own DuckLake transaction and changes no row: a conflict with a concurrent writer
is retried. On the DuckDB file, maintenance is a CHECKPOINT (the file reuses its free blocks).

The job runs it as the `warehouse_maintenance` asset (`forecast_assets.assets.maintenance`), weekly;
by hand: `python -m warehouse.maintenance [PATH] [--keep-days 7]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import time
from collections.abc import Sequence
from typing import Any

import duckdb

from warehouse import lake
from warehouse.db import connect, ensure_schema, is_lake

DEFAULT_KEEP = dt.timedelta(days=7)
#: How long a file that no current snapshot needs is kept: a running query or a writer about to
#: commit may still need it.
GRACE = dt.timedelta(hours=1)
_METADATA = f"__ducklake_metadata_{lake.ALIAS}"
assert lake.ALIAS == "forecast"  # spelled out in the constant queries below
_SNAPSHOTS = "SELECT snapshot_id, CAST(snapshot_time AS TIMESTAMPTZ) FROM __ducklake_metadata_forecast.ducklake_snapshot"
_SCHEDULED = (
    "SELECT count(*), max(CAST(schedule_start AS TIMESTAMPTZ))"
    " FROM __ducklake_metadata_forecast.ducklake_files_scheduled_for_deletion"
)


def _counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    one = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    return {
        "data_files": one(f"SELECT count(*) FROM {_METADATA}.ducklake_data_file WHERE end_snapshot IS NULL"),
        "delete_files": one(
            f"SELECT count(*) FROM {_METADATA}.ducklake_delete_file WHERE end_snapshot IS NULL"
        ),
        "snapshots": one(f"SELECT count(*) FROM {_METADATA}.ducklake_snapshot"),
    }


def _call(
    con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = (), timeout_s: float = 300.0
) -> int:
    """Run one maintenance procedure, retried on a conflict with a concurrent writer; the number of
    rows it returned (files merged, snapshots expired, files deleted)."""
    deadline, delay = time.monotonic() + timeout_s, 0.1
    while True:
        try:
            return len(con.execute(sql, list(params)).fetchall())
        except duckdb.Error as exc:
            lake.rollback(con)
            if not lake.is_conflict(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)


def _expire(con: duckdb.DuckDBPyConnection, cutoff: dt.datetime) -> int:
    """Expire the snapshots taken before `cutoff`, except the current one. The ids are chosen here:
    on a SQLite catalog DuckLake 1.5.5 compares `older_than` with the stored times wrongly (it
    expired snapshots seconds old with a cutoff an hour back), on PostgreSQL rightly."""
    rows = con.execute(_SNAPSHOTS).fetchall()
    current = max(i for i, _ in rows)
    old = [i for i, t in rows if t < cutoff and i != current]
    if not old:
        return 0
    return _call(con, f"CALL ducklake_expire_snapshots('{lake.ALIAS}', versions => ?)", [old])


def _cleanup(con: duckdb.DuckDBPyConnection, cutoff: dt.datetime) -> int:
    """Delete the files scheduled for deletion, if every one was scheduled before `cutoff` (else
    leave them to the next maintenance): `older_than` has the same fault on SQLite as above."""
    n, newest = con.execute(_SCHEDULED).fetchone()
    if not n or newest >= cutoff:
        return 0
    return _call(con, f"CALL ducklake_cleanup_old_files('{lake.ALIAS}', cleanup_all => true)")


def maintain(path: str | os.PathLike[str] | None = None, keep: dt.timedelta = DEFAULT_KEEP) -> dict[str, Any]:
    """Compact and expire the warehouse `path`; returns what it found and did."""
    t0 = time.monotonic()
    if not is_lake(path):
        with connect(path) as con:
            ensure_schema(con)
            con.execute("CHECKPOINT")
        return {"backend": "duckdb", "seconds": round(time.monotonic() - t0, 2)}
    name = lake.ALIAS
    with connect(path) as con:
        ensure_schema(con)
        before = _counts(con)
        done = {
            "flushed_tables": _call(con, f"CALL ducklake_flush_inlined_data('{name}')"),
            "merged": _call(con, f"CALL ducklake_merge_adjacent_files('{name}')"),
            "rewritten": _call(con, f"CALL ducklake_rewrite_data_files('{name}')"),
            "snapshots_expired": _expire(con, dt.datetime.now(dt.UTC) - keep),
            # Files that only expired snapshots reference, or that compaction replaced: a query that
            # began before may still read them, so they go once GRACE has passed (or `keep`, if shorter).
            "files_deleted": _cleanup(con, dt.datetime.now(dt.UTC) - min(keep, GRACE)),
            # Files no snapshot references may belong to a writer that has not committed yet.
            "orphans_deleted": _call(
                con,
                f"CALL ducklake_delete_orphaned_files('{name}', older_than => ?)",
                [dt.datetime.now(dt.UTC) - GRACE],
            ),
        }
        after = _counts(con)
    return {
        "backend": "ducklake",
        "keep_days": keep / dt.timedelta(days=1),
        "before": before,
        "after": after,
        **done,
        "seconds": round(time.monotonic() - t0, 2),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Compact the warehouse and expire its old snapshots.")
    parser.add_argument("path", nargs="?", help="the warehouse (default: $FORECAST_WAREHOUSE)")
    parser.add_argument("--keep-days", type=float, default=DEFAULT_KEEP.days, help="snapshots kept (days)")
    args = parser.parse_args(argv)
    print(json.dumps(maintain(args.path, dt.timedelta(days=args.keep_days)), indent=2))


if __name__ == "__main__":
    main()
