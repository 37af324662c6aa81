"""Warehouse writes and reads against the contract (DESIGN.md "Warehouse contract"): tables created
by writes, idempotent and atomic slice writes, bound parameters, checked names, polars reads.

Every test works on a file under `tmp_path`; none touches the default warehouse path.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
import pytest

from tests.support.warehouse import CONTRACT, content_hash, count, folds_frame, objects, prices
from warehouse import read_sql, read_table, transaction
from warehouse.db import WarehouseError
from warehouse.io import ParquetRows
from warehouse.replica import read_replica_sql

# --- tables created by writes -------------------------------------------------------------------


def test_features_table_is_created_by_writes(db: Path):
    assert "features" not in objects(db)["tables"]
    frame = pl.DataFrame(
        {"ticker": ["AAA", "AAA"], "date": [dt.date(2024, 1, 2), dt.date(2024, 1, 3)], "ret_1": [0.01, -0.02]}
    )
    with transaction(db) as w:
        assert w.replace_table("features", frame) == 2
    got = read_table("features", path=db, order_by="date")
    assert got.columns == ["ticker", "date", "ret_1"]
    assert got["date"].dtype == pl.Date
    assert got["ret_1"].to_list() == [0.01, -0.02]
    # Recreated with the new columns on the next write.
    with transaction(db) as w:
        w.replace_table("features", frame.rename({"ret_1": "ret_5"}))
    assert read_table("features", path=db).columns == ["ticker", "date", "ret_5"]


# --- idempotent slice writes ------------------------------------------------------------------


def test_replace_rewrites_one_partition_only(db: Path):
    with transaction(db) as w:
        w.replace("raw_prices", prices(("AAA", "BBB")))
    bbb_before = read_table("raw_prices", "ticker = ?", ["BBB"], path=db, order_by="date")

    with transaction(db) as w:
        n = w.replace("raw_prices", prices(("AAA",), close=200.0), "ticker = ?", ["AAA"])
        assert n == 3 and w.rows_written == {"raw_prices": 3}

    aaa = read_table("raw_prices", "ticker = ?", ["AAA"], path=db, order_by="date")
    assert aaa.height == 3  # no duplicates
    assert aaa["close"].to_list() == [200.0, 201.0, 202.0]
    assert read_table("raw_prices", "ticker = ?", ["BBB"], path=db, order_by="date").equals(bbb_before)
    assert count(db, "raw_prices") == 6


def test_writing_the_same_frame_twice_is_byte_identical(db: Path):
    frame = prices(("AAA", "BBB"))
    with transaction(db) as w:
        w.replace("raw_prices", frame, "ticker IN (?, ?)", ["AAA", "BBB"])
    first = content_hash(db, "raw_prices")
    with transaction(db) as w:
        w.replace("raw_prices", frame, "ticker IN (?, ?)", ["AAA", "BBB"])
    assert content_hash(db, "raw_prices") == first
    assert count(db, "raw_prices") == frame.height


# --- atomicity --------------------------------------------------------------------------------


def test_exception_in_block_rolls_back_both_tables(db: Path):
    with transaction(db) as w:
        w.replace("raw_prices", prices(("AAA",)))
        w.replace("folds", folds_frame(2))
    before = {t: content_hash(db, t) for t in ("raw_prices", "folds")}

    with pytest.raises(RuntimeError, match="boom"):
        with transaction(db) as w:
            w.replace("raw_prices", prices(("AAA", "ZZZ"), close=1.0))
            w.replace("folds", folds_frame(5))
            raise RuntimeError("boom")

    assert {t: content_hash(db, t) for t in before} == before
    assert count(db, "raw_prices") == 3 and count(db, "folds") == 2


def test_primary_key_violation_raises_and_keeps_previous_contents(db: Path):
    with transaction(db) as w:
        w.replace("raw_prices", prices(("AAA",)))
    before = content_hash(db, "raw_prices")

    dup = pl.concat([prices(("AAA",), close=5.0), prices(("AAA",), close=5.0).head(1)])
    with pytest.raises(duckdb.ConstraintException, match="(?i)duplicate key|primary key"):
        with transaction(db) as w:
            w.replace("folds", folds_frame(3))  # an earlier write in the same batch
            w.replace("raw_prices", dup, "ticker = ?", ["AAA"])

    assert content_hash(db, "raw_prices") == before
    assert count(db, "folds") == 0
    # The warehouse is still writable afterwards.
    with transaction(db) as w:
        w.replace("raw_prices", prices(("AAA",), close=7.0), "ticker = ?", ["AAA"])
    assert read_table("raw_prices", path=db, order_by="date")["close"].to_list() == [7.0, 8.0, 9.0]


# --- rows staged as Parquet ------------------------------------------------------------------


def _staged(tmp_path: Path, *frames: pl.DataFrame) -> ParquetRows:
    tmp_path.mkdir(exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        paths.append(str(tmp_path / f"part_{i}.parquet"))
        frame.write_parquet(paths[-1])
    return ParquetRows(tuple(paths))


def test_rows_staged_as_parquet_are_written_as_the_frame_would_be(db: Path, tmp_path: Path):
    """A write from Parquet files (what every fold's predictions take at scale) leaves the table the
    frame's write leaves, row for row, slices and the replica included."""
    frame = prices(("AAA", "BBB", "CCC"))
    with transaction(db) as w:
        w.replace("raw_prices", prices(("AAA", "DDD"), close=1.0))
    with transaction(db) as w:
        n = w.replace(
            "raw_prices",
            _staged(
                tmp_path, frame.filter(pl.col("ticker") != "CCC"), frame.filter(pl.col("ticker") == "CCC")
            ),
            "ticker IN (?, ?, ?)",
            ["AAA", "BBB", "CCC"],
        )
        assert n == 9 and w.rows_written == {"raw_prices": 9}
    staged = content_hash(db, "raw_prices")
    with transaction(db) as w:
        w.replace("raw_prices", frame, "ticker IN (?, ?, ?)", ["AAA", "BBB", "CCC"])
    assert content_hash(db, "raw_prices") == staged
    assert read_table("raw_prices", "ticker = ?", ["DDD"], path=db)["close"].to_list() == [1.0, 2.0, 3.0]
    assert read_replica_sql("SELECT count(*) AS n FROM raw_prices", path=db)["n"].to_list() == [12]


def test_bad_staged_rows_raise_naming_the_problem_and_write_nothing(db: Path, tmp_path: Path):
    with transaction(db) as w:
        w.replace("raw_prices", prices(("AAA",)))
        w.replace("targets", _targets_frame())
    before = {t: content_hash(db, t) for t in ("raw_prices", "targets")}
    with pytest.raises(WarehouseError, match=r"bogus_col.*raw_prices"):
        with transaction(db) as w:
            w.replace(
                "raw_prices", _staged(tmp_path / "a", prices(("AAA",)).with_columns(bogus_col=pl.lit(1)))
            )
    twice = _staged(tmp_path / "b", _targets_frame(), _targets_frame().head(1))
    with pytest.raises(
        WarehouseError, match=r"targets: 2 rows repeat a key \(ticker, date, horizon\), the first"
    ):
        with transaction(db) as w:  # a table stored without a key index: the writer checks the files
            w.replace("raw_prices", prices(("AAA",), close=5.0), "ticker = ?", ["AAA"])
            w.replace("targets", twice)
    assert {t: content_hash(db, t) for t in before} == before
    with pytest.raises(WarehouseError, match=r"staged Parquet files not found: .*nowhere\.parquet"):
        ParquetRows((str(tmp_path / "nowhere.parquet"),))


def _targets_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {"ticker": ["AAA"] * 2, "date": [dt.date(2024, 1, 2)] * 2, "horizon": [1, 5], "target": [0.01, 0.02]},
        schema_overrides={"horizon": pl.Int32},
    )


