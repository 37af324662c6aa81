"""The nightly features + targets run at N synthetic tickers x 20 years, through the real asset.

`python -m bench.universe_nightly build N DIR` writes a warehouse in DIR with the prices of every
session but the last NIGHTS (`bench.synthetic`), the held-back sessions to a Parquet file, and
runs the `features` asset once (a full, blocked rebuild: `full_s`). `python -m bench.universe_nightly
night N DIR` then, in a fresh process (its peak memory is the nightly run's), stores each held-back
session as the prices asset does (a price vintage) and runs the `features` asset: incremental, it
recomputes the block of the new session for every ticker and writes that session's features and
the targets it changes. Prints JSON: seconds per night (store, features), rows, peak RSS.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

from bench._subprocess import emit

YEARS = 20
NIGHTS = 3
NOW = dt.datetime(2023, 1, 3, tzinfo=dt.UTC)


def _config(n_tickers: int, folder: Path) -> str:
    from bench.synthetic import config_for

    cfg = config_for(n_tickers)
    path = folder / "config.toml"
    tickers = ", ".join(json.dumps(t) for t in cfg.universe.tickers)
    exogenous = ", ".join(json.dumps(t) for t in cfg.universe.exogenous)
    path.write_text(f"[universe]\ntickers = [{tickers}]\nexogenous = [{exogenous}]\n")
    return str(path)


def _run_features(folder: Path, config: str) -> dict:
    import dagster as dg

    from forecast_assets.assets.features import features
    from forecast_assets.resources import PipelineConfig, WarehouseResource

    result = features(
        dg.build_asset_context(),
        warehouse=WarehouseResource(path=str(folder / "w.duckdb")),
        pipeline=PipelineConfig(config_file=config),
    )
    return {k: v.value for k, v in result.metadata.items()}


def build(n_tickers: int, folder: Path) -> dict:
    import polars as pl

    from bench.synthetic import synthetic_prices
    from warehouse import transaction

    prices = synthetic_prices(n_tickers, YEARS).with_columns(
        pl.lit(NOW, pl.Datetime("us", "UTC")).alias("ingested_at")
    )
    days = prices["date"].unique().sort().to_list()
    held = days[-NIGHTS:]
    prices.filter(pl.col("date") >= held[0]).write_parquet(folder / "nights.parquet")
    t = time.perf_counter()
    with transaction(folder / "w.duckdb") as w:
        w.replace("raw_prices", prices.filter(pl.col("date") < held[0]), "TRUE")
    store_s = time.perf_counter() - t
    del prices
    config = _config(n_tickers, folder)
    t = time.perf_counter()
    meta = _run_features(folder, config)
    return {
        "tickers": n_tickers,
        "years": YEARS,
        "store_prices_s": round(store_s, 2),
        "full_s": round(time.perf_counter() - t, 2),
        "full_mode": meta["mode"],
        "full_feature_rows": meta["dagster/row_count"],
        "warehouse_mb": round((folder / "w.duckdb").stat().st_size / 2**20, 1),
    }


def night(n_tickers: int, folder: Path) -> dict:
    import polars as pl

    from warehouse import transaction

    nights = pl.read_parquet(folder / "nights.parquet")
    config = str(folder / "config.toml")
    out: list[dict] = []
    for day in nights["date"].unique().sort().to_list():
        t = time.perf_counter()
        with transaction(folder / "w.duckdb") as w:
            w.store_prices(nights.filter(pl.col("date") == day), "date = ?", [day], "synthetic", NOW)
        store_s = time.perf_counter() - t
        t = time.perf_counter()
        meta = _run_features(folder, config)
        out.append(
            {
                "day": str(day),
                "store_s": round(store_s, 3),
                "features_s": round(time.perf_counter() - t, 3),
                "mode": meta["mode"],
                "tickers": meta["tickers_recomputed"],
                "feature_rows": meta["dagster/row_count"],
                "target_rows": meta["target_rows"],
            }
        )
    times = sorted(n["features_s"] for n in out)
    return {
        "tickers": n_tickers,
        "nights": out,
        "features_s_median": times[len(times) // 2],
        "features_s_max": times[-1],
    }


if __name__ == "__main__":
    what, n, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    emit(build(n, folder) if what == "build" else night(n, folder))
