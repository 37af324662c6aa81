"""The read replica (`warehouse.replica`): published incrementally into alternating slot files
behind an atomically swapped link, equal to the warehouse after every commit, never rewriting a
slot a reader holds, and consistent after a failure in the middle of a publication."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tests.support.warehouse import folds_frame, prices
from warehouse import replica, transaction
from warehouse.db import WarehouseError, memory_limit
from warehouse.reads import IN_TICKERS
from warehouse.replica import connect_replica, read_replica_sql, replica_path, slot_path

TABLES = ("raw_prices", "folds", "features", "forecast_scores")

READER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.execute("SELECT count(*) FROM raw_prices").fetchone()[0], flush=True)
time.sleep(float(sys.argv[2]))
"""


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
    present = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall() for t in TABLES if t in present}


def assert_replica_equals_warehouse(path: Path) -> None:
    with duckdb.connect(str(path), read_only=True) as con:
        main = snapshot(con)
    with connect_replica(path) as con:
        assert snapshot(con) == main


def features(tickers: tuple[str, ...], column: str = "ret_1", value: float = 0.0) -> pl.DataFrame:
    return prices(tickers).select("ticker", "date", pl.lit(value).alias(column))


def write_prices(path: Path, tickers: tuple[str, ...], close: float) -> None:
    with transaction(path) as w:
        w.replace("raw_prices", prices(tickers, close=close), "list_contains(?, ticker)", [list(tickers)])


def log(path: Path) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT seq, table_name, predicate FROM publication_log ORDER BY ALL").fetchall()


def test_the_replica_equals_the_warehouse_after_every_kind_of_write(db: Path) -> None:
    writes = [
        lambda w: w.replace("raw_prices", prices(("AAA", "BBB"))),  # the whole table
        lambda w: w.replace("raw_prices", prices(("AAA",), close=5.0), "ticker = ?", ["AAA"]),  # a slice
        lambda w: w.replace("folds", folds_frame(2)),
        lambda w: w.replace_table("features", features(("AAA", "BBB"))),
        lambda w: w.replace_table("features", features(("AAA",), column="ret_5")),  # new columns
        # Rows outside the predicate: the whole table is copied, not the slice.
        lambda w: w.replace("raw_prices", prices(("CCC",), close=7.0), "ticker = ?", ["AAA"]),
        lambda w: w.replace(
            "raw_prices",
            prices(("BBB",), close=9.0),
            "date >= ? AND ticker = ?",
            [dt.date(2024, 1, 2), "BBB"],
        ),
    ]
    for i, write in enumerate(writes):
        with transaction(db) as w:
            write(w)
        assert_replica_equals_warehouse(db)
        # Two slots alternate behind the link.
        assert os.readlink(replica_path(db)) == slot_path(db, i % 2).name


def test_a_slice_write_logs_its_predicate_and_a_stray_row_logs_the_whole_table(db: Path) -> None:
    with transaction(db) as w:
        w.replace("raw_prices", prices(("AAA", "BBB")), "list_contains(?, ticker)", [["AAA", "BBB"]])
        w.replace("raw_prices", prices(("CCC",)), "ticker = ?", ["AAA"])  # CCC is outside ticker = 'AAA'
        w.replace("folds", folds_frame(2))
        assert w.changes == [
            ("raw_prices", "list_contains(?, ticker)", (["AAA", "BBB"],)),
            ("raw_prices", None, ()),
            ("folds", None, ()),
        ]
    assert_replica_equals_warehouse(db)


def test_chunked_ticker_slices_are_published_as_one_predicate_over_their_union(db: Path) -> None:
    """A write in ticker chunks (`reads.IN_TICKERS AND date >= ?`, as a night's `features`) is
    applied to the slot as one conjunction over the union of the chunks' tickers, and the slot
    still equals the warehouse, across two commits whose slices the stale slot applies together."""
    day = dt.date(2024, 1, 3)
    chunk = f"{IN_TICKERS} AND date >= ?"
    with transaction(db) as w:
        w.replace("raw_prices", prices(("AAA", "BBB", "CCC", "DDD")))
    for close in (2.0, 3.0):
        with transaction(db) as w:
            for names in (("AAA", "BBB"), ("CCC",)):
                frame = prices(names, close=close).filter(pl.col("date") >= day)
                w.replace("raw_prices", frame, chunk, [list(names), day])
            w.replace("raw_prices", prices(("DDD",), close=close), "ticker = ?", ["DDD"])
        assert_replica_equals_warehouse(db)
    slices = [(chunk, [["AAA", "BBB"], day]), ("ticker = ?", ["DDD"]), (chunk, [["CCC", "AAA"], day])]
    slices += [(chunk, [["EEE"], dt.date(2024, 1, 4)]), (IN_TICKERS, [["AAA"]]), (IN_TICKERS, [["FFF"]])]
    assert replica._coalesced(slices) == [
        (chunk, [["AAA", "BBB", "CCC"], day]),
        ("ticker = ?", ["DDD"]),
        (chunk, [["EEE"], dt.date(2024, 1, 4)]),  # other parameters: its own slice
        (IN_TICKERS, [["AAA", "FFF"]]),
    ]
    with connect_replica(db) as con:  # the second commit's prices (3 + day index), in the slot
        new = con.execute("SELECT DISTINCT close FROM raw_prices WHERE date >= ? ORDER BY 1", [day])
        assert new.fetchall() == [(4.0,), (5.0,)]


