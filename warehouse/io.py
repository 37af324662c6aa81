"""Reads (polars frames) and transactional, idempotent writes.

A write replaces a slice of a table: the rows matching a `WHERE` clause written by this project's
own code (values always bound as parameters) are deleted and the new rows inserted, in one
transaction with any other table written in the same step. Re-running a partition therefore
replaces it, and a failure (or a killed process) leaves the previous contents. Every committed
transaction also publishes the read replica that analysts read while the job writes
(`warehouse.replica`): the Writer notes which slices it replaced (`Writer.changes`), and the
publication copies only those.

On a DuckLake warehouse (`warehouse.lake`) the block is one DuckLake transaction and there is no
replica to publish: readers read the lake. A block that conflicts with a concurrent writer at
COMMIT is replayed on the newer snapshot: the Writer records its writes for that.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from warehouse import lake, vintages
from warehouse.db import WarehouseError, connect, ensure_schema, is_lake, memory_limit, warehouse_path
from warehouse.vintages import VintageChange

#: Tables a write may target (names are identifiers, so they are checked against this list).
WRITABLE_TABLES = frozenset(
    {
        "raw_prices",
        "raw_prices_replaced",  # written by `store_prices` only, with price_vintages
        "price_vintages",
        "targets",
        "features",
        "features_state",
        "folds",
        "fold_predictions",
        "fold_metrics",
        "models",
        "model_artifacts",
        "forecasts",
        "forecast_state",
        "forecast_scores",
        "forecast_scores_state",
        "backtest_returns",
        "backtest_metrics",
        "forecast_explanations",
        "forecast_explanation_lags",
        "universe_membership",
    }
)
READABLE = WRITABLE_TABLES | {
    "latest_forecasts",
    "model_leaderboard",
    "rolling_accuracy",
    "calibration",
    "schema_meta",
    "strategy_comparison",
}


#: Tables stored without a PRIMARY KEY index (`features` is recreated by CREATE TABLE AS, its
#: columns following the configuration; on `targets`'s 50 million rows at 5,000 tickers the index
#: cost more than the writes; `fold_predictions`'s 88 million and `backtest_returns`'s 100 million,
#: each written at once, would need theirs in memory), with the key the writer keeps for them instead: what a write inserts has no repeated
#: key and lies inside the slice it deleted, so it cannot duplicate a kept row.
UNKEYED = {
    "features": ("ticker", "date"),
    "targets": ("ticker", "date", "horizon"),
    "fold_predictions": ("fold", "model", "ticker", "date", "horizon"),
    "backtest_returns": ("strategy", "ticker", "date", "period"),
}


@dataclass(frozen=True)
class ParquetRows:
    """Rows staged in Parquet files, for a write of more rows than should be held in memory (every
    fold's predictions at 5,000 tickers): DuckDB reads the files while it inserts them. The files
    must stay until the transaction is over (a DuckLake block may be replayed from them)."""

    paths: tuple[str, ...]

    def __post_init__(self) -> None:
        missing = [p for p in self.paths if not os.path.isfile(p)]
        if missing:
            raise WarehouseError(f"staged Parquet files not found: {', '.join(missing)}")


#: Rows a write inserts: a frame, or Parquet files (`ParquetRows`).
Rows = pl.DataFrame | ParquetRows

#: The rows of a `ParquetRows` write, as a table function of its bound list of paths.
STAGED = "read_parquet(?)"
#: DuckDB's memory limit while it checks and inserts staged rows: both stream (the key check's
#: aggregate spills to disk), and a higher limit lets DuckDB hold more of them at once.
STAGED_MEMORY_LIMIT = "2GiB"


def _check_table(name: str, allowed: frozenset[str]) -> str:
    if name not in allowed:
        raise WarehouseError(f"unknown warehouse table {name!r}; known: {', '.join(sorted(allowed))}")
    return name


class Writer:
    """Writes inside one open transaction (see `transaction`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, *, track_changes: bool = False) -> None:
        self.con = con
        self.rows_written: dict[str, int] = {}
        #: What the block changed, for the read replica (`warehouse.replica`): (table, predicate
        #: or None for the whole table, parameters). Kept only when `track_changes`.
        self.changes: list[tuple[str, str | None, tuple]] = []
        self.track_changes = track_changes
        #: Every write, in order, so that a transaction can be replayed (`replay`).
        self.journal: list[tuple[str, tuple]] = []
        #: Times the block was replayed after a conflicting commit (DuckLake only).
        self.retries = 0
        #: What each `store_prices` changed, in order (the latest replay's on DuckLake).
        self.vintage_changes: list[VintageChange] = []

    def read(self, sql: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        """A query inside the transaction (it sees the block's own writes), as polars."""
        # DuckDB 2.0 keeps a write's result pending and refuses `sql` until it is completed; 1.x
        # (the DuckLake environment's) has no pending results and no `complete`.
        complete = getattr(self.con, "complete", None)
        if complete is not None:
            complete()
        return self.con.sql(sql, params=list(params) or None).pl()

    def replace(self, table: str, frame: Rows, where: str = "TRUE", params: Sequence[Any] = ()) -> int:
        """Delete the rows of `table` matching `where` (with `?` parameters), insert `frame` (a
        polars frame, or `ParquetRows` that DuckDB streams from disk)."""
        self.journal.append(("replace", (table, frame, where, tuple(params))))
        return self._replace(table, frame, where, params)

    def store_prices(
        self, frame: pl.DataFrame, where: str, params: Sequence[Any], source: str, now: dt.datetime
    ) -> VintageChange:
        """Make the raw_prices rows matching `where` equal to `frame`, recording a price vintage
        if anything changed (`warehouse.vintages.store_prices`)."""
        self.journal.append(("store_prices", (frame, where, tuple(params), source, now)))
        return self._store_prices(frame, where, params, source, now)

    def _store_prices(
        self, frame: pl.DataFrame, where: str, params: Sequence[Any], source: str, now: dt.datetime
    ) -> VintageChange:
        change = vintages.store_prices(self.con, frame, where, params, source, now)
        self.rows_written["raw_prices"] = (
            self.rows_written.get("raw_prices", 0) + change.rows_inserted + change.rows_changed
        )
        self.vintage_changes.append(change)
        if self.track_changes:
            self.changes.append(
                ("raw_prices", where, tuple(params)) if change.in_scope else ("raw_prices", None, ())
            )
            if change.vintage is not None:
                self.changes += [
                    ("raw_prices_replaced", "replaced_by = ?", (change.vintage,)),
                    ("price_vintages", "vintage = ?", (change.vintage,)),
                ]
        return change

    def replay(self) -> None:
        """Run every recorded write again, in order, in the connection's (new) transaction."""
        self.rows_written = {}
        self.changes = []
        self.vintage_changes = []
        for name, args in self.journal:
            getattr(self, f"_{name}")(*args)

    def _replace(self, table: str, frame: Rows, where: str, params: Sequence[Any]) -> int:
        _check_table(table, WRITABLE_TABLES)
        columns = {r[0] for r in self.con.execute(f"DESCRIBE {table}").fetchall()}
        extra = [c for c in self._columns(frame) if c not in columns]
        if extra:
            raise WarehouseError(f"columns {extra} are not in table {table!r}")
        if table in UNKEYED:
            self._check_unique(table, frame, UNKEYED[table])
        self.con.execute(f"DELETE FROM {table} WHERE {where}", list(params))
        inserted = self._insert(table, frame)
        whole = where.strip().upper() == "TRUE"
        in_slice = whole
        if not whole and (table in UNKEYED or self.track_changes):
            # Right after the DELETE, the rows matching `where` are exactly the inserted ones that do.
            in_slice = self._matching(table, where, params) == inserted
        if table in UNKEYED and not in_slice:
            raise WarehouseError(
                f"{table}: rows inserted outside the slice replaced ({where} with {list(params)}) "
                f"could duplicate a kept row of its key {UNKEYED[table]}: write them with their own slice"
            )
        if self.track_changes:
            # The replica copies the slice when the predicate describes the change, else the table.
            self.changes.append(
                (table, where, tuple(params)) if in_slice and not whole else (table, None, ())
            )
        return inserted

    def _columns(self, rows: Rows) -> list[str]:
        if isinstance(rows, pl.DataFrame):
            return rows.columns
        return [
            r[0] for r in self.con.execute(f"DESCRIBE SELECT * FROM {STAGED}", [list(rows.paths)]).fetchall()
        ]

    def _matching(self, table: str, where: str, params: Sequence[Any]) -> int:
        return self.con.execute(f"SELECT count(*) FROM {table} WHERE {where}", list(params)).fetchone()[0]

    def replace_table(self, table: str, frame: pl.DataFrame) -> int:
        """Recreate `table` with exactly `frame`'s columns and rows (for `features`)."""
        self.journal.append(("replace_table", (table, frame)))
        return self._replace_table(table, frame)

    def _replace_table(self, table: str, frame: pl.DataFrame) -> int:
        _check_table(table, WRITABLE_TABLES)
        if table in UNKEYED:
            self._check_unique(table, frame, UNKEYED[table])
        self._execute_with_frame(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _incoming", frame)
        self.rows_written[table] = self.rows_written.get(table, 0) + frame.height
        if self.track_changes:
            self.changes.append((table, None, ()))
        return frame.height

    def _execute_with_frame(self, sql: str, frame: pl.DataFrame) -> None:
        """Run `sql` with `frame` registered as `_incoming`.

        On failure (a key violation, say) the transaction is aborted and DuckDB refuses even
        `unregister`, so it is not attempted there: it would replace the real error with
        "Current transaction is aborted". `transaction` rolls back and closes the connection,
        which drops the registration.
        """
        self.con.register("_incoming", frame)
        self.con.execute(sql)
        self.con.unregister("_incoming")

    def _insert(self, table: str, frame: Rows) -> int:
        if isinstance(frame, ParquetRows):
            sql = f"INSERT INTO {table} BY NAME SELECT * FROM {STAGED}"
            with memory_limit(self.con, STAGED_MEMORY_LIMIT):
                inserted = int(self.con.execute(sql, [list(frame.paths)]).fetchone()[0])
        else:
            inserted = frame.height
            if inserted:
                self._execute_with_frame(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming", frame)
        self.rows_written[table] = self.rows_written.get(table, 0) + inserted
        return inserted

    def _check_unique(self, table: str, rows: Rows, key: tuple[str, ...]) -> None:
        """Refuse rows holding a key twice (for `UNKEYED` tables, which have no index to refuse
        it); staged rows are checked by DuckDB, which spills what does not fit in memory."""
        if isinstance(rows, pl.DataFrame):
            if not rows.height:
                return
            repeated = rows.select(key).filter(pl.struct(key).is_duplicated())
            count, first = repeated.height, (repeated.row(0) if repeated.height else None)
        else:
            cols = ", ".join(f'"{c}"' for c in key)
            with memory_limit(self.con, STAGED_MEMORY_LIMIT):
                found = self.con.execute(
                    f"SELECT sum(n) OVER (), * EXCLUDE (n) FROM (SELECT {cols}, count(*) AS n FROM {STAGED} "
                    f"GROUP BY {cols} HAVING count(*) > 1) LIMIT 1",
                    [list(rows.paths)],
                ).fetchone()
            count, first = (found[0], found[1:]) if found else (0, None)
        if count:
            raise WarehouseError(
                f"{table}: {count} rows repeat a key ({', '.join(key)}), the first "
                f"{dict(zip(key, first, strict=True))}: each key may be written once"
            )


@contextmanager
def transaction(path: str | os.PathLike[str] | None = None) -> Iterator[Writer]:
    """Open the warehouse, apply the schema, and commit every write in the block at once (with the
    log of what it changed); then, still holding the write lock, publish the read replica
    (`warehouse.replica`), which copies only what changed."""
    from warehouse.replica import (  # not at the top: `python -m warehouse.replica` runs it
        log_changes,
        publish,
    )

    if is_lake(path):
        with _lake_transaction(path) as writer:
            yield writer
        return
    with connect(path) as con:
        ensure_schema(con)
        con.execute("BEGIN TRANSACTION")
        try:
            writer = Writer(con, track_changes=True)
            yield writer
            log_changes(con, writer.changes)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        publish(con, path)


@contextmanager
def _lake_transaction(path: str | os.PathLike[str] | None) -> Iterator[Writer]:
    """The block as one DuckLake transaction, replayed on a conflict at COMMIT (`lake.commit`)."""
    with connect(path) as con:
        ensure_schema(con)
        writer = Writer(con)
        con.execute("BEGIN TRANSACTION")
        try:
            yield writer
        except BaseException:
            lake.rollback(con)
            raise
        try:
            writer.retries = lake.commit(con, writer.replay)
        except duckdb.Error as exc:
            raise WarehouseError(f"the write to the DuckLake warehouse did not commit: {exc}") from exc


def read_sql(
    sql: str, params: Sequence[Any] = (), path: str | os.PathLike[str] | None = None
) -> pl.DataFrame:
    """Run a query read-only and return a polars frame."""
    with connect(path, read_only=True) as con:
        return con.sql(sql, params=list(params) or None).pl()


def read_table(
    table: str,
    where: str = "TRUE",
    params: Sequence[Any] = (),
    path: str | os.PathLike[str] | None = None,
    order_by: str | None = None,
) -> pl.DataFrame:
    """Rows of a table or view matching `where` (parameters bound), as polars."""
    _check_table(table, READABLE)
    order = f" ORDER BY {order_by}" if order_by else ""
    return read_sql(f"SELECT * FROM {table} WHERE {where}{order}", params, path)


def table_exists(table: str, path: str | os.PathLike[str] | None = None) -> bool:
    if is_lake(path) and not lake.exists(lake.load(warehouse_path(path))):
        return False  # a lake whose catalog the first write has not created yet
    with connect(path, read_only=True) as con:
        row = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND database_name = current_database()",
            [table],
        ).fetchone()
        return bool(row and row[0])
