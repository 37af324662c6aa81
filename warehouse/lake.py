"""The warehouse on DuckLake: the same tables, views, macros and SQL, with a catalog database
(PostgreSQL for many machines, SQLite for one) and the data as Parquet files in a directory.

A DuckLake warehouse is named by a settings file in place of the `.duckdb` file, wherever a
warehouse path goes (`FORECAST_WAREHOUSE`, `build_defs(config_file, warehouse)`, every function of
`warehouse`), ending in `.toml`:

    backend = "ducklake"
    catalog = "postgres:host=db.internal port=5432 user=forecast dbname=forecast_lake"
    # or, on one machine:  catalog = "sqlite:lake/catalog.sqlite"
    data_path = "lake/data/"

Relative paths are relative to the file. The PostgreSQL password is never in the file: libpq reads
it from `PGPASSWORD` (or `PGPASSFILE`), like every other libpq setting it may take from the
environment (`PGHOST`, `PGSSLMODE`, ...).

What changes against the DuckDB file (`warehouse.db`, `warehouse.io`):
- Every connection is an in-memory DuckDB that loads the extensions and attaches the lake
  (`ATTACH 'ducklake:<catalog>' AS forecast (DATA_PATH ...)`, then `USE forecast`), so every query
  of the project runs unchanged. The extensions come from the PyPI wheels of the `ducklake` extra,
  built for DuckDB 1.5.5: this backend needs `.venv-ducklake` (`make venv-ducklake`).
- Many processes read and write at once. A writer's block is one DuckLake transaction; readers see
  the last committed snapshot, never part of a transaction, so they need no read replica.
- DuckLake commits optimistically: two transactions that write the same table conflict at COMMIT
  (one deleted rows the other's insert would sit beside). The writer then replays its block: every
  write of `warehouse.io.Writer` is "replace the slice WHERE ... with these rows", a pure function
  of its arguments, so the block's writes are recorded and re-run in a new transaction on the newer
  snapshot, with exponential backoff and jitter, until it commits or the deadline passes
  (`COMMIT_TIMEOUT_S`). The result is the one a serial order of the writers would give.
- The schema is applied only when it changed (its digest is kept in `schema_meta`): re-creating
  views in every write would make every pair of concurrent writers conflict.

SQL that DuckLake cannot hold, and its replacement (`translate`):
- `PRIMARY KEY` and `UNIQUE` constraints: dropped from `schema.sql` (an inline key column stays
  `NOT NULL`). Uniqueness is kept by the writers, whose every write replaces its whole slice in one
  transaction, and checked by the tests (no duplicated keys after concurrent runs).
- `INSERT OR REPLACE` (it needs a key): `schema_meta` is written with DELETE then INSERT.
- Every view and macro of `views.sql` is stored in the DuckLake catalog as it is (tested).

Maintenance (small files, old snapshots): `maintain`.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import hashlib
import importlib.util
import os
import random
import re
import sqlite3
import threading
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import duckdb

from forecast_core.errors import ConfigError

SUFFIX = ".toml"
BACKEND = "ducklake"
ALIAS = "forecast"
#: DuckDB version the extension wheels are built for (their directory is named after it).
DUCKDB_VERSION = "1.5.5"
#: How long a writer keeps replaying a conflicting transaction before it fails.
COMMIT_TIMEOUT_S = 300.0
#: No quotes, semicolons or control characters: the values are spliced into ATTACH.
_SETTING_PATTERN = re.compile(r"^[\w .,+@~:/=\\()\-]+$")
_CONFLICT_PHRASES = (
    "transaction conflict",
    "database is locked",  # SQLite catalog: another process is committing, or our snapshot is old
    "database table is locked",
    "could not serialize",  # PostgreSQL catalog: serialization failure
    "deadlock detected",
    "duplicate key value",  # two first commits racing for the same snapshot id
)


class LakeError(Exception):
    """Base for errors raised here (wrapped into WarehouseError by `warehouse.db`)."""


@dataclasses.dataclass(frozen=True)
class Lake:
    """A DuckLake warehouse as its settings file names it."""

    settings: Path
    catalog: str  # "postgres:<libpq string>" or "sqlite:<absolute path>"
    data_path: str  # absolute, ends with "/"

    @property
    def kind(self) -> str:
        return self.catalog.split(":", 1)[0]

    @property
    def sqlite_file(self) -> Path | None:
        return Path(self.catalog.split(":", 1)[1]) if self.kind == "sqlite" else None


def is_lake_path(path: Path) -> bool:
    return path.suffix == SUFFIX


def _resolve(base: Path, value: str) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def load(settings: Path) -> Lake:
    """Read and check a DuckLake settings file; raises ConfigError naming the problem."""
    if not settings.is_file():
        raise ConfigError(f"DuckLake settings file {str(settings)!r} does not exist")
    try:
        values = tomllib.loads(settings.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"DuckLake settings file {str(settings)!r}: {exc}") from exc
    unknown = set(values) - {"backend", "catalog", "data_path"}
    if unknown:
        raise ConfigError(f"DuckLake settings file {str(settings)!r}: unknown settings {sorted(unknown)}")
    if values.get("backend") != BACKEND:
        raise ConfigError(f"{str(settings)!r}: expected backend = {BACKEND!r}, got {values.get('backend')!r}")
    for key in ("catalog", "data_path"):
        value = values.get(key)
        if not isinstance(value, str) or not _SETTING_PATTERN.fullmatch(value):
            raise ConfigError(
                f"{str(settings)!r}: invalid {key} = {value!r} (a string without quotes, semicolons "
                "or control characters)"
            )
    kind, _, rest = values["catalog"].partition(":")
    base = settings.resolve().parent
    if kind == "sqlite":
        catalog = f"sqlite:{_resolve(base, rest)}"
    elif kind == "postgres":
        if "password" in rest.lower():
            raise ConfigError(f"{str(settings)!r}: no password in the catalog; set PGPASSWORD instead")
        catalog = f"postgres:{rest.strip()}"
    else:
        raise ConfigError(f"{str(settings)!r}: catalog must start with 'postgres:' or 'sqlite:'")
    return Lake(settings, catalog, _resolve(base, values["data_path"]).rstrip("/") + "/")


def write_settings(settings: Path, catalog: str, data_path: str) -> Path:
    """Write a settings file (for tests and `make` targets); returns its path."""
    settings.write_text(f'backend = "{BACKEND}"\ncatalog = "{catalog}"\ndata_path = "{data_path}"\n')
    load(settings)
    return settings


# --- extensions and connections ----------------------------------------------------------------


def _extension(package: str, name: str) -> str:
    spec = importlib.util.find_spec(package)
    candidates = []
    if spec and spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        candidates = sorted(root.glob(f"extensions/v{duckdb.__version__}/{name}.duckdb_extension"))
    if not candidates:
        raise LakeError(
            f"the DuckLake backend needs DuckDB {DUCKDB_VERSION} with the {package} wheel (found DuckDB "
            f"{duckdb.__version__}{'' if spec else f' and no {package}'}): use .venv-ducklake "
            "(`make venv-ducklake`, the `ducklake` extra)"
        )
    return str(candidates[0])


def load_extensions(con: duckdb.DuckDBPyConnection, lake: Lake) -> None:
    scanner = {"postgres": "postgres_scanner", "sqlite": "sqlite_scanner"}[lake.kind]
    for package, name in (
        ("duckdb_extension_ducklake", "ducklake"),
        (f"duckdb_extension_{scanner}", scanner),
    ):
        con.execute(f"LOAD '{_extension(package, name)}'")


def is_conflict(exc: BaseException) -> bool:
    """A commit or catalog error that a retry on a newer snapshot resolves."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and any(p in text for p in _CONFLICT_PHRASES)


