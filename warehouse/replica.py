"""The read replica: a snapshot of the warehouse that analysts and tools read while the job writes.

DuckDB lets one process open a database file for writing, and while it does no other process can
open that file at all, not even read-only (and a reader holding it open blocks the writer in turn).
So readers do not open the warehouse; they open its replica, `<warehouse stem>.read.duckdb` beside
it (`warehouse/forecast.read.duckdb` for the default path).

## How it is published (cost: what the transaction changed, not the warehouse's size)

`<stem>.read.duckdb` is a symbolic link to one of a few *slot* files, `<stem>.read.0.duckdb`,
`<stem>.read.1.duckdb` (more only while readers hold old snapshots open, see below). Each slot is a
complete DuckDB database holding every table and view of the warehouse as of some commit; its
`replica_meta` table says which (`generation`, the warehouse's publication sequence number).

- Inside every write transaction (`warehouse.io.transaction`) the writer records, in the
  warehouse's `publication_log`, the slices it replaced: the table and the `WHERE` predicate with
  its bound parameters (or "the whole table" when a predicate did not cover every inserted row, or
  for `replace_table`). The log commits with the data, so no crash can separate them.
- After the COMMIT, still holding the warehouse's write lock, `publish` picks a slot that is not
  the current link target and that no reader holds open (a read-write ATTACH fails at once, without
  waiting, on a file a reader holds: such a slot is skipped), and brings it up to date in **one
  transaction on the slot**: for each table changed since the slot's generation, it deletes the
  rows matching the union of the logged predicates and inserts the warehouse's rows matching it
  (`INSERT INTO slot.t SELECT * FROM warehouse.t WHERE ...`, via ATTACH). Rows outside every
  predicate were not touched by those writes, so the slot then equals the warehouse. Then the slot
  is checkpointed (no WAL left), detached, flushed to disk, and the link is swapped to it with
  `os.replace` of a new link, which is atomic. The cost is that of the changed slices (the nightly
  partition), not of the warehouse.
- A slot that is missing, older than the log reaches back, or built with another schema (a new
  code version) is seeded: every table copied from the warehouse (`CREATE TABLE AS`, one table at
  a time), then the views: the first publication, a new schema, or a reader that held a slot for
  many commits.
- A slot holds the warehouse's rows, column types, comments, views and macros, but not its primary
  keys: readers never use them, and their indexes are most of a slot's size on disk and of the
  cost of its writes and checkpoints (the warehouse keeps and enforces them).

What readers get:
- A reader opens the link read-only (`connect_replica`, `read_replica_sql`, or any DuckDB client
  with `read_only=True`) and sees one committed state of every table, the newest published when it
  opened, never a half-written one: the link only ever points at a complete, checkpointed slot, and
  a slot is written only while it is not the link's target and nobody holds it. The writer never
  waits for a reader (a held slot is skipped, another is used) and a reader never waits for the
  writer. A connection keeps the snapshot it opened: open one per query, or reconnect, to see newer
  data.
- One narrow race remains for a client that opens the link itself: it resolves the link to a slot
  that, before the client's open takes its lock, stops being current *and* is picked for the next
  publication (two publications within the client's open). Its open then fails with DuckDB's "Could
  not set lock" error; `connect_replica` retries (the link then names the newer slot), other clients
  can do the same.
- Within one process, DuckDB's file locks do not exclude each other, so a process that both writes
  and reads must read through `connect_replica`, which registers the slot it holds so that this
  process's publications skip it.

A crash (or SIGKILL) at any point leaves the link on a complete slot: before the slot's COMMIT the
slot rolls back (DuckDB's WAL) and the link still names the previous slot; after it, the slot is
at the new generation and the next publication finds nothing left to copy; a crash between the
warehouse's COMMIT and the publication leaves the log entries, which the next publication applies.
`python -m warehouse.replica [PATH]` publishes on demand (`--seed` copies the whole warehouse into
a slot, for a warehouse written before replicas existed or to rebuild one).

A DuckLake warehouse (`warehouse.lake`) has no replica: every reader sees a committed snapshot of
the lake itself, so `connect_replica` and `read_replica_sql` attach the lake read-only.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from warehouse.db import (
    SCHEMA_VERSION,
    WarehouseError,
    _is_lock_error,
    _sql,
    connect,
    is_lake,
    memory_limit,
    sql_literal,
    warehouse_path,
)

REPLICA_SUFFIX = ".read.duckdb"
#: Tables of the warehouse that only the publication uses; not copied into the replica.
LOG_TABLES = ("publication_log", "replica_slots")
LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS publication_log (
    seq BIGINT NOT NULL, table_name VARCHAR NOT NULL, predicate VARCHAR, params VARCHAR NOT NULL
);
COMMENT ON TABLE publication_log IS 'What each committed write changed, for the read replica (warehouse.replica): the table and the WHERE predicate of a replaced slice with its parameters as tagged JSON; predicate NULL means the whole table. Pruned once every replica slot has applied it.';
CREATE TABLE IF NOT EXISTS replica_slots (slot INTEGER PRIMARY KEY, seq BIGINT NOT NULL);
COMMENT ON TABLE replica_slots IS 'The publication sequence number each read-replica slot file holds (warehouse.replica), for pruning publication_log.';
"""
#: A change: (table, predicate or None for the whole table, bound parameters).
Change = tuple[str, str | None, tuple]
#: Slot files this process holds open through `connect_replica` (its publications skip them).
_HELD: collections.Counter[str] = collections.Counter()


