"""The warehouse against its contract (DESIGN.md "Warehouse contract"): schema, idempotent and
atomic slice writes, bound parameters, path handling, schema versions, views and the write lock.

Every test works on a file under `tmp_path`; none touches the default warehouse path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from forecast_core.errors import ConfigError
from warehouse import SCHEMA_VERSION, connect, ensure_schema, read_sql, read_table, transaction
from warehouse.db import ENV_VAR, WarehouseError, _is_lock_error, warehouse_path

#: Contract tables -> key columns and minimum columns (DESIGN.md). `features` is created by writes.
CONTRACT = {
    "raw_prices": (
        ["ticker", "date"],
        ["open", "high", "low", "close", "adj_close", "volume", "source", "ingested_at"],
    ),
    "folds": (
        ["fold"],
        ["train_start", "train_end", "val_start", "val_end", "test_start", "test_end"],
    ),
    "fold_predictions": (
        ["fold", "model", "ticker", "date", "horizon"],
        ["y_true", "y_pred", "q10", "q50", "q90"],
    ),
    "fold_metrics": (["fold", "model", "horizon", "metric"], ["value"]),
    "models": (
        ["model_version"],
        ["trained_at", "train_start", "train_end", "config", "metrics", "artifact_sha256"],
    ),
    "forecasts": (
        ["as_of_date", "ticker", "horizon", "model_version"],
        [
            "target_date",
            "last_close",
            "pred_log_return",
            "pred_close",
            "q10_close",
            "q50_close",
            "q90_close",
            "created_at",
        ],
    ),
    "forecast_scores": (
        ["as_of_date", "ticker", "horizon", "model_version"],
        ["target_date", "actual_close", "error", "covered_80", "pinball"],
    ),
}
VIEWS = {"latest_forecasts", "model_leaderboard"}
UTC_NOON = dt.datetime(2024, 1, 5, 12, tzinfo=dt.UTC)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A fresh warehouse file with the schema applied."""
    path = tmp_path / "wh.duckdb"
    with connect(path) as con:
        ensure_schema(con)
    return path


def prices(tickers: tuple[str, ...], days: int = 3, close: float = 100.0) -> pl.DataFrame:
    rows = [
        {
            "ticker": t,
            "date": dt.date(2024, 1, 2) + dt.timedelta(days=i),
            "open": close + i,
            "high": close + i + 1,
            "low": close + i - 1,
            "close": close + i,
            "adj_close": close + i,
            "volume": None,
            "source": "test",
            "ingested_at": UTC_NOON,
        }
        for t in tickers
        for i in range(days)
    ]
    return pl.DataFrame(rows, schema_overrides={"volume": pl.Float64})


def folds_frame(n: int = 2) -> pl.DataFrame:
    d = dt.date(2020, 1, 1)
    return pl.DataFrame(
        {
            "fold": list(range(n)),
            **{c: [d] * n for c in CONTRACT["folds"][1]},
        }
    )


def objects(path: Path) -> dict[str, set[str]]:
    with connect(path, read_only=True) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        views = {
            r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        }
    return {"tables": tables, "views": views}