def test_a_slot_holds_the_tables_views_macros_and_comments_but_not_the_keys(db: Path) -> None:
    write_prices(db, ("AAA", "BBB"), 1.0)
    write_prices(db, ("AAA",), 2.0)  # the first slot seeded, the second updated in place

    def catalog(con: duckdb.DuckDBPyConnection) -> dict[str, list]:
        here = "database_name = current_database() AND schema_name = 'main'"
        return {
            "tables": con.execute(
                f"SELECT table_name, comment FROM duckdb_tables() WHERE {here} ORDER BY 1"
            ).fetchall(),
            "columns": con.execute(
                f"SELECT table_name, column_name, data_type, comment FROM duckdb_columns() WHERE {here} ORDER BY 1, 2"
            ).fetchall(),
            "views": con.execute(
                f"SELECT view_name FROM duckdb_views() WHERE {here} AND NOT internal ORDER BY 1"
            ).fetchall(),
            "keys": con.execute(
                f"SELECT DISTINCT table_name FROM duckdb_constraints() WHERE {here} "
                "AND constraint_type = 'PRIMARY KEY' ORDER BY 1"
            ).fetchall(),
        }

    with duckdb.connect(str(db), read_only=True) as con:
        main = catalog(con)
        as_of = con.execute("SELECT * FROM prices_as_of(1) ORDER BY ALL").fetchall()
    for k in (0, 1):
        with duckdb.connect(str(slot_path(db, k)), read_only=True) as con:
            slot = catalog(con)
        assert ("raw_prices",) in main["keys"] and slot["keys"] == [("replica_meta",)]
        assert slot["views"] == main["views"] and ("latest_forecasts",) in slot["views"]
        log_tables = {"publication_log", "replica_slots"}
        assert [t for t in slot["tables"] if t[0] != "replica_meta"] == [
            t for t in main["tables"] if t[0] not in log_tables
        ]
        assert any(comment for _, comment in slot["tables"])
        assert [c for c in slot["columns"] if c[0] != "replica_meta"] == [
            c for c in main["columns"] if c[0] not in log_tables
        ]
    with connect_replica(db) as con:  # the macro reads the slot's own tables
        assert con.execute("SELECT * FROM prices_as_of(1) ORDER BY ALL").fetchall() == as_of
    assert_replica_equals_warehouse(db)


def test_memory_limit_caps_duckdbs_and_restores_it() -> None:
    with duckdb.connect() as con:
        limit = lambda: con.execute("SELECT current_setting('memory_limit')").fetchone()[0]  # noqa: E731
        con.execute("SET memory_limit = '8GiB'")
        with memory_limit(con, "2GiB"):
            assert limit() == "2.0 GiB"
        assert limit() == "8.0 GiB"
        con.execute("SET memory_limit = '1GiB'")
        with memory_limit(con, "2GiB"):  # a lower limit is kept
            assert limit() == "1.0 GiB"
        assert limit() == "1.0 GiB"
        # A statement that aborts the transaction inside the block raises its own error, not the
        # aborted transaction's refusal to restore the limit.
        con.execute("SET memory_limit = '8GiB'")
        con.execute("CREATE TABLE t (a INTEGER PRIMARY KEY)")
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(duckdb.ConstraintException, match="(?i)duplicate key"):
            with memory_limit(con, "2GiB"):
                con.execute("INSERT INTO t VALUES (1)")
        con.execute("ROLLBACK")
        assert (
            limit() == "2.0 GiB"
        )  # where the transaction refused it (a writer's connection is closed after)


def test_a_slot_is_updated_in_place_not_copied_again(db: Path) -> None:
    write_prices(db, ("AAA", "BBB"), 1.0)
    write_prices(db, ("AAA",), 2.0)
    inodes = [slot_path(db, k).stat().st_ino for k in (0, 1)]
    for close in (3.0, 4.0, 5.0, 6.0):
        write_prices(db, ("BBB",), close)
    assert [slot_path(db, k).stat().st_ino for k in (0, 1)] == inodes
    assert not slot_path(db, 2).exists()
    assert_replica_equals_warehouse(db)
    # The log keeps only what the stale slot has not applied yet.
    assert [seq for seq, *_ in log(db)] == [6]