def replica_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The replica of warehouse `path` (default: $FORECAST_WAREHOUSE, else the default path):
    the link readers open."""
    p = warehouse_path(path)
    if is_lake(p):
        raise WarehouseError(
            f"{str(p)!r} is a DuckLake warehouse, which has no read replica: readers attach it "
            "read-only (`warehouse.connect(path, read_only=True)`, or `connect_replica`)"
        )
    return p.with_name(p.stem + REPLICA_SUFFIX)


def slot_path(path: str | os.PathLike[str] | None, slot: int) -> Path:
    p = warehouse_path(path)
    return p.with_name(f"{p.stem}.read.{slot}.duckdb")


def schema_hash() -> str:
    """Identifies the schema the code applies: a slot built under another is seeded anew."""
    text = f"{SCHEMA_VERSION}\n{_sql('schema.sql')}\n{_sql('views.sql')}\n{LOG_SCHEMA}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- the log, written inside the data transaction ------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"date": value.isoformat()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise WarehouseError(f"cannot log a parameter of type {type(value).__name__} for the read replica")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        ((kind, text),) = value.items()
        return dt.datetime.fromisoformat(text) if kind == "datetime" else dt.date.fromisoformat(text)
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _ensure_log(con: duckdb.DuckDBPyConnection) -> None:
    if not con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND table_name = 'replica_slots'"
    ).fetchone()[0]:
        con.execute(LOG_SCHEMA)


def log_changes(con: duckdb.DuckDBPyConnection, changes: Sequence[Change]) -> int | None:
    """Record a transaction's changes under the next sequence number (inside the transaction);
    returns it, or None when nothing was written."""
    if not changes:
        return None
    _ensure_log(con)
    seq = _current_seq(con) + 1
    con.executemany(
        "INSERT INTO publication_log VALUES (?, ?, ?, ?)",
        [[seq, table, predicate, json.dumps(_encode(list(params)))] for table, predicate, params in changes],
    )
    con.execute("INSERT OR REPLACE INTO schema_meta VALUES ('publication_seq', ?)", [str(seq)])
    return seq


def _current_seq(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT value FROM schema_meta WHERE key = 'publication_seq'").fetchone()
    return int(row[0]) if row else 0


def _pending(
    con: duckdb.DuckDBPyConnection, since: int, until: int
) -> dict[str, list[tuple[str, list]]] | None:
    """Changes of sequence numbers (since, until], merged per table: table -> [(predicate,
    params)], an empty list for the whole table; None if the log no longer reaches back that far."""
    rows = con.execute(
        "SELECT seq, table_name, predicate, params FROM publication_log WHERE seq > ? AND seq <= ? ORDER BY seq",
        [since, until],
    ).fetchall()
    if len({r[0] for r in rows}) != until - since:
        return None
    merged: dict[str, list[tuple[str, list]] | None] = {}
    for _, table, predicate, params in rows:
        if predicate is None:
            merged[table] = None
        elif table not in merged or merged[table] is not None:
            entry = (predicate, _decode(json.loads(params)))
            if entry not in merged.setdefault(table, []):
                merged[table].append(entry)
    return {t: (p if p is not None else []) for t, p in merged.items()}


# -- publication -----------------------------------------------------------------------------


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _current_slot(link: Path) -> Path | None:
    return link.parent / os.readlink(link) if link.is_symlink() else None


def _columns(con: duckdb.DuckDBPyConnection, database: str, table: str) -> list[tuple[str, str]]:
    return con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'main' "
        "AND table_name = ? ORDER BY column_index",
        [database, table],
    ).fetchall()


def _coalesced(slices: list[tuple[str, list]]) -> list[tuple[str, list]]:
    """`slices` with those of one ticker-list predicate (`reads.IN_TICKERS`, alone or `AND` the
    same further conditions with the same parameters) merged into one over the union of their
    tickers: the same rows ((ticker in A or in B) and the rest), and one conjunction, whose other
    conditions (`date >= ?`) DuckDB filters in the scan before the ticker test, where an OR of them
    tests every ticker of the table against every list. A night's `features`, written 500 tickers
    at a time, logs 10 such slices per table."""
    from warehouse.reads import IN_TICKERS

    out: list[tuple[str, list]] = []
    position: dict[tuple[str, str], int] = {}  # (predicate, further params) -> its slice in `out`
    for predicate, params in slices:
        membership = predicate == IN_TICKERS or predicate.startswith(IN_TICKERS + " AND ")
        if not (membership and params and isinstance(params[0], list)):
            out.append((predicate, params))
            continue
        key = (predicate, json.dumps(_encode(list(params[1:]))))
        if key in position:
            tickers = out[position[key]][1][0]
            seen = set(tickers)
            tickers.extend(t for t in dict.fromkeys(params[0]) if t not in seen)
        else:
            position[key] = len(out)
            out.append((predicate, [list(dict.fromkeys(params[0])), *params[1:]]))
    return out


def _sync_table(
    con: duckdb.DuckDBPyConnection, main: str, table: str, slices: list[tuple[str, list]]
) -> None:
    """Make the slot's `table` equal the warehouse's, copying only the rows of `slices`."""
    from warehouse.io import WRITABLE_TABLES, _check_table

    _check_table(table, WRITABLE_TABLES)
    if _columns(con, main, table) != _columns(con, "replica", table):  # new, or new columns
        con.execute(f'CREATE OR REPLACE TABLE replica.main.{table} AS SELECT * FROM "{main}".main.{table}')
        return
    slices = _coalesced(slices)
    where = " OR ".join(f"({predicate})" for predicate, _ in slices) or "TRUE"
    params = [p for _, ps in slices for p in ps]
    con.execute(f"DELETE FROM replica.main.{table} WHERE {where}", params)
    con.execute(f'INSERT INTO replica.main.{table} SELECT * FROM "{main}".main.{table} WHERE {where}', params)


#: A slot whose pending changes rewrite whole tables of at least this many rows is re-seeded
#: instead, table by table (bounded memory; a full rebuild of `features` at scale).
RESEED_ROWS = 5_000_000


def _whole_table_rows(con: duckdb.DuckDBPyConnection, pending: dict[str, list[tuple[str, list]]]) -> int:
    """Estimated rows, in the warehouse, of the tables `pending` rewrites whole."""
    whole = [table for table, slices in pending.items() if not slices]
    if not whole:
        return 0
    ((rows,),) = con.execute(
        "SELECT coalesce(sum(estimated_size), 0) FROM duckdb_tables() "
        "WHERE database_name = current_database() AND list_contains(?::VARCHAR[], table_name)",
        [whole],
    ).fetchall()
    return int(rows)


def _attach(con: duckdb.DuckDBPyConnection, slot: Path) -> bool:
    """ATTACH `slot` read-write as `replica`; False if a reader holds it (DuckDB refuses at once)."""
    try:
        con.execute(f"ATTACH '{slot}' AS replica")
    except duckdb.IOException as exc:
        if _is_lock_error(exc):
            return False
        raise
    return True


def _slot_state(con: duckdb.DuckDBPyConnection) -> tuple[int, str] | None:
    """(generation, schema hash) of the attached slot, or None if it is not a slot."""
    if not con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'replica' AND table_name = 'replica_meta'"
    ).fetchone()[0]:
        return None
    meta = dict(con.execute("SELECT key, value FROM replica.replica_meta").fetchall())
    return int(meta["generation"]), meta["schema"]


def _seed(con: duckdb.DuckDBPyConnection, slot: Path, seq: int) -> None:
    """Write `slot` afresh and leave it attached as `replica`: every table of the warehouse but the
    log copied by `CREATE TABLE AS` (its rows, column types and comments, without the primary keys:
    readers never use them, and a key's index is most of what a slot's file, its writes and its
    checkpoint cost), then the views and macros (`views.sql`). One table at a time, each written to
    disk as it is copied; a crash leaves a temporary file that the next seed removes."""
    main = con.execute("SELECT current_database()").fetchone()[0]
    tmp = slot.with_name(slot.stem + ".tmp.duckdb")
    for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
        leftover.unlink(missing_ok=True)
    tables = con.execute(
        "SELECT table_name, comment FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' "
        "AND NOT list_contains(?::VARCHAR[], table_name) ORDER BY table_name",
        [main, list(LOG_TABLES)],
    ).fetchall()
    con.execute(f"ATTACH '{tmp}' AS replica")
    try:
        with memory_limit(con, SEED_MEMORY_LIMIT):
            _copy_tables(con, main, tables)
        con.execute("USE replica")  # the views and macros bind to the slot's tables
        try:
            con.execute(_sql("views.sql"))
        finally:
            con.execute(f"USE {_identifier(main)}")
        con.execute(
            "CREATE TABLE replica.main.replica_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)"
        )
        con.execute(
            "COMMENT ON TABLE replica.main.replica_meta IS 'This read-replica slot: the warehouse publication "
            "sequence number it holds (generation) and the schema it was built with (warehouse.replica).'"
        )
        con.execute(
            "INSERT INTO replica.main.replica_meta VALUES ('generation', ?), ('schema', ?)",
            [str(seq), schema_hash()],
        )
        con.execute("CHECKPOINT replica")
    finally:
        con.execute("DETACH replica")
    os.replace(tmp, slot)
    if not _attach(con, slot):  # nobody can hold a file that did not exist
        raise WarehouseError(f"the new replica slot {str(slot)!r} is locked by another process")


def _copy_tables(con: duckdb.DuckDBPyConnection, main: str, tables: list[tuple[str, str | None]]) -> None:
    """Copy `tables` [(name, comment)] of database `main` into the attached `replica`, with their
    comments and their columns' comments."""
    source = _identifier(main)
    for table, comment in tables:
        con.execute(
            f"CREATE TABLE replica.main.{_identifier(table)} AS SELECT * FROM {source}.main.{_identifier(table)}"
        )
        if comment:
            con.execute(f"COMMENT ON TABLE replica.main.{_identifier(table)} IS {sql_literal(comment)}")
    for table, column, comment in con.execute(
        "SELECT table_name, column_name, comment FROM duckdb_columns() WHERE database_name = ? "
        "AND schema_name = 'main' AND comment IS NOT NULL AND NOT list_contains(?::VARCHAR[], table_name)",
        [main, list(LOG_TABLES)],
    ).fetchall():
        con.execute(
            f"COMMENT ON COLUMN replica.main.{_identifier(table)}.{_identifier(column)} IS {sql_literal(comment)}"
        )


