"""The full attribution grid of one forecast, on demand:

    python -m forecast_assets.explain DATE TICKER [--horizon H] [--model-version V]
        [--config FILE] [--warehouse PATH] [--out FILE.parquet|.csv]

The warehouse stores each forecast's attributions per feature (`forecast_explanations`) and per
lag (`forecast_explanation_lags`), the margins users read. This recomputes every (feature, lag)
cell of `TICKER`'s forecasts made after the close of `DATE` from the stored model artifact (the
model that `forecast_explanations` names for that forecast, else the newest model of DATE's
month) and the panel as known at DATE, exactly as the `forecast_explanations` asset computes
them, and prints the grid (lags as rows, features as columns) with its check: the cells sum to
the median minus the baseline's median, and their margins equal the stored rows when there are
any. `--out` writes the long grid (horizon, feature, lag, attribution) instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence

import polars as pl

from forecast_core.config import ForecastConfig, load_config
from forecast_core.errors import ForecastError
from forecast_core.models.lstm import artifacts, explain
from forecast_core.serving.periods import period_key, period_start_of
from warehouse import reads
from warehouse.db import WarehouseError
from warehouse.io import read_sql


def full_grid(
    path: str | None, cfg: ForecastConfig, day: dt.date, ticker: str, model_version: str | None = None
) -> tuple[explain.SessionExplanation, str]:
    """The full grid of `ticker`'s forecasts after the close of `day`, and the model version used."""
    if model_version is None:
        stored = read_sql(
            "SELECT DISTINCT model_version FROM forecast_explanations WHERE as_of_date = ? AND ticker = ?",
            [day, ticker],
            path,
        )
        model_version = stored["model_version"][0] if stored.height == 1 else None
    if model_version is None:
        period = period_key(period_start_of(day))
        row = reads.latest_model(path, period)
        if row is None:
            raise WarehouseError(f"no model for retrain period {period}: materialize lstm_model for it first")
    else:
        row = reads.model(path, model_version)
        if row is None:
            raise WarehouseError(f"no model {model_version!r} in the warehouse")
    panel, _ = reads.panel_known_at(path, cfg, day)
    return explain.explain_forecast(artifacts.from_bytes(row["artifact"]), panel, day, ticker), row[
        "model_version"
    ]


def stored_margins(
    path: str | None, day: dt.date, ticker: str, model_version: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    where = "as_of_date = ? AND ticker = ? AND model_version = ?"
    params = [day, ticker, model_version]
    return (
        read_sql(
            f"SELECT horizon, feature, attribution FROM forecast_explanations WHERE {where}", params, path
        ),
        read_sql(
            f"SELECT horizon, lag, attribution FROM forecast_explanation_lags WHERE {where}", params, path
        ),
    )


def max_margin_gap(
    e: explain.SessionExplanation, model_version: str, stored: tuple[pl.DataFrame, pl.DataFrame]
) -> float | None:
    """Largest |recomputed - stored| over both margins, or None when nothing is stored."""
    gaps = []
    for fresh, old, key in zip(
        (e.feature_frame(model_version), e.lag_frame(model_version)), stored, ("feature", "lag"), strict=True
    ):
        if old.height == 0:
            return None
        joined = fresh.join(old, on=["horizon", key], suffix="_stored")
        if joined.height != old.height:
            return float("inf")
        gaps.append(float((joined["attribution"] - joined["attribution_stored"]).abs().max()))
    return max(gaps)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forecast_assets.explain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("date", type=dt.date.fromisoformat, help="the as-of session, YYYY-MM-DD")
    parser.add_argument("ticker")
    parser.add_argument("--horizon", type=int, help="one horizon (default: every horizon)")
    parser.add_argument("--model-version", help="default: the one forecast_explanations names")
    parser.add_argument("--config", help="the job's TOML settings (default: the defaults)")
    parser.add_argument("--warehouse", help="the warehouse (default: $FORECAST_WAREHOUSE)")
    parser.add_argument("--out", help="write the long grid to this .parquet or .csv file")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
        e, version = full_grid(args.warehouse, cfg, args.date, args.ticker, args.model_version)
        stored = stored_margins(args.warehouse, args.date, args.ticker, version)
    except ForecastError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    grid = e.frame(version).select("horizon", "feature", "lag", "attribution")
    if args.horizon is not None:
        if args.horizon not in e.horizons:
            print(f"error: horizon {args.horizon} is not among the model's {e.horizons}", file=sys.stderr)
            return 1
        grid = grid.filter(pl.col("horizon") == args.horizon)
    if args.out:
        (grid.write_parquet if args.out.endswith(".parquet") else grid.write_csv)(args.out)
        print(f"wrote {grid.height:,} cells to {args.out}")
    else:
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=400, float_precision=6):
            for h in sorted(grid["horizon"].unique().to_list()):
                wide = grid.filter(pl.col("horizon") == h).pivot("feature", index="lag", values="attribution")
                print(
                    f"{args.ticker} {args.date} horizon {h} (model {version}): attribution per lag and feature"
                )
                print(wide.sort("lag"))
    for i, h in enumerate(e.horizons):
        if args.horizon in (None, h):
            total = float(e.attributions[i].sum())
            target = float(e.forecast[i, 0] - e.baseline_forecast[i, 0])
            print(f"horizon {h}: sum of cells {total:+.8f}, median - baseline {target:+.8f}")
    gap = max_margin_gap(e, version, stored)
    print(
        "no stored margins for this forecast"
        if gap is None
        else f"largest gap between the recomputed and the stored margins: {gap:.3g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
