"""features (+ targets) and walk_forward_folds."""

import dagster as dg
import polars as pl

from forecast_assets.metadata import OWNERS, frame_schema, frame_table, row_count, table_metadata
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_core.columns import DATE, TICKER
from forecast_core.data.features import build_features, build_targets, complete_rows, feature_columns
from forecast_core.data.panel import targets_long
from forecast_core.data.universe import within_membership
from forecast_core.evaluation import folds as fold_layout
from warehouse import reads, transaction


@dg.asset(
    deps=["raw_prices"],
    group_name="features",
    kinds={"duckdb", "polars"},
    pool="warehouse_write",
    owners=OWNERS,
    tags={"layer": "features"},
    metadata={"dagster/table_name": "warehouse.main.features"},
)
def features(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, pipeline: PipelineConfig
) -> dg.MaterializeResult:
    """Point-in-time features per (ticker, session) (returns, volatility, moving-average ratios,
    RSI, MACD, Bollinger position, volume features where the source has volume, market features
    from the exogenous tickers, calendar), and forward log-return targets per horizon in their own
    table. A feature at date t uses prices up to t only. A ticker has rows only while it is a
    member of the universe (universe.membership). Recomputed from all stored prices in
    under a second for the sample, so it is not partitioned."""
    cfg = pipeline.load()
    path = warehouse.resolved_path
    prices = within_membership(reads.prices(path), cfg.universe)
    if prices.height == 0:
        raise dg.Failure("raw_prices is empty: materialize raw_prices first")
    context.log.info(
        f"building features from {prices.height:,} price rows of {prices[TICKER].n_unique()} tickers"
    )
    feats = build_features(prices, cfg)
    universe = prices.filter(pl.col(TICKER).is_in(list(cfg.universe.tickers)))
    targets = targets_long(build_targets(universe, cfg.horizons), cfg.horizons)
    with transaction(path) as w:
        w.replace_table("features", feats)
        w.replace("targets", targets)
    complete = complete_rows(feats)
    context.log.info(
        f"{feats.height:,} feature rows ({complete.height:,} complete), "
        f"{len(feature_columns(feats))} features; {targets.height:,} target rows"
    )
    return dg.MaterializeResult(
        metadata={
            **row_count(feats.height),
            "dagster/column_schema": dg.MetadataValue.table_schema(frame_schema(feats)),
            "complete_rows": dg.MetadataValue.int(complete.height),
            "n_features": dg.MetadataValue.int(len(feature_columns(feats))),
            "feature_columns": dg.MetadataValue.json(list(feature_columns(feats))),
            "last_date": dg.MetadataValue.text(str(feats[DATE].max())),
        }
    )


@dg.asset(
    deps=["features"],
    group_name="evaluation",
    kinds={"duckdb"},
    pool="warehouse_write",
    owners=OWNERS,
    tags={"layer": "evaluation"},
    metadata=table_metadata("folds"),
)
def walk_forward_folds(warehouse: WarehouseResource, pipeline: PipelineConfig) -> dg.MaterializeResult:
    """Chronological walk-forward folds over the sessions that have complete features and every
    target: expanding (or sliding) train, a validation slice for early stopping, a test slice;
    purge gaps of at least the longest horizon between slices (see forecast_core.folds)."""
    cfg = pipeline.load()
    path = warehouse.resolved_path
    panel, _ = reads.labelled_panel(path, cfg.horizons)
    sessions = panel.drop_nulls()[DATE].unique().sort().to_list()
    folds = fold_layout.walk_forward_folds(sessions, cfg.folds, cfg.purge_sessions)
    frame = fold_layout.folds_frame(folds)
    with transaction(path) as w:
        w.replace("folds", frame)
    return dg.MaterializeResult(
        metadata={
            **row_count(frame.height),
            "n_folds": dg.MetadataValue.int(len(folds)),
            "folds": frame_table(frame),
        }
    )
