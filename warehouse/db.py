"""Connections to the warehouse file and idempotent schema application.

No connection is opened at import time or kept between steps: every caller opens one with
`connect()` for the duration of a read or a transaction. DuckDB allows one writer process per file;
a writer that finds the file locked by another process retries for a while before failing with a
message that says so, and so does a read-only open (DuckDB refuses it while a writer holds the
file). Readers outside the job open the read replica instead (`warehouse.replica`), which no
writer ever locks.

A path ending in `.toml` names a DuckLake warehouse instead (`warehouse.lake`): the same functions
then attach it, and many processes read and write it at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import duckdb

from forecast_core.config import validate_path
from forecast_core.errors import ConfigError, ForecastError
from warehouse import lake

#: Bumped whenever schema.sql changes incompatibly; stored in `schema_meta`.
SCHEMA_VERSION = 2
DEFAULT_PATH = "warehouse/forecast.duckdb"
ENV_VAR = "FORECAST_WAREHOUSE"


class WarehouseError(ForecastError):
    """The warehouse cannot be used as asked (locked, newer schema, bad path)."""


def warehouse_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The warehouse file: `path`, else $FORECAST_WAREHOUSE, else warehouse/forecast.duckdb.

    Raises `ConfigError` if the path names a directory, has an unusable suffix or characters
    outside `forecast_core.config.PATH_PATTERN` (quotes, semicolons, control characters).
    """
    raw = os.fspath(path) if path is not None else os.environ.get(ENV_VAR) or DEFAULT_PATH
    validate_path(raw, "warehouse path" if path is not None else ENV_VAR)
    p = Path(raw).expanduser()
    if p.is_dir():
        raise ConfigError(f"warehouse path {str(p)!r} is a directory; give a .duckdb file path")
    if p.suffix not in (".duckdb", ".db", lake.SUFFIX):
        raise ConfigError(
            f"warehouse path {str(p)!r} must end in .duckdb or .db (or {lake.SUFFIX} for the settings "
            "file of a DuckLake warehouse)"
        )
    return p


def is_lake(path: str | os.PathLike[str] | None = None) -> bool:
    """Whether the warehouse `path` (default: as `warehouse_path`) is a DuckLake settings file."""
    return lake.is_lake_path(warehouse_path(path))


def _sql(name: str) -> str:
    return resources.files("warehouse").joinpath(name).read_text()


#: How DuckDB reports a file locked by another process (1.x and 2.0: "Could not set lock on file
#: ...: Conflicting lock is held in ..."; Windows: "... being used by another process"). Matched as
#: phrases, not the bare word "lock", which a file path may contain ("/var/lock", "blocks/").
_LOCK_PHRASES = ("could not set lock", "conflicting lock", "being used by another process")


def _is_lock_error(exc: duckdb.Error) -> bool:
    text = str(exc).lower()
    return any(phrase in text for phrase in _LOCK_PHRASES)