def _identifier(name: str) -> str:
    """A name from the warehouse's own catalog as a quoted SQL identifier (refusing a quote)."""
    if '"' in name:
        raise WarehouseError(f"cannot publish {name!r} to the read replica: its name holds a double quote")
    return f'"{name}"'


#: DuckDB's memory limit while a slot is seeded: the copy streams table by table, and a higher
#: limit only lets DuckDB keep what it read cached (at 5,000 tickers, 8.2 GB of process RSS
#: against 2.1 GB, in the same 47 s).
SEED_MEMORY_LIMIT = "2GiB"


def _bring_up_to_date(con: duckdb.DuckDBPyConnection, slot: Path, seq: int) -> bool:
    """Attach `slot` and make it hold generation `seq`; False if a reader holds it."""
    if not slot.exists():
        _seed(con, slot, seq)
        return True
    if not _attach(con, slot):
        return False
    state = _slot_state(con)
    pending = (
        _pending(con, state[0], seq) if state and state[1] == schema_hash() and state[0] <= seq else None
    )
    if pending is None:
        con.execute("DETACH replica")
        _seed(con, slot, seq)
        return True
    if pending and _whole_table_rows(con, pending) >= RESEED_ROWS:
        # Copying millions of rows through one transaction holds them all in memory (12.7 GB for
        # the 25-million-row features table of 5,000 tickers): a seed writes each table as it goes.
        con.execute("DETACH replica")
        _seed(con, slot, seq)
        return True
    if pending:
        main = con.execute("SELECT current_database()").fetchone()[0]
        con.execute("BEGIN TRANSACTION")
        try:
            for table, slices in sorted(pending.items()):
                _sync_table(con, main, table, slices)
            con.execute("UPDATE replica.main.replica_meta SET value = ? WHERE key = 'generation'", [str(seq)])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            con.execute("DETACH replica")
            raise
    return True