def test_a_large_whole_table_rewrite_reseeds_the_slot(db: Path, monkeypatch) -> None:
    """Past RESEED_ROWS, a whole-table rewrite is published by seeding a new slot file (a new
    inode) table by table rather than through one transaction holding every row; slices still go
    in place."""
    write_prices(db, ("AAA", "BBB"), 1.0)
    write_prices(db, ("AAA",), 2.0)
    inodes = [slot_path(db, k).stat().st_ino for k in (0, 1)]
    monkeypatch.setattr(replica, "RESEED_ROWS", 3)
    with transaction(db) as w:
        w.replace_table("features", features(("AAA", "BBB")))  # 6 rows: past the threshold
    assert_replica_equals_warehouse(db)
    copied = [slot_path(db, k).stat().st_ino for k in (0, 1)]
    assert sum(a != b for a, b in zip(copied, inodes)) == 1
    write_prices(db, ("BBB",), 3.0)  # the other slot catches up the same rewrite: copied too
    assert_replica_equals_warehouse(db)
    both = [slot_path(db, k).stat().st_ino for k in (0, 1)]
    assert all(a != b for a, b in zip(both, inodes))
    for close in (4.0, 5.0):  # slices only from now on: both slots are updated in place
        write_prices(db, ("BBB",), close)
        assert_replica_equals_warehouse(db)
    assert [slot_path(db, k).stat().st_ino for k in (0, 1)] == both


def test_a_reader_in_another_process_keeps_its_snapshot_and_never_blocks_the_writer(db: Path) -> None:
    write_prices(db, ("AAA",), 1.0)
    held = replica_path(db).resolve()
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(replica_path(db)), "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().strip() == "3"
        before = held.stat().st_mtime_ns
        for i, tickers in enumerate((("AAA", "BBB"), ("CCC",), ("DDD",), ("EEE",))):
            write_prices(db, tickers, 10.0 + i)  # would raise if a slot it needs were locked
            assert_replica_equals_warehouse(db)
        assert held.stat().st_mtime_ns == before  # the held slot was never written
        assert replica_path(db).resolve() != held
        assert slot_path(db, 2).exists()  # slots 1 and 2 alternated while 0 was held
    finally:
        reader.kill()
        reader.wait()
    write_prices(db, ("FFF",), 20.0)
    assert_replica_equals_warehouse(db)


def test_a_connection_in_the_writers_own_process_keeps_its_snapshot(db: Path) -> None:
    write_prices(db, ("AAA",), 1.0)
    with connect_replica(db) as con:
        first = snapshot(con)
        for close in (2.0, 3.0, 4.0):
            write_prices(db, ("AAA",), close)
        assert snapshot(con) == first
    assert read_replica_sql("SELECT max(close) FROM raw_prices", path=db).item() == 6.0  # 4 + 2 days


def test_a_failure_mid_publication_leaves_the_previous_replica_then_catches_up(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_prices(db, ("AAA", "BBB"), 1.0)
    write_prices(db, ("AAA",), 2.0)
    with connect_replica(db) as con:
        published = snapshot(con)
    real = replica._sync_table

    def half_then_fail(con, main, table, slices):
        con.execute("DELETE FROM replica.main.raw_prices")  # half a publication ...
        raise duckdb.IOException("disk gone")  # ... then a failure

    monkeypatch.setattr(replica, "_sync_table", half_then_fail)
    with pytest.raises(WarehouseError, match="is committed, but the read replica"):
        write_prices(db, ("BBB",), 3.0)
    with connect_replica(db) as con:
        assert snapshot(con) == published  # the link still names the previous, whole slot
    monkeypatch.setattr(replica, "_sync_table", real)
    write_prices(db, ("AAA",), 4.0)  # applies the logged change of the failed publication too
    assert_replica_equals_warehouse(db)


def test_a_new_schema_or_a_legacy_replica_file_is_seeded_from_the_warehouse(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_prices(db, ("AAA",), 1.0)
    link = replica_path(db)
    link.unlink()
    link.write_bytes(db.read_bytes())  # a replica as the full-copy publication left it
    write_prices(db, ("BBB",), 2.0)
    assert link.is_symlink()
    assert_replica_equals_warehouse(db)
    monkeypatch.setattr(replica, "schema_hash", lambda: "another schema")
    write_prices(db, ("CCC",), 3.0)
    assert_replica_equals_warehouse(db)
    with connect_replica(db) as con:
        assert con.execute("SELECT value FROM replica_meta WHERE key = 'schema'").fetchone() == (
            "another schema",
        )
