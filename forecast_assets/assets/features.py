"""features (+ targets) and walk_forward_folds."""

import tempfile

import dagster as dg
import polars as pl

from forecast_assets.metadata import OWNERS, frame_schema, frame_table, row_count, table_metadata
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_core.columns import DATE, TICKER
from forecast_core.data import blocks, refresh
from forecast_core.data.features import build_targets, complete_rows, feature_columns
from forecast_core.data.panel import targets_long
from forecast_core.data.spilled_panel import complete_sessions
from forecast_core.data.universe import within_membership
from forecast_core.evaluation import folds as fold_layout
from warehouse import forecast_state, reads, transaction

#: Tickers computed at a time (with the exogenous tickers): bounds memory to one chunk's frames.
CHUNK_TICKERS = 500


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
    member of the universe (universe.membership).

    Incremental: computed in 2-year calendar blocks (forecast_core.data.blocks), it recomputes
    only what changed since the last run (features_state: new sessions, a new ticker, a history a
    newer price vintage rewrote; another configuration rebuilds everything), equal to a full
    recompute bit for bit; targets from the longest horizon before the first new session."""
    cfg = pipeline.load()
    configured = list(cfg.universe.all_tickers)
    with transaction(warehouse.resolved_path) as w:
        vintage = reads.current_vintage(w)
        inputs = reads.price_inputs(w, configured)
        sig = refresh.signature(cfg, inputs)
        state = reads.features_state(w)
        built = 0 if state is None or state.is_empty() else int(state["prices_vintage"].min())
        plan = refresh.plan_refresh(
            cfg,
            sig,
            state,
            reads.prices_stored_after(w, built, configured),
            reads.tickers_rewritten_after(w, built),
        )
        if plan.mode == "full" and not reads.has_prices(w):
            raise dg.Failure("raw_prices is empty: materialize raw_prices first")
        context.log.info(f"features: {plan.mode} ({plan.reason}), {len(plan.tickers)} tickers to recompute")
        done = _recompute(w, cfg, plan, inputs, context.log)
        _invalidate_forecast_state(w, plan)
        if plan.removed:
            w.replace("features", pl.DataFrame(), reads.IN_TICKERS, [list(plan.removed)])
            w.replace("targets", pl.DataFrame(), reads.IN_TICKERS, [list(plan.removed)])
        w.replace("features_state", refresh.state_frame(cfg, vintage, sig))
    context.log.info(
        f"{plan.mode}: {done['feature_rows']:,} feature rows ({done['complete_rows']:,} complete) and "
        f"{done['target_rows']:,} target rows written for {len(plan.tickers)} tickers, sessions "
        f"{done['first_date']} .. {done['last_date']}; {len(plan.removed)} tickers removed"
    )
    return dg.MaterializeResult(
        metadata={
            **row_count(done["feature_rows"]),
            "mode": dg.MetadataValue.text(plan.mode),
            "reason": dg.MetadataValue.text(plan.reason),
            "tickers_recomputed": dg.MetadataValue.int(len(plan.tickers)),
            "recomputed": dg.MetadataValue.json(
                [{"since": str(g.since or "whole history"), "tickers": len(g.tickers)} for g in plan.groups]
            ),
            "tickers_removed": dg.MetadataValue.json(list(plan.removed)),
            "target_rows": dg.MetadataValue.int(done["target_rows"]),
            "sessions": dg.MetadataValue.text(f"{done['first_date']} .. {done['last_date']}"),
            "prices_vintage": dg.MetadataValue.int(vintage),
            "complete_rows": dg.MetadataValue.int(done["complete_rows"]),
            "n_features": dg.MetadataValue.int(len(done["columns"])),
            "feature_columns": dg.MetadataValue.json(list(done["columns"])),
            "last_date": dg.MetadataValue.text(str(done["last_date"])),
            **(
                {"dagster/column_schema": dg.MetadataValue.table_schema(done["schema"])}
                if done["schema"] is not None
                else {}
            ),
        }
    )


def _invalidate_forecast_state(w, plan: refresh.RefreshPlan) -> None:
    """Delete the LSTM's stored recursion states that rows this run replaced came before
    (`warehouse.forecast_state`): a new session leaves them, a rewritten history does not."""
    if plan.mode == "full":
        forecast_state.invalidate(w, None, None)
        return
    for group in plan.groups:
        forecast_state.invalidate(w, list(group.tickers), group.since)
    if plan.removed:
        forecast_state.invalidate(w, list(plan.removed), None)


def _recompute(w, cfg, plan: refresh.RefreshPlan, inputs, log) -> dict:
    """Recompute the plan's groups chunk by chunk and write them: features from each group's
    `since` (a slice replaced per chunk), targets from the longest horizon before it. A full
    plan recreates the features table (its columns follow the configuration)."""
    exogenous = list(cfg.universe.exogenous)
    done = {"feature_rows": 0, "complete_rows": 0, "target_rows": 0, "first_date": None, "last_date": None}
    done |= {"schema": None, "columns": ()}
    first_write = plan.mode == "full"
    for group in plan.groups:
        for i in range(0, len(group.tickers), CHUNK_TICKERS):
            names = list(group.tickers[i : i + CHUNK_TICKERS])
            prices = within_membership(
                reads.prices_slice(w, names + exogenous, blocks.prices_needed_from(group.since)), cfg.universe
            )
            feats = blocks.blocked_features(prices, cfg, inputs, group.since)
            universe = prices.filter(pl.col(TICKER).is_in(names))
            targets = targets_long(build_targets(universe, cfg.horizons), cfg.horizons)
            where, params = reads.IN_TICKERS, [names]
            if group.since is not None:
                t_from = blocks.targets_from(universe, group.since, cfg.max_horizon)
                targets = targets.filter(pl.col(DATE) >= t_from)
                where, params = f"{reads.IN_TICKERS} AND date >= ?", [names, group.since]
                t_where, t_params = where, [names, t_from]
            else:
                t_where, t_params = where, params
            if first_write:
                w.replace_table("features", feats)
                w.replace("targets", targets)
                first_write = False
            else:
                w.replace("features", feats, where, params)
                w.replace("targets", targets, t_where, t_params)
            _tally(done, feats, targets)
            log.info(
                f"features: {len(names)} tickers from {group.since or 'the first price'}: {feats.height:,} rows"
            )
    return done


def _tally(done: dict, feats: pl.DataFrame, targets: pl.DataFrame) -> None:
    done["feature_rows"] += feats.height
    done["target_rows"] += targets.height
    done["complete_rows"] += complete_rows(feats).height
    if feats.height:
        lo, hi = feats[DATE].min(), feats[DATE].max()
        done["first_date"] = lo if done["first_date"] is None else min(done["first_date"], lo)
        done["last_date"] = hi if done["last_date"] is None else max(done["last_date"], hi)
    if done["schema"] is None or feats.height:
        done["schema"], done["columns"] = frame_schema(feats), feature_columns(feats)


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
    with tempfile.TemporaryDirectory(prefix="forecast-panel-") as spill:
        panel, _ = reads.labelled_panel(path, cfg.horizons, spill_to=spill)
        sessions = complete_sessions(panel)
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
