"""The strategy_backtest asset on hand-computable prices and fold forecasts: it writes the
backtest tables and the strategy_comparison view, and reports the equity curves and ratios."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import polars as pl

from forecast_assets.assets.decision import strategy_backtest
from forecast_assets.resources import PipelineConfig, WarehouseResource
from tests.support.backtest import R, prices_for, signals_for
from warehouse import read_table, transaction


def test_strategy_backtest_asset_writes_tables_and_view(tmp_path):
    path = str(tmp_path / "w.duckdb")
    prices = pl.concat([prices_for(R, "AAA"), prices_for([0.01, -0.02, 0.03, 0.0, 0.01], "BBB")])
    preds = []
    for fold, model in [(0, "lstm"), (0, "zero_return")]:
        s = pl.concat([signals_for([True, False, True, True, False], t) for t in ("AAA", "BBB")])
        preds.append(s.select(
            pl.lit(fold, pl.Int32).alias("fold"), pl.lit(model).alias("model"), "ticker", "date",
            pl.lit(1, pl.Int32).alias("horizon"), pl.lit(100.0).alias("last_close"),
            pl.lit(0.0).alias("y_true"), pl.col("q50").alias("y_pred"), "q10", "q50", "q90",
        ))  # fmt: skip
    ingested = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
    with transaction(path) as w:
        w.replace(
            "raw_prices",
            prices.with_columns(pl.lit("test").alias("source"), pl.lit(ingested).alias("ingested_at")),
        )
        w.replace("fold_predictions", pl.concat(preds))
    result = dg.materialize(
        [strategy_backtest],
        resources={"warehouse": WarehouseResource(path=path), "pipeline": PipelineConfig()},
    )
    assert result.success
    view = read_table("strategy_comparison", "period = 'all'", path=path)
    assert view["strategy"].to_list()[0] == "lstm" and view["strategy"].to_list()[-1] == "buy_and_hold"
    assert set(read_table("backtest_returns", path=path)["period"].unique()) == {"fold_0", "all"}
    meta = result.asset_materializations_for_node("strategy_backtest")[0].metadata
    assert "equity_curves" in meta and "lstm_dsr" in meta
