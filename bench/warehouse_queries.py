"""Item 5: the analysts' views on a warehouse with 500 tickers x 1 year of forecasts.

`python -m bench.warehouse_queries` builds a fresh warehouse in a temporary directory through the
project's writer (`warehouse.transaction`): `forecasts` for 500 tickers x 252 sessions x the
configured horizons (one model version per month), `fold_metrics` for 5 folds x 5 models, then
times `latest_forecasts` and `model_leaderboard`: through `warehouse.read_sql` (open read-only,
query, polars frame: what a notebook does) and on an open connection (the query alone).
"""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from bench._subprocess import emit

TICKERS = 500
SESSIONS = 252
QUERIES = {
    "latest_forecasts": "SELECT * FROM latest_forecasts ORDER BY ticker, horizon",
    "model_leaderboard": "SELECT * FROM model_leaderboard",
}


def _frames(horizons: tuple[int, ...]):
    import numpy as np
    import polars as pl

    from bench.synthetic import ticker_names
    from forecast_core.data import calendar

    rng = np.random.default_rng(0)
    days = calendar.sessions(dt.date(2022, 1, 3), dt.date(2022, 12, 30))[-SESSIONS:]
    names = ticker_names(TICKERS)
    n = len(days) * TICKERS
    base = pl.DataFrame({"as_of_date": days}).join(pl.DataFrame({"ticker": names}), how="cross")
    frames = []
    for h in horizons:
        q50 = rng.normal(0, 0.001, n)
        width = np.abs(rng.normal(0.02, 0.005, n)) * np.sqrt(h)
        last = rng.uniform(10, 500, n)
        frames.append(base.with_columns(
            pl.lit(h, pl.Int32).alias("horizon"),
            pl.col("as_of_date").dt.strftime("%Y-%m").alias("model_version"),
            pl.lit("lstm").alias("model"),
            (pl.col("as_of_date") + pl.duration(days=int(h * 7 / 5) + 1)).alias("target_date"),
            pl.Series("last_close", last), pl.Series("pred_log_return", q50),
            pl.Series("q10", q50 - width), pl.Series("q50", q50), pl.Series("q90", q50 + width),
        ))  # fmt: skip
    forecasts = pl.concat(frames).with_columns(
        *[(pl.col("last_close") * pl.col(c).exp()).alias(f"{c}_close") for c in ("q10", "q50", "q90")],
        (pl.col("last_close") * pl.col("pred_log_return").exp()).alias("pred_close"),
        pl.lit(dt.datetime(2023, 1, 1, tzinfo=dt.UTC), pl.Datetime("us", "UTC")).alias("created_at"),
    )
    metrics = pl.DataFrame(
        [
            {"fold": f, "model": m, "horizon": h, "metric": k, "value": float(rng.uniform(0.001, 1))}
            for f in range(5)
            for m in ("lstm", "zero_return", "historical_mean", "ridge", "ewma_vol")
            for h in horizons
            for k in ("mae", "rmse", "mape_price", "directional_accuracy", "pinball", "coverage_80", "n")
        ]
    ).with_columns(pl.col("fold").cast(pl.Int32), pl.col("horizon").cast(pl.Int32))
    return forecasts, metrics


def _median_time(fn, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times), 4)


def measure() -> dict:
    from forecast_core.config import ForecastConfig
    from warehouse import connect, read_sql, transaction

    cfg = ForecastConfig()
    forecasts, metrics = _frames(cfg.horizons)
    with tempfile.TemporaryDirectory(prefix="bench-warehouse-") as tmp:
        path = Path(tmp) / "forecast.duckdb"
        t = time.perf_counter()
        with transaction(path) as w:
            w.replace("forecasts", forecasts)
            w.replace("fold_metrics", metrics)
        write_s = time.perf_counter() - t
        record = {"tickers": TICKERS, "sessions": forecasts["as_of_date"].n_unique(),
                  "horizons": list(cfg.horizons), "forecast_rows": forecasts.height,
                  "write_s": round(write_s, 3), "file_mb": round(path.stat().st_size / 2**20, 1),
                  "queries": {}}  # fmt: skip
        for name, sql in QUERIES.items():
            rows = read_sql(sql, path=path).height
            with connect(path, read_only=True) as con:
                query_s = _median_time(lambda sql=sql: con.sql(sql).fetchall())
            record["queries"][name] = {
                "rows": rows,
                "read_sql_s": _median_time(lambda sql=sql: read_sql(sql, path=path)),
                "query_s": query_s,
            }
    return record


if __name__ == "__main__":
    emit(measure())
