"""The warehouse on DuckLake (`warehouse.lake`): a settings file selects it; the same schema, views
and macros, the same reads and writes, on a catalog in SQLite and in PostgreSQL.

The settings and the SQL translation are checked everywhere; the rest needs the DuckLake
extensions, so it runs in .venv-ducklake (`make test-ducklake`) and is skipped in .venv.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from forecast_core.errors import ConfigError
from tests.support.lake import KINDS, duplicates, new_lake, requires_ducklake
from tests.support.warehouse import prices
from warehouse import connect, db, lake, read_sql, read_table, transaction, warehouse_path
from warehouse.db import WarehouseError
from warehouse.io import ParquetRows, table_exists
from warehouse.replica import connect_replica, replica_path

ROOT = Path(__file__).resolve().parents[2]


# --- settings and SQL (no extension needed) ------------------------------------------------------


def test_a_toml_warehouse_path_names_a_lake_and_its_paths_resolve_beside_it(tmp_path):
    settings = lake.write_settings(tmp_path / "lake.toml", "sqlite:meta/catalog.sqlite", "data")
    assert warehouse_path(settings) == settings and db.is_lake(settings)
    assert not db.is_lake(tmp_path / "w.duckdb")
    loaded = lake.load(settings)
    assert loaded.catalog == f"sqlite:{tmp_path.resolve()}/meta/catalog.sqlite"
    assert loaded.data_path == f"{tmp_path.resolve()}/data/"
    pg = lake.write_settings(tmp_path / "pg.toml", "postgres:host=db port=5432 user=f dbname=lake", "/srv/d/")
    assert lake.load(pg).catalog == "postgres:host=db port=5432 user=f dbname=lake"


@pytest.mark.parametrize(
    "text,message",
    [
        ('backend = "iceberg"\ncatalog = "sqlite:c"\ndata_path = "d"', "expected backend"),
        ('backend = "ducklake"\ncatalog = "mysql:x"\ndata_path = "d"', "must start with"),
        ('backend = "ducklake"\ncatalog = "sqlite:c"\ndata_path = "d\'; DROP"', "invalid data_path"),
        ('backend = "ducklake"\ncatalog = "postgres:user=a password=b"\ndata_path = "d"', "PGPASSWORD"),
        ('backend = "ducklake"\ncatalog = "sqlite:c"\ndata_path = "d"\ncatalgo = 1', "unknown settings"),
        ('backend = "ducklake"\ncatalog = "sqlite:c"', "invalid data_path"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(tmp_path, text, message):
    (tmp_path / "lake.toml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        lake.load(tmp_path / "lake.toml")


def test_schema_translation_drops_only_the_keys_and_keeps_key_columns_not_null():
    schema = (ROOT / "warehouse" / "schema.sql").read_text()
    translated = lake.translate(schema)
    assert "PRIMARY KEY" not in translated
    assert "fold        INTEGER NOT NULL," in translated  # `fold INTEGER PRIMARY KEY` in schema.sql
    assert translated.count("COMMENT ON") == schema.count("COMMENT ON")
    assert translated.count("CREATE TABLE") == schema.count("CREATE TABLE")
    with pytest.raises(lake.LakeError, match="REFERENCES"):
        lake.translate("CREATE TABLE a (x INTEGER REFERENCES b (x));")


def test_outside_the_ducklake_environment_the_error_says_which_environment(tmp_path):
    if lake.DUCKDB_VERSION == __import__("duckdb").__version__:
        pytest.skip("this is the DuckLake environment")
    settings = lake.write_settings(tmp_path / "lake.toml", "sqlite:c.sqlite", "data/")
    with pytest.raises(WarehouseError, match="venv-ducklake"):
        with transaction(settings) as w:
            w.replace("raw_prices", prices(("KO",)))


# --- on a lake --------------------------------------------------------------------------------------


@pytest.fixture(params=KINDS)
def settings(request, tmp_path) -> Path:
    return new_lake(tmp_path / "lake", request.param)


def snapshots(settings: Path) -> int:
    with connect(settings, read_only=True) as con:
        return con.execute("SELECT id FROM current_snapshot()").fetchone()[0]


@requires_ducklake
def test_the_schema_views_and_comments_are_those_of_the_duckdb_file(settings, tmp_path):
    assert not table_exists("raw_prices", settings)
    with pytest.raises(WarehouseError, match="does not exist yet"):
        read_sql("SELECT 1", path=settings)
    with transaction(settings) as w:
        w.replace("raw_prices", prices(("KO",)))
    file = tmp_path / "w.duckdb"
    with transaction(file) as w:
        w.replace("raw_prices", prices(("KO",)))

    def objects(path):
        with connect(path, read_only=True) as con:
            here = "database_name = current_database()"
            # The replica's publication log exists in a DuckDB file only (a lake has no replica).
            tables = f"{here} AND table_name NOT IN ('publication_log', 'replica_slots')"
            return (
                con.execute(
                    f"SELECT table_name, comment FROM duckdb_tables() WHERE {tables} ORDER BY 1"
                ).fetchall(),
                con.execute(
                    f"SELECT view_name FROM duckdb_views() WHERE {here} AND NOT internal ORDER BY 1"
                ).fetchall(),
                con.execute(
                    f"SELECT table_name, column_name, data_type, is_nullable, comment FROM duckdb_columns() "
                    f"WHERE {tables} AND table_name IN (SELECT table_name FROM duckdb_tables()) ORDER BY ALL"
                ).fetchall(),
            )

    assert objects(settings) == objects(file)
    assert table_exists("raw_prices", settings) and not table_exists("features", settings)
    # Every view answers on the lake as on the file.
    for view in (
        "latest_forecasts",
        "model_leaderboard",
        "rolling_accuracy",
        "calibration",
        "strategy_comparison",
    ):
        assert read_table(view, path=settings).columns == read_table(view, path=file).columns


@requires_ducklake
def test_the_schema_is_applied_once_then_left_alone(settings):
    with transaction(settings) as w:
        w.replace("raw_prices", prices(("KO",)))
    first = snapshots(settings)
    with connect(settings) as con:
        db.ensure_schema(con)
    assert snapshots(settings) == first  # nothing committed: no view re-created
    with connect(settings) as con:
        con.execute("UPDATE schema_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(WarehouseError, match="schema version 99"):
        with transaction(settings) as w:
            w.replace("raw_prices", prices(("KO",)))


@requires_ducklake
def test_writes_replace_slices_and_a_failed_block_leaves_the_previous_contents(settings):
    with transaction(settings) as w:
        w.replace("raw_prices", prices(("AAPL", "KO"), days=3))
    with transaction(settings) as w:
        w.replace("raw_prices", prices(("KO",), days=3, close=7.0), "ticker = ?", ["KO"])
    stored = read_table("raw_prices", path=settings, order_by="ticker, date")
    assert stored.group_by("ticker").agg(pl.col("close").min()).sort("ticker").rows() == [
        ("AAPL", 100.0),
        ("KO", 7.0),
    ]
    with pytest.raises(RuntimeError, match="boom"):
        with transaction(settings) as w:
            w.replace("raw_prices", prices(("KO",), days=1, close=1.0), "ticker = ?", ["KO"])
            raise RuntimeError("boom")
    assert read_table("raw_prices", path=settings, order_by="ticker, date").equals(stored)
    # `features` is recreated whole, with the frame's columns.
    frame = pl.DataFrame({"ticker": ["KO"], "date": [dt.date(2024, 1, 2)], "ret_1": [0.1]})
    with transaction(settings) as w:
        w.replace_table("features", frame)
    assert read_table("features", path=settings).equals(frame)


@requires_ducklake
def test_a_conflicting_commit_is_replayed_on_the_newer_snapshot(settings):
    """Two transactions replace disjoint slices of one table at once: DuckLake refuses the second
    COMMIT (the first deleted from the table), the writer replays its writes and commits: both
    slices are there, once."""
    with transaction(settings) as w:
        w.replace("raw_prices", prices(("AAPL", "KO"), days=3))
    with transaction(settings) as outer:
        outer.replace("raw_prices", prices(("AAPL",), days=3, close=1.0), "ticker = ?", ["AAPL"])
        with transaction(settings) as inner:  # another connection, committed first
            inner.replace("raw_prices", prices(("KO",), days=3, close=2.0), "ticker = ?", ["KO"])
    assert outer.retries >= 1 and inner.retries == 0
    stored = read_table("raw_prices", path=settings)
    assert stored.group_by("ticker").agg(pl.col("close").min(), pl.len()).sort("ticker").rows() == [
        ("AAPL", 1.0, 3),
        ("KO", 2.0, 3),
    ]
    with connect(settings, read_only=True) as con:
        assert duplicates(con, "raw_prices") == 0


@requires_ducklake
def test_staged_rows_are_written_and_replayed_from_their_files(settings, tmp_path):
    """A write from Parquet files (`ParquetRows`, the fold evaluation's) on a lake, in a block that
    conflicts at COMMIT: the replay reads the files again, and the rows are there once."""
    with transaction(settings) as w:
        w.replace("raw_prices", prices(("AAPL", "KO"), days=3))
    staged = tmp_path / "aapl.parquet"
    prices(("AAPL",), days=3, close=1.0).write_parquet(staged)
    with transaction(settings) as outer:
        outer.replace("raw_prices", ParquetRows((str(staged),)), "ticker = ?", ["AAPL"])
        with transaction(settings) as inner:
            inner.replace("raw_prices", prices(("KO",), days=3, close=2.0), "ticker = ?", ["KO"])
    assert outer.retries >= 1 and outer.rows_written == {"raw_prices": 3}
    stored = read_table("raw_prices", path=settings)
    assert stored.group_by("ticker").agg(pl.col("close").min(), pl.len()).sort("ticker").rows() == [
        ("AAPL", 1.0, 3),
        ("KO", 2.0, 3),
    ]


@requires_ducklake
def test_readers_need_no_replica(settings):
    with transaction(settings) as w:
        w.replace("raw_prices", prices(("KO",)))
    with connect_replica(settings) as con:  # the lake itself, read-only
        assert con.execute("SELECT count(*) FROM raw_prices").fetchone() == (3,)
        with pytest.raises(Exception, match="read-only|READ_ONLY|attached in read-only mode"):
            con.execute("DELETE FROM raw_prices")
    with pytest.raises(WarehouseError, match="no read replica"):
        replica_path(settings)
    assert not list(settings.parent.glob("*.duckdb"))