@contextmanager
def connect(
    path: str | os.PathLike[str] | None = None,
    *,
    read_only: bool = False,
    lock_timeout_s: float = 120.0,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse for the duration of a `with` block, retrying while another process
    holds the write lock (up to `lock_timeout_s`)."""
    p = warehouse_path(path)
    if lake.is_lake_path(p):
        with _connect_lake(p, read_only=read_only, timeout_s=lock_timeout_s) as con:
            yield con
        return
    if read_only and not p.exists():
        raise WarehouseError(f"warehouse {str(p)!r} does not exist yet: run the pipeline first")
    if not read_only:
        p.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_timeout_s
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(p), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if not _is_lock_error(exc) or time.monotonic() > deadline:
                raise WarehouseError(
                    f"cannot open warehouse {str(p)!r}"
                    f"{' (still locked by another process)' if _is_lock_error(exc) else ''}: {exc}"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    try:
        yield con
    finally:
        con.close()


@contextmanager
def _connect_lake(p: Path, *, read_only: bool, timeout_s: float) -> Iterator[duckdb.DuckDBPyConnection]:
    settings = lake.load(p)
    try:
        con = lake.connect(settings, read_only=read_only, timeout_s=timeout_s)
    except (lake.LakeError, duckdb.Error) as exc:
        raise WarehouseError(f"cannot open the DuckLake warehouse {str(p)!r}: {exc}") from exc
    try:
        yield con
    except (duckdb.ConnectionException, duckdb.IOException):
        lake.forget(settings)  # the catalog server went away: attach anew next time
        raise
    finally:
        con.close()


def _drop_the_old_explanation_grid(con: duckdb.DuckDBPyConnection) -> None:
    """`forecast_explanations` once held every (feature, lag) cell; it now holds per-feature totals
    (and `forecast_explanation_lags` the per-lag ones). The old table is derived data: it is
    dropped, and re-materializing `forecast_explanations` fills the new ones."""
    if con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database() "
        "AND table_name = 'forecast_explanations' AND column_name = 'lag'"
    ).fetchone()[0]:
        con.execute("DROP TABLE forecast_explanations")


_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def _size_bytes(text: str) -> float:
    """`'18.8 GiB'` (how DuckDB shows `memory_limit`), or `'2GiB'` -> bytes."""
    number = text.rstrip("bytesKMGTiB ")
    return float(number) * _UNITS[text[len(number) :].strip()]


@contextmanager
def memory_limit(con: duckdb.DuckDBPyConnection, limit: str) -> Iterator[None]:
    """DuckDB's `memory_limit` at most `limit` for the `with` block (a lower one is kept): for work
    that streams (DuckDB spills what does not fit to its temporary directory), so that a higher
    limit would only let it keep what it read cached."""
    prior = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    try:
        lower = _size_bytes(prior) <= _size_bytes(limit)
    except (KeyError, ValueError):  # a display this code does not know: leave the setting alone
        lower = True
    if lower:
        yield
        return
    con.execute(f"SET memory_limit = {sql_literal(limit)}")
    try:
        yield
    except BaseException:
        try:
            con.execute(f"SET memory_limit = {sql_literal(prior)}")
        except duckdb.Error:
            pass  # an aborted transaction refuses it: the block's own error is the one to raise
        raise
    con.execute(f"SET memory_limit = {sql_literal(prior)}")


def sql_literal(text: str) -> str:
    """`text` as a SQL string literal, quotes doubled (SET and COMMENT ON take no bound parameter)."""
    return "'" + text.replace("'", "''") + "'"


#: Tables that once had a PRIMARY KEY and that `schema.sql` now creates without one (the writer
#: keeps the key: `warehouse.io.UNKEYED`): `targets` (50 million rows at 5,000 tickers, of which a
#: night rewrites 60,000), `fold_predictions` (88 million, written at once by the fold evaluation)
#: and `backtest_returns` (about 100 million, written at once by the backtest).
UNKEYED_SINCE = ("targets", "fold_predictions", "backtest_returns")


def _set_keyed_tables_aside(con: duckdb.DuckDBPyConnection) -> None:
    """A table of `UNKEYED_SINCE` that still has its key is renamed aside here, `schema.sql`
    creates the new one, and `_refill_unkeyed_tables` moves the rows across, in the schema's
    transaction."""
    for table in UNKEYED_SINCE:
        if con.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE database_name = current_database() "
            "AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [table],
        ).fetchone()[0]:
            con.execute(f"ALTER TABLE {table} RENAME TO {table}__keyed")


def _refill_unkeyed_tables(con: duckdb.DuckDBPyConnection) -> None:
    for table in UNKEYED_SINCE:
        if con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() AND table_name = ?",
            [f"{table}__keyed"],
        ).fetchone()[0]:
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {table}__keyed")
            con.execute(f"DROP TABLE {table}__keyed")


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create missing tables and (re)create views, in one transaction; idempotent.

    Refuses a warehouse written by a newer schema version than this code knows. On DuckLake the
    schema is applied only when it differs from the lake's (`warehouse.lake.ensure_schema`).
    """
    if lake.is_lake_connection(con):
        try:
            lake.ensure_schema(con, SCHEMA_VERSION, _sql("schema.sql"), _sql("views.sql"))
        except lake.LakeError as exc:
            raise WarehouseError(str(exc)) from exc
        return
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)"
        )
        row = con.execute("SELECT value FROM schema_meta WHERE key = 'schema_version'").fetchone()
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise WarehouseError(
                f"the warehouse was written by schema version {row[0]}, newer than this code's "
                f"{SCHEMA_VERSION}: upgrade the package instead of writing to it"
            )
        _drop_the_old_explanation_grid(con)
        _set_keyed_tables_aside(con)
        con.execute(_sql("schema.sql"))
        _refill_unkeyed_tables(con)
        con.execute(_sql("views.sql"))
        con.execute("INSERT OR REPLACE INTO schema_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