def publish(
    con: duckdb.DuckDBPyConnection, path: str | os.PathLike[str] | None = None, *, seed: bool = False
) -> Path:
    """Publish the warehouse's committed state as its replica (see the module docstring). `con`
    must be the open read-write connection to the warehouse `path`, outside any transaction: it
    holds the write lock, so nothing changes the warehouse meanwhile. `seed` rebuilds the slot
    from the whole warehouse, table by table."""
    source = warehouse_path(path)
    link = replica_path(path)
    try:
        _ensure_log(con)
        seq = _current_seq(con)
        current = _current_slot(link)
        if not seed and current is not None and current.exists() and _recorded(con, current) == seq:
            return link  # nothing committed since the current slot was published
        slot = None
        for k in range(1000):
            candidate = slot_path(path, k)
            if candidate == current or _HELD[str(candidate)]:
                continue
            if seed and candidate.exists() and _attach(con, candidate):
                con.execute("DETACH replica")
                candidate.unlink()
            if _bring_up_to_date(con, candidate, seq):
                slot = k
                break
        if slot is None:
            raise WarehouseError("every read-replica slot is held by a reader")
        _swap(con, link, slot_path(path, slot))
        _record_slot(con, path, slot, seq)
    except (OSError, duckdb.Error) as exc:
        raise WarehouseError(
            f"the write to {str(source)!r} is committed, but the read replica {str(link)!r} could "
            f"not be published ({exc}); readers see the previous snapshot until the next write or "
            f"`python -m warehouse.replica`"
        ) from exc
    return link