def _prepare_sqlite(lake: Lake) -> None:
    """A new SQLite catalog in WAL mode, so that readers never block a committing writer."""
    file = lake.sqlite_file
    assert file is not None
    file.parent.mkdir(parents=True, exist_ok=True)
    if not file.exists():
        with contextlib.closing(sqlite3.connect(file)) as db:
            db.execute("PRAGMA journal_mode=WAL")


def exists(lake: Lake) -> bool:
    """Whether the catalog holds a DuckLake (it is created by the first write)."""
    if lake.kind == "sqlite":
        file = lake.sqlite_file
        if not file or not file.exists():
            return False
        with contextlib.closing(sqlite3.connect(f"file:{file}?mode=ro", uri=True)) as db:
            return bool(
                db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'ducklake_metadata'").fetchone()[
                    0
                ]
            )
    try:
        with contextlib.closing(attach(lake, read_only=True)):
            return True
    except duckdb.Error:
        return False


def attach(lake: Lake, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake attached as the current database."""
    if lake.kind == "sqlite" and not read_only:
        _prepare_sqlite(lake)
    if not read_only:
        Path(lake.data_path).mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        load_extensions(con, lake)
        options = f"DATA_PATH '{lake.data_path}'" + (", READ_ONLY" if read_only else "")
        con.execute(f"ATTACH 'ducklake:{lake.catalog}' AS {ALIAS} ({options})")
        con.execute(f"USE {ALIAS}")
    except BaseException:
        con.close()
        raise
    return con


#: One attached in-memory DuckDB per process, settings and mode; `connect` hands out cursors of it.
_ROOTS: dict[tuple[int, str, bool], duckdb.DuckDBPyConnection] = {}
_ROOTS_LOCK = threading.Lock()


def _key(lake: Lake, read_only: bool) -> tuple[int, str, bool]:
    return (os.getpid(), f"{lake.catalog}|{lake.data_path}", read_only)


def connect(lake: Lake, *, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
    """A connection to the lake, for one read or one transaction: a cursor of this process's
    attached DuckDB (loading the extensions and attaching the catalog costs about 0.3 s, a cursor
    nothing). Each transaction of a cursor reads the catalog's latest snapshot, so a cached
    attachment sees every other process's commits. The first attach retries while the catalog is
    busy (a SQLite file mid-commit, a first creation racing another process)."""
    key = _key(lake, read_only)
    with _ROOTS_LOCK:
        root = _ROOTS.get(key)
        if root is None:
            if read_only and not exists(lake):
                raise LakeError(
                    f"the DuckLake warehouse {str(lake.settings)!r} does not exist yet: run the pipeline first"
                )
            root = _ROOTS[key] = _attach_retrying(lake, read_only=read_only, timeout_s=timeout_s)
    cursor = root.cursor()
    try:
        cursor.execute(f"USE {ALIAS}")
    except BaseException:
        cursor.close()
        forget(lake)
        raise
    return cursor


def _attach_retrying(lake: Lake, *, read_only: bool, timeout_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return attach(lake, read_only=read_only)
        except duckdb.Error as exc:
            if not is_conflict(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 1.0)


def forget(lake: Lake | None = None) -> None:
    """Close this process's attachments (of `lake`, or all): the next `connect` attaches anew.
    Called after a connection-level error, so that a restarted catalog server is reattached."""
    with _ROOTS_LOCK:
        for key in [k for k in _ROOTS if lake is None or k[1] == _key(lake, False)[1]]:
            with contextlib.suppress(duckdb.Error):
                _ROOTS.pop(key).close()


atexit.register(forget)


def is_lake_connection(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "SELECT type FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    return bool(row) and row[0] == BACKEND


# --- schema ------------------------------------------------------------------------------------

_TABLE_KEY = re.compile(r",\s*(PRIMARY KEY|UNIQUE)\s*\([^)]*\)", re.IGNORECASE)
_INLINE_KEY = re.compile(r"\s+PRIMARY KEY\b", re.IGNORECASE)
_INLINE_UNIQUE = re.compile(r"\s+UNIQUE\b(?!\s*\()", re.IGNORECASE)
_UNSUPPORTED = re.compile(r"\b(PRIMARY KEY|UNIQUE|REFERENCES|FOREIGN KEY)\b", re.IGNORECASE)


def translate(schema_sql: str) -> str:
    """schema.sql as DuckLake holds it: key and unique constraints dropped (a key column stays
    NOT NULL). Comments and every other statement are unchanged."""
    sql = _TABLE_KEY.sub("", schema_sql)
    sql = _INLINE_KEY.sub(" NOT NULL", sql)
    sql = _INLINE_UNIQUE.sub("", sql)
    code = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    code = re.sub(r"'(?:[^']|'')*'", "''", code)  # COMMENT ON text may say "primary key"
    left = _UNSUPPORTED.search(code)
    if left:
        raise LakeError(f"schema.sql has a constraint DuckLake cannot hold: {left.group(0)}")
    return sql


def ensure_schema(
    con: duckdb.DuckDBPyConnection, version: int, schema_sql: str, views_sql: str, timeout_s: float = 120.0
) -> bool:
    """Apply the schema and views if they differ from what the lake holds; True if applied.

    Refuses a lake written by a newer schema version (LakeError). Concurrent first applications
    conflict; the loser re-reads and finds the schema there.
    """
    ddl = translate(schema_sql) + "\n" + views_sql
    digest = hashlib.sha256(ddl.encode()).hexdigest()
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            stored = _stored_schema(con)
            if stored.get("schema_version") and int(stored["schema_version"]) > version:
                raise LakeError(
                    f"the warehouse was written by schema version {stored['schema_version']}, newer than "
                    f"this code's {version}: upgrade the package instead of writing to it"
                )
            if stored.get("schema_sha256") == digest and stored.get("schema_version") == str(version):
                return False
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(ddl)
                con.execute("DELETE FROM schema_meta WHERE key IN ('schema_version', 'schema_sha256')")
                con.execute(
                    "INSERT INTO schema_meta VALUES ('schema_version', ?), ('schema_sha256', ?)",
                    [str(version), digest],
                )
                con.execute("COMMIT")
            except BaseException:
                rollback(con)
                raise
            return True
        except duckdb.Error as exc:
            if not is_conflict(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)


def _stored_schema(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    try:  # one query (duckdb_tables() lists every attached catalog, slowly)
        return dict(con.execute("SELECT key, value FROM schema_meta").fetchall())
    except duckdb.CatalogException:
        return {}


# --- transactions ------------------------------------------------------------------------------


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back if a transaction is open (a failed DuckLake COMMIT has already ended it)."""
    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK")


#: Replays after a conflicting commit in this process (for tests and measurements).
REPLAYS = 0


def commit(
    con: duckdb.DuckDBPyConnection, replay: Callable[[], None], timeout_s: float = COMMIT_TIMEOUT_S
) -> int:
    """COMMIT the open transaction; on a conflict, replay its writes in a new transaction and try
    again (backoff with jitter) until it commits or `timeout_s` passes. Returns the retries."""
    global REPLAYS
    deadline = time.monotonic() + timeout_s
    delay, retries = 0.05, 0
    while True:
        try:
            con.execute("COMMIT")
            REPLAYS += retries
            return retries
        except duckdb.Error as exc:
            rollback(con)
            if not is_conflict(exc) or time.monotonic() > deadline:
                raise
        while True:
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)
            retries += 1
            con.execute("BEGIN TRANSACTION")
            try:
                replay()
                break
            except duckdb.Error as exc:
                rollback(con)
                if not is_conflict(exc) or time.monotonic() > deadline:
                    raise
            except BaseException:
                rollback(con)
                raise
