"""Small warehouse frames and queries, and a child process holding the write lock."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl

from warehouse import connect

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
UTC_NOON = dt.datetime(2024, 1, 5, 12, tzinfo=dt.UTC)


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