def content_hash(path: Path, table: str) -> str:
    with connect(path, read_only=True) as con:
        rows = con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def count(path: Path, table: str, where: str = "TRUE", params: list | None = None) -> int:
    with connect(path, read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {table} WHERE {where}", params or []).fetchone()[0]


# --- schema -----------------------------------------------------------------------------------


def test_ensure_schema_idempotent_and_contract_complete(tmp_path: Path):
    path = tmp_path / "wh.duckdb"
    seen = []
    for _ in range(3):
        with connect(path) as con:
            ensure_schema(con)
        seen.append(objects(path))
    assert seen[0] == seen[1] == seen[2]
    assert set(CONTRACT) <= seen[0]["tables"]
    assert "schema_meta" in seen[0]["tables"]
    assert VIEWS <= seen[0]["views"]

    with connect(path, read_only=True) as con:
        for table, (key, cols) in CONTRACT.items():
            have = {r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()}
            missing = set(key + cols) - have
            assert not missing, f"{table} lacks {missing}"
            pk = con.execute(
                "SELECT constraint_column_names FROM duckdb_constraints() "
                "WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
                [table],
            ).fetchone()
            assert pk is not None and list(pk[0]) == key, f"{table} key {pk} != {key}"
        comments = dict(con.execute("SELECT table_name, comment FROM duckdb_tables()").fetchall())
        version = con.execute("SELECT value FROM schema_meta WHERE key = 'schema_version'").fetchall()
    for table in CONTRACT:
        assert comments[table], f"{table} has no COMMENT"
    assert version == [(str(SCHEMA_VERSION),)]  # one row, not one per application


def test_ensure_schema_keeps_existing_rows(db: Path):
    with transaction(db) as w:
        w.replace("raw_prices", prices(("AAA",)))
    before = content_hash(db, "raw_prices")
    with connect(db) as con:
        ensure_schema(con)
        ensure_schema(con)
    assert content_hash(db, "raw_prices") == before and count(db, "raw_prices") == 3


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


# --- paths ------------------------------------------------------------------------------------


def test_warehouse_path_env_var_and_validation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "from_env.duckdb"
    monkeypatch.setenv(ENV_VAR, str(target))
    assert warehouse_path() == target
    assert warehouse_path(tmp_path / "explicit.db") == tmp_path / "explicit.db"  # argument wins

    with transaction() as w:  # the default path is the env var's
        w.replace("folds", folds_frame(1))
    assert target.exists() and count(target, "folds") == 1

    with pytest.raises(ConfigError, match=str(tmp_path)):
        warehouse_path(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(ConfigError, match="directory"):
        warehouse_path()
    with pytest.raises(ConfigError, match=r"wh\.sqlite.*\.duckdb or \.db"):
        warehouse_path(tmp_path / "wh.sqlite")
    with pytest.raises(ConfigError, match="suffixless"):
        warehouse_path(tmp_path / "suffixless")


# --- schema versions --------------------------------------------------------------------------


def test_newer_schema_version_is_refused_and_nothing_written(tmp_path: Path):
    path = tmp_path / "future.duckdb"
    newer = SCHEMA_VERSION + 1
    raw = duckdb.connect(str(path))
    raw.execute("CREATE TABLE schema_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    raw.execute("INSERT INTO schema_meta VALUES ('schema_version', ?)", [str(newer)])
    raw.close()
    before = objects(path)

    pattern = rf"version {newer}\b.*\b{SCHEMA_VERSION}\b"
    with pytest.raises(WarehouseError, match=pattern):
        with connect(path) as con:
            ensure_schema(con)
    with pytest.raises(WarehouseError, match=pattern):
        with transaction(path) as w:
            w.replace("folds", folds_frame(1))

    assert objects(path) == before == {"tables": {"schema_meta"}, "views": set()}
    assert read_table("schema_meta", path=path)["value"].to_list() == [str(newer)]


# --- reads ------------------------------------------------------------------------------------


def test_read_only_connect_on_missing_file_raises(tmp_path: Path):
    missing = tmp_path / "nope.duckdb"
    with pytest.raises(WarehouseError, match=r"nope\.duckdb.*does not exist"):
        with connect(missing, read_only=True):
            pass
    with pytest.raises(WarehouseError, match="does not exist"):
        read_table("raw_prices", path=missing)
    assert not missing.exists()


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


# --- views ------------------------------------------------------------------------------------


def forecast_row(as_of: dt.date, ticker: str, horizon: int, version: str, q50: float) -> dict:
    return {
        "as_of_date": as_of,
        "ticker": ticker,
        "horizon": horizon,
        "model_version": version,
        "model": "lstm",
        "target_date": as_of + dt.timedelta(days=horizon),
        "last_close": 100.0,
        "pred_log_return": q50,
        "q10": q50 - 0.02,
        "q50": q50,
        "q90": q50 + 0.02,
        "pred_close": 100.0,
        "q10_close": 98.0,
        "q50_close": 100.0,
        "q90_close": 102.0,
        "created_at": UTC_NOON,
    }


def test_latest_forecasts_view_returns_newest_per_ticker_horizon(db: Path):
    d1, d2 = dt.date(2024, 1, 2), dt.date(2024, 1, 3)
    frame = pl.DataFrame(
        [
            forecast_row(d1, "AAA", 1, "v1", 0.01),
            forecast_row(d2, "AAA", 1, "v1", 0.02),
            forecast_row(d1, "AAA", 5, "v1", 0.05),
            forecast_row(d1, "BBB", 1, "v1", 0.03),
        ]
    ).with_columns(pl.col("horizon").cast(pl.Int32))
    with transaction(db) as w:
        w.replace("forecasts", frame)
    got = read_table("latest_forecasts", path=db, order_by="ticker, horizon")
    assert got.select("ticker", "horizon", "as_of_date", "q50").rows() == [
        ("AAA", 1, d2, 0.02),
        ("AAA", 5, d1, 0.05),
        ("BBB", 1, d1, 0.03),
    ]
    assert got["as_of_date"].dtype == pl.Date


def test_model_leaderboard_by_hand(db: Path):
    # lstm: pinball 0.8, 1.0 over folds 0, 1; rmse 2.0, 4.0. zero_return: pinball 1.0, 1.2; rmse 4.0.
    rows = [
        (0, "lstm", 1, "pinball", 0.8),
        (1, "lstm", 1, "pinball", 1.0),
        (0, "lstm", 1, "rmse", 2.0),
        (1, "lstm", 1, "rmse", 4.0),
        (0, "lstm", 1, "coverage_80", 0.7),
        (1, "lstm", 1, "coverage_80", 0.9),
        (0, "zero_return", 1, "pinball", 1.0),
        (1, "zero_return", 1, "pinball", 1.2),
        (0, "zero_return", 1, "rmse", 4.0),
        (1, "zero_return", 1, "rmse", 4.0),
        (0, "lstm", 1, "dm_pvalue", 0.01),
        (1, "lstm", 1, "dm_pvalue", 0.2),
    ]
    frame = pl.DataFrame(rows, schema=["fold", "model", "horizon", "metric", "value"], orient="row")
    with transaction(db) as w:
        w.replace("fold_metrics", frame)
    board = read_table("model_leaderboard", path=db)
    by_model = {r["model"]: r for r in board.iter_rows(named=True)}
    assert set(by_model) == {"lstm", "zero_return"}
    lstm, zero = by_model["lstm"], by_model["zero_return"]
    assert lstm["n_folds"] == 2 and zero["n_folds"] == 2
    assert lstm["pinball"] == pytest.approx(0.9)
    assert zero["pinball"] == pytest.approx(1.1)
    assert lstm["coverage_80"] == pytest.approx(0.8)
    assert lstm["rmse"] == pytest.approx(3.0)
    assert lstm["pinball_skill_vs_zero_return"] == pytest.approx(1 - 0.9 / 1.1)
    assert lstm["rmse_skill_vs_zero_return"] == pytest.approx(1 - 3.0 / 4.0)
    assert zero["pinball_skill_vs_zero_return"] == pytest.approx(0.0)
    assert lstm["dm_pvalue_min"] == pytest.approx(0.01)
    assert lstm["dm_pvalue_max"] == pytest.approx(0.2)
    assert (lstm["pinball_rank"], zero["pinball_rank"]) == (1, 2)
    assert zero["mae"] is None  # no mae rows written


# --- the write lock ---------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    con.execute("CREATE TABLE IF NOT EXISTS held_by_child (a INTEGER)")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
    """
)


def hold_lock(path: Path, seconds: float) -> subprocess.Popen:
    """A child process that holds the write lock on `path` for `seconds` once it prints."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = child.stdout.readline()
    assert line.strip() == "locked", child.stderr.read()
    return child


def test_duckdb_lock_error_is_recognised(db: Path):
    child = hold_lock(db, 30)
    try:
        with pytest.raises(duckdb.IOException) as info:
            duckdb.connect(str(db))
        assert _is_lock_error(info.value), str(info.value)
    finally:
        child.kill()
        child.wait()


@pytest.mark.reliability
def test_connect_times_out_on_a_held_lock(db: Path):
    child = hold_lock(db, 30)
    try:
        start = time.monotonic()
        with pytest.raises(WarehouseError, match="locked by another process"):
            with connect(db, lock_timeout_s=0.2):
                pass
        assert time.monotonic() - start < 3.0
    finally:
        child.kill()
        child.wait()


@pytest.mark.reliability
def test_connect_waits_for_the_lock_then_succeeds(db: Path):
    child = hold_lock(db, 1.5)
    try:
        start = time.monotonic()
        with connect(db, lock_timeout_s=10) as con:
            waited = time.monotonic() - start
            con.execute(
                "INSERT INTO folds SELECT 0, DATE '2020-01-01', DATE '2020-01-01', "
                "DATE '2020-01-01', DATE '2020-01-01', DATE '2020-01-01', DATE '2020-01-01'"
            )
            assert con.execute("SELECT count(*) FROM held_by_child").fetchone() == (0,)
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert 0.5 < waited < 10
    assert count(db, "folds") == 1


def test_non_lock_io_errors_are_not_retried(tmp_path: Path):
    # A path under a directory named like a lock must not be mistaken for a lock error.
    bad = tmp_path / "blocklist" / "wh.duckdb"
    bad.parent.mkdir()
    bad.write_bytes(b"this is not a duckdb file" * 100)
    start = time.monotonic()
    with pytest.raises(WarehouseError, match=r"blocklist/wh\.duckdb.*not a valid DuckDB") as info:
        with connect(bad, lock_timeout_s=5):
            pass
    assert time.monotonic() - start < 2.0  # failed at once instead of retrying for 5 s
    assert "locked by another process" not in str(info.value)
