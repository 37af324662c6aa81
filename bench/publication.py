"""Publication of the read replica per commit, against the warehouse's size: the full-file copy
that every commit used to make, and the incremental publication (`warehouse.replica`).

`python -m bench.publication N [--repeats R]` (one size per process) builds a warehouse in a
temporary directory with `raw_prices` for N synthetic tickers x 20 years (`bench.synthetic`) and
20 sessions of forecasts for them, through the project's writer. Then, alternately, R nightly
commits each (one transaction replacing the newest session's prices and writing that session's
forecasts, as a nightly run's steps do) followed by:
- `full_copy_s`: the previous publication: checkpoint, copy the whole file, fsync, `os.replace`;
- `incremental_s`: `warehouse.replica.publish`, which copies the changed slices into the stale slot.
Medians over the repeats. Prints JSON with the warehouse's file size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench._subprocess import emit

YEARS = 20
FORECAST_SESSIONS = 20


def full_copy_publish(con, source: Path, target: Path) -> None:
    """What `warehouse.replica.publish` did before it was incremental."""
    con.execute("CHECKPOINT")
    tmp = target.with_name(target.stem + ".tmp.duckdb")
    shutil.copyfile(source, tmp)
    fd = os.open(tmp, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    os.replace(tmp, target)


def _forecasts(prices, day: dt.date, horizons: tuple[int, ...], version: float):
    import polars as pl

    last = prices.filter(pl.col("date") == day).select("ticker", pl.col("adj_close").alias("last_close"))
    q = pl.lit(version / 1000)
    return pl.concat(
        [
            last.select(
                pl.lit(day).alias("as_of_date"),
                "ticker",
                pl.lit(h, pl.Int32).alias("horizon"),
                pl.lit("bench-model").alias("model_version"),
                pl.lit("lstm").alias("model"),
                pl.lit(day + dt.timedelta(days=h)).alias("target_date"),
                "last_close",
                q.alias("pred_log_return"),
                (q - 0.02).alias("q10"),
                q.alias("q50"),
                (q + 0.02).alias("q90"),
                *(
                    pl.col("last_close").alias(c)
                    for c in ("pred_close", "q10_close", "q50_close", "q90_close")
                ),
                pl.lit(dt.datetime(2023, 1, 1, tzinfo=dt.UTC)).alias("created_at"),
            )
            for h in horizons
        ]
    )


def measure(n_tickers: int, repeats: int = 5) -> dict:
    import polars as pl

    from bench.synthetic import synthetic_prices
    from warehouse import connect, ensure_schema
    from warehouse.io import Writer
    from warehouse.replica import log_changes, publish

    horizons = (1, 5)
    prices = synthetic_prices(n_tickers, YEARS).with_columns(
        pl.lit(dt.datetime(2023, 1, 1, tzinfo=dt.UTC)).alias("ingested_at")
    )
    days = prices["date"].unique().sort().to_list()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        path = Path(tmp) / "w.duckdb"
        t = time.perf_counter()
        with connect(path) as con:
            ensure_schema(con)

            def commit(version: int) -> None:
                day = days[-1]
                con.execute("BEGIN TRANSACTION")
                w = Writer(con, track_changes=True)
                night = prices.filter(pl.col("date") == day).with_columns(
                    pl.col("adj_close") * (1 + version / 1e6)
                )
                w.replace("raw_prices", night, "date = ?", [day])
                w.replace("forecasts", _forecasts(night, day, horizons, version), "as_of_date = ?", [day])
                log_changes(con, w.changes)
                con.execute("COMMIT")

            con.execute("BEGIN TRANSACTION")
            w = Writer(con, track_changes=True)
            w.replace("raw_prices", prices, "TRUE")
            w.replace(
                "forecasts",
                pl.concat([_forecasts(prices, d, horizons, 0) for d in days[-FORECAST_SESSIONS:]]),
                "TRUE",
            )
            log_changes(con, w.changes)
            con.execute("COMMIT")
            build_s = time.perf_counter() - t
            publish(con, path)  # the two slots are seeded (a copy each, once)
            commit(0)
            publish(con, path)
            con.execute("CHECKPOINT")
            file_mb = path.stat().st_size / 1e6
            full, incremental = [], []
            for r in range(repeats):
                commit(2 * r + 1)
                t = time.perf_counter()
                full_copy_publish(con, path, path.with_name("w.fullcopy.duckdb"))
                full.append(time.perf_counter() - t)
                commit(2 * r + 2)
                t = time.perf_counter()
                publish(con, path)
                incremental.append(time.perf_counter() - t)
        with connect(path.with_name("w.read.duckdb"), read_only=True) as con:
            replica_rows = con.execute("SELECT count(*) FROM raw_prices").fetchone()[0]
    assert replica_rows == prices.height
    return {
        "tickers": n_tickers,
        "years": YEARS,
        "price_rows": prices.height,
        "rows_per_commit": 2 * n_tickers * (1 + len(horizons)),  # deleted + inserted
        "warehouse_mb": round(file_mb, 1),
        "build_s": round(build_s, 2),
        "repeats": repeats,
        "full_copy_s": round(statistics.median(full), 4),
        "incremental_s": round(statistics.median(incremental), 4),
        "incremental_max_s": round(max(incremental), 4),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("tickers", type=int)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    emit(measure(args.tickers, args.repeats))
