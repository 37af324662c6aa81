"""lstm_model: the production model of each retrain period (monthly), with lineage and a gate."""

import datetime as dt
import importlib.metadata
import json
import os
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
import jax
import polars as pl

from forecast_assets.charts import loss_curves
from forecast_assets.checks import MODEL_CHECKS
from forecast_assets.metadata import OWNERS, image, row_count, table_metadata
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_assets.serving import STATEFUL, stored_state
from forecast_core.columns import DATE
from forecast_core.config import ForecastConfig
from forecast_core.data.spilled_panel import SpilledPanel, panel_column
from forecast_core.models.forecaster import ForecastTask
from forecast_core.models.lstm import artifacts
from forecast_core.serving.periods import PeriodModel, best_baseline, period_key, train_period_model
from warehouse import reads, transaction


def code_version() -> str:
    """`FORECAST_CODE_VERSION` if set, else the package version plus the git commit when the code
    runs from a checkout (`0.1.0+3f2a1bc`, with `.dirty` for uncommitted changes)."""
    if os.environ.get("FORECAST_CODE_VERSION"):
        return os.environ["FORECAST_CODE_VERSION"]
    try:
        version = importlib.metadata.version("stock-forecast")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+{sha}{'.dirty' if dirty else ''}"


def _baseline_state(pm: PeriodModel, cfg: ForecastConfig) -> str | None:
    """The fitted state of the period's best baseline (`serving.stored_state`), where it may serve:
    the gate refused the LSTM, or a configured ticker has no LSTM embedding (its stand-in). It is
    the gate's fit, on the period's training slice: what `serving_forecaster` would refit, so that
    serving can restore it instead."""
    best = best_baseline(pm.val_pinball)
    unseen = set(cfg.universe.tickers) - set(pm.lstm.tickers)
    if pm.serving_model == "lstm" and not unseen:
        return None
    if best not in STATEFUL:
        return None
    return stored_state(pm.baselines[best])


