"""The warehouse file against its contract (DESIGN.md "Warehouse contract"): schema, path
handling, schema versions, views and the write lock. Writes and reads: test_io.py.

Every test works on a file under `tmp_path`; none touches the default warehouse path.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from forecast_core.errors import ConfigError
from tests.support.warehouse import (
    CONTRACT,
    UTC_NOON,
    content_hash,
    count,
    folds_frame,
    hold_lock,
    objects,
    prices,
)
from warehouse import SCHEMA_VERSION, connect, ensure_schema, read_table, transaction
from warehouse.db import ENV_VAR, WarehouseError, _is_lock_error, warehouse_path
from warehouse.io import UNKEYED

VIEWS = {"latest_forecasts", "model_leaderboard"}
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
            if table in UNKEYED:  # stored without an index, its key kept by the writer
                assert pk is None and list(UNKEYED[table]) == key, f"{table} key {UNKEYED[table]} != {key}"
            else:
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


# --- read-only opens ----------------------------------------------------------------------------


def test_read_only_connect_on_missing_file_raises(tmp_path: Path):
    missing = tmp_path / "nope.duckdb"
    with pytest.raises(WarehouseError, match=r"nope\.duckdb.*does not exist"):
        with connect(missing, read_only=True):
            pass
    with pytest.raises(WarehouseError, match="does not exist"):
        read_table("raw_prices", path=missing)
    assert not missing.exists()


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


def _targets(tickers: tuple[str, ...], days: int = 3) -> pl.DataFrame:
    dates = [dt.date(2024, 1, 2) + dt.timedelta(days=i) for i in range(days)]
    return pl.DataFrame(
        {
            "ticker": [t for t in tickers for _ in dates for _ in (1, 5)],
            "date": [d for _ in tickers for d in dates for _ in (1, 5)],
            "horizon": [h for _ in tickers for _ in dates for h in (1, 5)],
            "target": [0.01] * (len(tickers) * len(dates) * 2),
        },
        schema_overrides={"horizon": pl.Int32},
    )


def test_the_writer_keeps_the_key_of_a_table_stored_without_one(db: Path):
    """`targets` has no PRIMARY KEY index (warehouse.io.UNKEYED): the writer refuses a frame that
    repeats a key and rows outside the slice it replaced, and writes nothing of either."""
    with transaction(db) as w:
        w.replace("targets", _targets(("AAA", "BBB")))
    with connect(db, read_only=True) as con:
        assert not con.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'targets' "
            "AND constraint_type = 'PRIMARY KEY'"
        ).fetchone()[0]
    before = content_hash(db, "targets")
    twice = pl.concat([_targets(("AAA",)), _targets(("AAA",), days=1)])
    with pytest.raises(WarehouseError, match=r"targets: 4 rows repeat a key \(ticker, date, horizon\)"):
        with transaction(db) as w:
            w.replace("targets", twice, "ticker = ?", ["AAA"])
    with pytest.raises(WarehouseError, match="targets: rows inserted outside the slice replaced"):
        with transaction(db) as w:  # BBB's rows kept, and BBB's rows inserted again
            w.replace("targets", _targets(("AAA", "BBB")), "ticker = ?", ["AAA"])
    assert content_hash(db, "targets") == before
    with transaction(db) as w:  # a slice that covers what it inserts is written
        w.replace("targets", _targets(("BBB",), days=2), "ticker = ?", ["BBB"])
    assert read_table("targets", path=db).group_by("ticker").len().sort("ticker").rows() == [
        ("AAA", 6),
        ("BBB", 4),
    ]
    features = (
        _targets(("AAA",))
        .filter(pl.col("horizon") == 1)
        .select("ticker", "date", pl.col("target").alias("ret_1"))
    )
    with pytest.raises(WarehouseError, match=r"features: 2 rows repeat a key \(ticker, date\)"):
        with transaction(db) as w:  # `features` too, whether recreated or written by slices
            w.replace_table("features", pl.concat([features, features.head(1)]))


def _fold_predictions() -> pl.DataFrame:
    return pl.DataFrame(
        {"fold": [0, 0, 1], "model": ["lstm", "ridge", "lstm"], "ticker": ["AAA"] * 3,
         "date": [dt.date(2024, 1, 2)] * 3, "horizon": [1, 1, 1], "last_close": [100.0] * 3,
         "y_true": [0.01] * 3, "y_pred": [0.0] * 3, "q10": [-0.02] * 3, "q50": [0.0] * 3, "q90": [0.02] * 3},
        schema_overrides={"fold": pl.Int32, "horizon": pl.Int32},
    )  # fmt: skip


#: The tables as schema.sql created them with their PRIMARY KEY, and a frame of rows for each.
KEYED = {
    "targets": (
        "CREATE TABLE targets (ticker VARCHAR NOT NULL, date DATE NOT NULL, horizon INTEGER NOT NULL, "
        "target DOUBLE, PRIMARY KEY (ticker, date, horizon))",
        lambda: _targets(("AAA", "BBB")),
    ),
    "fold_predictions": (
        "CREATE TABLE fold_predictions (fold INTEGER NOT NULL, model VARCHAR NOT NULL, ticker VARCHAR NOT NULL, "
        "date DATE NOT NULL, horizon INTEGER NOT NULL, last_close DOUBLE NOT NULL, y_true DOUBLE NOT NULL, "
        "y_pred DOUBLE NOT NULL, q10 DOUBLE NOT NULL, q50 DOUBLE NOT NULL, q90 DOUBLE NOT NULL, "
        "PRIMARY KEY (fold, model, ticker, date, horizon))",
        _fold_predictions,
    ),
    "backtest_returns": (
        "CREATE TABLE backtest_returns (strategy VARCHAR NOT NULL, ticker VARCHAR NOT NULL, date DATE NOT NULL, "
        "period VARCHAR NOT NULL, position DOUBLE NOT NULL, turnover DOUBLE NOT NULL, gross_return DOUBLE NOT NULL, "
        "cost DOUBLE NOT NULL, net_return DOUBLE NOT NULL, PRIMARY KEY (strategy, ticker, date, period))",
        lambda: pl.DataFrame(
            {
                "strategy": ["lstm", "buy_and_hold"],
                "ticker": ["AAA", "AAA"],
                "date": [dt.date(2024, 1, 3)] * 2,
                "period": ["all", "all"],
                "position": [1.0, 1.0],
                "turnover": [1.0, 1.0],
                "gross_return": [0.01] * 2,
                "cost": [0.0] * 2,
                "net_return": [0.01] * 2,
            }
        ),  # fmt: skip
    ),
}


@pytest.mark.parametrize("table", sorted(KEYED))
def test_a_keyed_table_of_an_older_warehouse_is_rebuilt_without_its_key(db: Path, table: str):
    create, rows = KEYED[table]
    with transaction(db) as w:
        w.replace(table, rows())
    expected = read_table(table, path=db).sort(pl.all())
    with connect(db) as con:  # the table as schema.sql created it before
        con.execute(f"DROP TABLE {table}")
        con.execute(create)
        con.register("old", expected)
        con.execute(f"INSERT INTO {table} SELECT * FROM old")
    with connect(db) as con:
        ensure_schema(con)
        keys = con.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = ? AND constraint_type = 'PRIMARY KEY'",
            [table],
        ).fetchone()[0]
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        (comment,) = con.execute(
            "SELECT comment FROM duckdb_tables() WHERE table_name = ?", [table]
        ).fetchone()
    assert keys == 0 and f"{table}__keyed" not in tables and "kept by the writer" in comment
    assert read_table(table, path=db).sort(pl.all()).equals(expected)