# --- parameters and names ---------------------------------------------------------------------


def test_where_parameters_are_bound_not_interpolated(db: Path):
    evil = "A'; DROP TABLE raw_prices;--"
    with transaction(db) as w:
        w.replace("raw_prices", prices(("AAA", "BBB", evil)))
    with transaction(db) as w:
        w.replace("raw_prices", prices((evil,), days=1, close=9.0), "ticker = ?", [evil])

    assert "raw_prices" in objects(db)["tables"]
    assert count(db, "raw_prices", "ticker IN ('AAA', 'BBB')") == 6
    got = read_table("raw_prices", "ticker = ?", [evil], path=db)
    assert got["ticker"].to_list() == [evil] and got["close"].to_list() == [9.0]
    # Reads bind parameters too.
    assert read_sql("SELECT count(*) AS n FROM raw_prices WHERE ticker = ?", [evil], path=db)[
        "n"
    ].to_list() == [1]


def test_unknown_table_raises_naming_it(db: Path):
    with pytest.raises(WarehouseError, match="no_such_table"):
        with transaction(db) as w:
            w.replace("no_such_table", prices(("AAA",)))
    with pytest.raises(WarehouseError, match="no_such_table"):
        with transaction(db) as w:
            w.replace_table("no_such_table", prices(("AAA",)))
    with pytest.raises(WarehouseError, match="raw_prices; DROP"):
        read_table("raw_prices; DROP TABLE folds", path=db)


def test_unknown_frame_columns_raise_naming_them(db: Path):
    frame = prices(("AAA",)).with_columns(pl.lit(1.0).alias("bogus_col"))
    with pytest.raises(WarehouseError, match="bogus_col.*raw_prices"):
        with transaction(db) as w:
            w.replace("raw_prices", frame)
    assert count(db, "raw_prices") == 0


# --- reads ------------------------------------------------------------------------------------


def test_reads_return_polars_with_date_columns(db: Path):
    with transaction(db) as w:
        w.replace("raw_prices", prices(("AAA",)))
        w.replace("folds", folds_frame(1))
    got = read_table("raw_prices", path=db, order_by="date")
    assert isinstance(got, pl.DataFrame)
    assert got["date"].dtype == pl.Date
    assert got["date"].to_list() == [dt.date(2024, 1, 2), dt.date(2024, 1, 3), dt.date(2024, 1, 4)]
    assert got["volume"].null_count() == 3
    folds = read_sql("SELECT * FROM folds", path=db)
    assert isinstance(folds, pl.DataFrame)
    assert all(folds[c].dtype == pl.Date for c in CONTRACT["folds"][1])