def lstm_model_asset(retrain_months: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`lstm_model` on the job's retrain months (`forecast_assets.definitions.build_defs`)."""
    return dg.asset(
        partitions_def=retrain_months,
        deps=["features"],
        check_specs=MODEL_CHECKS,
        group_name="model",
        kinds={"jax", "duckdb"},
        pool="warehouse_write",
        owners=OWNERS,
        tags={"layer": "model"},
        metadata=table_metadata("models"),
    )(lstm_model)


def lstm_model(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, pipeline: PipelineConfig
) -> dg.MaterializeResult:
    """The production LSTM for one retrain period (a month), trained only on data known before
    the period starts, so that every forecast it makes (nightly or in a backfill) is out of
    sample. Stored with its lineage in `models` and its artifact in `model_artifacts`. A gate
    compares its validation pinball loss with zero_return's and the previous model's; if it
    loses, the period is served by the best baseline and `models.decision` says why."""
    cfg = pipeline.load()
    path = warehouse.resolved_path
    period_start = context.partition_time_window.start.date()
    cutoff = period_start - dt.timedelta(days=1)
    vintage = reads.prices_vintage(path)  # before the panel is read: the vintage it was read at
    with tempfile.TemporaryDirectory(prefix="forecast-panel-") as spill:
        panel, feature_cols = reads.panel_known_at(path, cfg, cutoff, spill_to=spill)
        return _train_and_store(context, cfg, path, period_start, vintage, panel, feature_cols)


def _train_and_store(
    context: dg.AssetExecutionContext,
    cfg: ForecastConfig,
    path: str,
    period_start: dt.date,
    vintage: int,
    panel: SpilledPanel,
    feature_cols: tuple[str, ...],
) -> dg.MaterializeResult:
    """`lstm_model` on the panel known before the period (read at price vintage `vintage`),
    spilled to disk (each model reads only its columns of it: `forecast_core.data.spilled_panel`)."""
    period = period_key(period_start)
    cutoff = period_start - dt.timedelta(days=1)
    last = panel_column(panel, DATE).max()
    if last is None or last < cutoff - dt.timedelta(days=10):
        raise dg.Failure(
            f"no features up to the session before {period_start} (last: {last}); "
            "materialize raw_prices and features first"
        )
    task = ForecastTask(feature_cols, cfg.horizons, cfg.quantiles)
    previous_period = period_key((period_start - dt.timedelta(days=1)).replace(day=1))
    prev_row = reads.latest_model(path, previous_period)
    previous = artifacts.from_bytes(prev_row["artifact"]) if prev_row else None

    def log_epoch(epoch: int, train_loss: float, val_loss: float) -> None:
        context.log.info(f"{period} epoch {epoch}: train pinball {train_loss:.5f}, val {val_loss:.5f}")

    context.log.info(
        f"{period}: training the LSTM ({cfg.model.ensemble_size} seed(s), at most {cfg.train.max_epochs} "
        f"epochs) on data up to {cutoff}, then the promotion gate"
    )
    pm = train_period_model(panel, task, cfg, period_start, previous, on_epoch=log_epoch)
    blob = artifacts.to_bytes(pm.lstm)
    sha = artifacts.sha256(blob)
    version = f"{period}-{sha[:12]}"
    result = pm.lstm.result
    assert result is not None
    model_metrics = {
        "val_pinball": pm.val_pinball,
        "previous_val_pinball": pm.previous_val_pinball,
        "best_epoch": result.best_epoch,
        "prior_val_pinball": result.prior_val_loss,
        "sigma_prior": cfg.model.sigma_prior,
        "ensemble_size": cfg.model.ensemble_size,
        "train_losses": result.train_losses,
        "val_losses": result.val_losses,
        "train_seconds": result.seconds,
    }
    row = pl.DataFrame(
        {
            "model_version": [version],
            "period": [period],
            "trained_at": [dt.datetime.now(dt.UTC)],
            "train_start": [pm.slices.train_start],
            "train_end": [pm.slices.train_end],
            "config": [json.dumps(cfg.to_dict())],
            "metrics": [json.dumps(model_metrics)],
            "code_version": [code_version()],
            "device": [result.device],
            "artifact_sha256": [sha],
            "promoted": [pm.promoted],
            "serving_model": [pm.serving_model],
            "decision": [pm.decision],
            "prices_vintage": [vintage],
            "baseline_state": pl.Series([_baseline_state(pm, cfg)], dtype=pl.String),
        }
    )
    with transaction(path) as w:
        w.replace("models", row, "model_version = ?", [version])
        w.replace(
            "model_artifacts",
            pl.DataFrame({"model_version": [version], "artifact": [blob]}),
            "model_version = ?",
            [version],
        )
    (context.log.info if pm.promoted else context.log.warning)(f"{version}: {pm.decision}")
    if result.best_epoch < 0:
        context.log.warning(
            f"{version}: no training epoch beat the untrained network (the {cfg.model.sigma_prior} prior, "
            f"validation pinball {result.prior_val_loss:.6g}): the LSTM returns the prior's bands"
        )
    curves = loss_curves(
        result.train_losses,
        result.val_losses,
        result.best_epoch,
        float(result.prior_val_loss),
        f"LSTM {version}: pinball loss per epoch",
    )
    return dg.MaterializeResult(
        metadata={
            **row_count(1),
            "model_version": version,
            "prices_vintage": dg.MetadataValue.int(vintage),
            "serving_model": pm.serving_model,
            "decision": pm.decision,
            "val_pinball_lstm": float(pm.val_pinball["lstm"]),
            "val_pinball_zero_return": float(pm.val_pinball["zero_return"]),
            "best_epoch": result.best_epoch,
            # -1: no epoch beat the untrained network, i.e. the volatility prior itself serves.
            "learned_nothing": dg.MetadataValue.bool(result.best_epoch < 0),
            "prior_val_pinball": float(result.prior_val_loss),
            "epochs": len(result.train_losses),
            "train_seconds": float(result.seconds),
            "device": result.device,
            "jax_backend": jax.default_backend(),
            "train_end": str(pm.slices.train_end),
            "final_train_pinball": float(result.train_losses[-1]) if result.train_losses else float("nan"),
            "best_val_pinball": float(min(result.val_losses)) if result.val_losses else float("nan"),
            "loss_curves": image(curves, "loss curves"),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="promotion_gate",
                passed=pm.promoted,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"decision": pm.decision, "serving_model": pm.serving_model},
            )
        ],
    )
