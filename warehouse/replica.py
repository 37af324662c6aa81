"""The read replica: a snapshot of the warehouse that analysts and tools read while the job writes.

DuckDB lets one process open a database file for writing, and while it does no other process can
open that file at all, not even read-only (and a reader holding it open blocks the writer in turn).
So readers do not open the warehouse; they open its replica, `<warehouse stem>.read.duckdb` beside
it (`warehouse/forecast.read.duckdb` for the default path):

- After every committed write (`warehouse.io.transaction`), the writer checkpoints the warehouse
  and, still holding its write lock so that nothing changes the file, copies it to
  `<stem>.read.tmp.duckdb`, flushes it to disk and swaps it in with `os.replace`, which is atomic.
- A reader opens the replica read-only (`connect_replica`, `read_replica_sql`, or any DuckDB client
  with `read_only=True`). It sees one committed state of every table, the newest published when it
  opened, never a half-written one; the writer never waits for it and it never waits for the
  writer. A connection keeps the snapshot it opened (on POSIX the replaced file lives on while it
  is open): open one per query, or reconnect, to see newer data. Within one process, DuckDB shares
  a database between connections to the same path, so close the old connection first.

A crash (or SIGKILL) during the copy leaves the previous replica in place and a stale temporary
file, which the next publication overwrites. `python -m warehouse.replica [PATH]` publishes on
demand, for example for a warehouse written before replicas existed.

A DuckLake warehouse (`warehouse.lake`) has no replica: every reader sees a committed snapshot of
the lake itself, so `connect_replica` and `read_replica_sql` attach the lake read-only.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from warehouse.db import WarehouseError, connect, is_lake, warehouse_path

REPLICA_SUFFIX = ".read.duckdb"


def replica_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The replica of warehouse `path` (default: $FORECAST_WAREHOUSE, else the default path)."""
    p = warehouse_path(path)
    if is_lake(p):
        raise WarehouseError(
            f"{str(p)!r} is a DuckLake warehouse, which has no read replica: readers attach it "
            "read-only (`warehouse.connect(path, read_only=True)`, or `connect_replica`)"
        )
    return p.with_name(p.stem + REPLICA_SUFFIX)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(con: duckdb.DuckDBPyConnection, path: str | os.PathLike[str] | None = None) -> Path:
    """Publish the warehouse as its replica. `con` must be the open read-write connection to the
    warehouse `path`, outside any transaction: it holds the write lock, so the file cannot change
    during the copy."""
    source = warehouse_path(path)
    target = replica_path(path)
    tmp = target.with_name(target.stem + ".tmp.duckdb")  # ignored by git like the warehouse
    con.execute("CHECKPOINT")  # every committed change into the main file; the WAL is emptied
    wal = source.with_name(source.name + ".wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise WarehouseError(f"cannot publish the read replica: {str(wal)!r} is not empty after a checkpoint")
    try:
        shutil.copyfile(source, tmp)
        _fsync(tmp)
        os.replace(tmp, target)
        _fsync(target.parent)
    except OSError as exc:
        raise WarehouseError(
            f"the write to {str(source)!r} is committed, but the read replica {str(target)!r} could "
            f"not be published ({exc}); readers see the previous snapshot until the next write or "
            f"`python -m warehouse.replica`"
        ) from exc
    return target


@contextmanager
def connect_replica(path: str | os.PathLike[str] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the replica of warehouse `path`, for the `with` block (to the lake
    itself for a DuckLake warehouse)."""
    if is_lake(path):
        with connect(path, read_only=True) as con:
            yield con
        return
    p = replica_path(path)
    if not p.exists():
        raise WarehouseError(
            f"the read replica {str(p)!r} does not exist yet: it is published by the first write "
            "(run the pipeline) or by `python -m warehouse.replica`"
        )
    con = duckdb.connect(str(p), read_only=True)
    try:
        yield con
    finally:
        con.close()


def read_replica_sql(
    sql: str, params: Sequence[Any] = (), path: str | os.PathLike[str] | None = None
) -> pl.DataFrame:
    """Run a query on the replica and return a polars frame."""
    with connect_replica(path) as con:
        return con.sql(sql, params=list(params) or None).pl()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Publish the warehouse's read replica now.")
    parser.add_argument("path", nargs="?", help="the warehouse file (default: $FORECAST_WAREHOUSE)")
    args = parser.parse_args(argv)
    if is_lake(args.path):
        raise SystemExit(
            f"{str(warehouse_path(args.path))!r} is a DuckLake warehouse: readers read it, no replica"
        )
    if not warehouse_path(args.path).exists():
        raise SystemExit(f"no warehouse at {str(warehouse_path(args.path))!r}: run the pipeline first")
    with connect(args.path) as con:
        print(publish(con, args.path))


if __name__ == "__main__":
    main()