def _recorded(con: duckdb.DuckDBPyConnection, slot: Path) -> int | None:
    row = con.execute(
        "SELECT seq FROM replica_slots WHERE slot = ?", [int(slot.name.split(".")[-2])]
    ).fetchone()
    return row[0] if row else None


def _swap(con: duckdb.DuckDBPyConnection, link: Path, slot: Path) -> None:
    """Checkpoint and detach the attached `slot`, flush it, point the link at it (atomically)."""
    con.execute("CHECKPOINT replica")
    con.execute("DETACH replica")
    wal = slot.with_name(slot.name + ".wal")
    if wal.exists():
        raise WarehouseError(f"the replica slot {str(slot)!r} has a WAL after its checkpoint")
    _fsync(slot)
    tmp = link.with_name(link.stem + ".tmp.duckdb")
    tmp.unlink(missing_ok=True)
    os.symlink(slot.name, tmp)
    os.replace(tmp, link)
    _fsync(link.parent)


def _record_slot(
    con: duckdb.DuckDBPyConnection, path: str | os.PathLike[str] | None, slot: int, seq: int
) -> None:
    """Note the slot's generation; drop log entries every existing slot has applied."""
    con.execute("BEGIN TRANSACTION")
    con.execute("INSERT OR REPLACE INTO replica_slots VALUES (?, ?)", [slot, seq])
    gone = [
        k
        for (k,) in con.execute("SELECT slot FROM replica_slots").fetchall()
        if not slot_path(path, k).exists()
    ]
    if gone:
        con.execute("DELETE FROM replica_slots WHERE list_contains(?, slot)", [gone])
    con.execute("DELETE FROM publication_log WHERE seq <= (SELECT min(seq) FROM replica_slots)")
    con.execute("COMMIT")


