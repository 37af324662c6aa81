"""The writer that test_crash_safety.py kills: `python -m tests.reliability.crash_writer PATH V`
replaces the partition with version V, 1 - V, V, ... in a loop, forever. Each write is one
`warehouse.transaction` over raw_prices and forecasts (as a nightly step writes them), so that the
two tables must always hold the same version. It prints `ready` once imported, then `begin v` and
`commit v` around every write.
"""

from __future__ import annotations

import datetime as dt
import sys

import numpy as np
import polars as pl

from warehouse import transaction

TICKERS = tuple(f"T{i:02d}" for i in range(20))
#: Sessions of the partition that is rewritten, and of the history before it that never changes.
PARTITION = [dt.date(2022, 6, 1) + dt.timedelta(days=i) for i in range(100)]
HISTORY = [dt.date(2022, 1, 1) + dt.timedelta(days=i) for i in range(100)]
STAMP = dt.datetime(2022, 9, 1, tzinfo=dt.UTC)


def prices(version: int, dates: list[dt.date]) -> pl.DataFrame:
    """One row per ticker and date; every price depends on the version."""
    n = len(TICKERS) * len(dates)
    close = 100.0 + np.arange(n, dtype=float) / 7 + 1000.0 * version
    return pl.DataFrame(
        {
            "ticker": [t for t in TICKERS for _ in dates],
            "date": [d for _ in TICKERS for d in dates],
            "close": close,
            "adj_close": close * 0.99,
            "source": f"v{version}",
            "ingested_at": [STAMP] * n,
        }
    )


def forecasts(version: int) -> pl.DataFrame:
    frame = prices(version, PARTITION)
    q = np.linspace(-0.01, 0.01, frame.height) + version / 100
    return frame.select(
        pl.col("date").alias("as_of_date"),
        "ticker",
        pl.lit(1, pl.Int32).alias("horizon"),
        pl.lit(f"model-v{version}").alias("model_version"),
        pl.lit("lstm").alias("model"),
        (pl.col("date") + pl.duration(days=1)).alias("target_date"),
        pl.col("close").alias("last_close"),
        pl.Series("pred_log_return", q),
        pl.Series("q10", q - 0.02),
        pl.Series("q50", q),
        pl.Series("q90", q + 0.02),
        *(pl.col("close").alias(c) for c in ("pred_close", "q10_close", "q50_close", "q90_close")),
        pl.lit(STAMP).alias("created_at"),
    )


def write(path: str, version: int) -> None:
    span = [PARTITION[0], PARTITION[-1]]
    with transaction(path) as w:
        w.replace("raw_prices", prices(version, PARTITION), "date BETWEEN ? AND ?", span)
        w.replace("forecasts", forecasts(version), "as_of_date BETWEEN ? AND ?", span)


def seed(path: str) -> None:
    """History (never rewritten) and version 0 of the partition."""
    with transaction(path) as w:
        w.replace("raw_prices", prices(0, HISTORY), "date < ?", [PARTITION[0]])
    write(path, 0)


def main() -> None:
    path, version = sys.argv[1], int(sys.argv[2])
    print("ready", flush=True)
    while True:
        print(f"begin {version}", flush=True)
        write(path, version)
        print(f"commit {version}", flush=True)
        version = 1 - version


if __name__ == "__main__":
    main()