# -- readers ---------------------------------------------------------------------------------


@contextmanager
def connect_replica(path: str | os.PathLike[str] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the replica of warehouse `path`, for the `with` block (to the lake
    itself for a DuckLake warehouse)."""
    if is_lake(path):
        with connect(path, read_only=True) as con:
            yield con
        return
    link = replica_path(path)
    for attempt in range(20):
        if not link.exists():
            raise WarehouseError(
                f"the read replica {str(link)!r} does not exist yet: it is published by the first write "
                "(run the pipeline) or by `python -m warehouse.replica`"
            )
        target = str(_current_slot(link) or link)
        _HELD[target] += 1
        try:
            con = duckdb.connect(target, read_only=True)
            break
        except duckdb.IOException as exc:
            _release(target)
            if not _is_lock_error(exc) or attempt == 19:
                raise
            time.sleep(0.01)  # the slot became a publication's target: the link has moved on
        except BaseException:
            _release(target)
            raise
    try:
        yield con
    finally:
        con.close()
        _release(target)


def _release(target: str) -> None:
    _HELD[target] -= 1
    if not _HELD[target]:
        del _HELD[target]


def read_replica_sql(
    sql: str, params: Sequence[Any] = (), path: str | os.PathLike[str] | None = None
) -> pl.DataFrame:
    """Run a query on the replica and return a polars frame."""
    with connect_replica(path) as con:
        return con.sql(sql, params=list(params) or None).pl()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Publish the warehouse's read replica now.")
    parser.add_argument("path", nargs="?", help="the warehouse file (default: $FORECAST_WAREHOUSE)")
    parser.add_argument(
        "--seed", action="store_true", help="rebuild a slot from the whole warehouse, table by table"
    )
    args = parser.parse_args(argv)
    if is_lake(args.path):
        raise SystemExit(
            f"{str(warehouse_path(args.path))!r} is a DuckLake warehouse: readers read it, no replica"
        )
    if not warehouse_path(args.path).exists():
        raise SystemExit(f"no warehouse at {str(warehouse_path(args.path))!r}: run the pipeline first")
    with connect(args.path) as con:
        print(publish(con, args.path, seed=args.seed))


if __name__ == "__main__":
    main()
