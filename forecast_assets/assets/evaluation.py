"""fold_evaluation: every fold's LSTM and baselines, trained in parallel, scored the same way.

A graph-backed asset: `plan_folds` fans out one `evaluate_fold` step per fold (Dagster's dynamic
mapping), so the multiprocess executor trains folds in parallel processes, one per core; then
`publish_fold_evaluation` writes every fold's predictions and metrics in one transaction.

A fold step stages its predictions as a Parquet file in the run's storage (where Dagster's IO
manager keeps step outputs) and hands on only the path, its metrics and timings: at 5,000 tickers
a fold has about 18 million prediction rows, and the publishing step streams the files into the
warehouse instead of holding every fold's rows at once.
"""

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl

from forecast_assets.metadata import OWNERS, frame_table, row_count, table_metadata
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_core.config import ForecastConfig
from forecast_core.evaluation.folds import Fold
from forecast_core.evaluation.walk_forward import FoldResult, evaluate_fold
from forecast_core.models.baselines import make_baselines
from forecast_core.models.forecaster import ForecastTask
from forecast_core.models.lstm.forecaster import LSTMForecaster
from warehouse import read_table, reads, transaction
from warehouse.io import ParquetRows


@dataclass(frozen=True)
class StagedFold:
    """One fold step's result as the publishing step receives it: the predictions' Parquet file
    (`fold_predictions` rows), their count, the fold's `fold_metrics` rows and seconds per model."""

    fold: int
    predictions: str
    prediction_rows: int
    metrics: pl.DataFrame
    seconds: dict[str, float]


def staging_dir(context: dg.OpExecutionContext) -> Path:
    """Where this run's fold steps stage their predictions: beside Dagster's own step outputs
    (`<instance storage>/<run id>/`), so wherever the steps run, the publishing step finds them."""
    return Path(context.instance.storage_directory()) / context.run_id / "fold_predictions"


def stage_fold(result: FoldResult, fold_id: int, directory: Path) -> StagedFold:
    """Write a fold's predictions to `directory` (whole or not at all: written aside, then renamed)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"fold_{fold_id}.parquet"
    partial = target.with_suffix(".parquet.partial")
    result.predictions.write_parquet(partial)
    os.replace(partial, target)
    return StagedFold(fold_id, str(target), result.predictions.height, result.metrics, result.seconds)


@dg.op(ins={"after": dg.In(dg.Nothing)}, out=dg.DynamicOut(int))
def plan_folds(warehouse: WarehouseResource):
    """One dynamic output per fold of the `folds` table."""
    for fold in reads.folds(warehouse.resolved_path):
        yield dg.DynamicOutput(fold.fold, mapping_key=f"fold_{fold.fold}")


@dg.op
def evaluate_one_fold(
    context: dg.OpExecutionContext, fold_id: int, warehouse: WarehouseResource, pipeline: PipelineConfig
) -> StagedFold:
    """Train the LSTM and every baseline on one fold and score them on its test slice; stage the
    predictions for `publish_fold_evaluation`."""
    cfg = pipeline.load()
    path = warehouse.resolved_path
    fold = next(f for f in reads.folds(path) if f.fold == fold_id)
    with tempfile.TemporaryDirectory(prefix="forecast-panel-") as spill:
        result = _evaluate_one_fold(context, fold, path, cfg, spill)
    return stage_fold(result, fold_id, staging_dir(context))


def _evaluate_one_fold(
    context: dg.OpExecutionContext, fold: Fold, path: str, cfg: ForecastConfig, spill: str
) -> FoldResult:
    """`evaluate_one_fold` with the fold's panel spilled to the directory `spill` (read a few
    columns at a time by each model: `forecast_core.data.spilled_panel`)."""
    fold_id = fold.fold
    panel, feature_cols = reads.labelled_panel(path, cfg.horizons, until=fold.test_end, spill_to=spill)
    task = ForecastTask(feature_cols, cfg.horizons, cfg.quantiles)

    def log_epoch(epoch: int, train_loss: float, val_loss: float) -> None:
        context.log.info(f"fold {fold_id} epoch {epoch}: train pinball {train_loss:.5f}, val {val_loss:.5f}")

    context.log.info(
        f"fold {fold_id}: training the LSTM and the baselines on {fold.train_start}..{fold.train_end}, "
        f"testing on {fold.test_start}..{fold.test_end}"
    )
    lstm = LSTMForecaster(task, cfg, on_epoch=log_epoch)
    result = evaluate_fold(panel, fold, task, [lstm, *make_baselines(task, cfg)])
    assert lstm.result is not None
    context.log.info(
        f"fold {fold_id}: best epoch {lstm.result.best_epoch}, {lstm.result.seconds:.1f}s on {lstm.result.device}"
    )
    return result


@dg.op(pool="warehouse_write")
def publish_fold_evaluation(
    context: dg.OpExecutionContext, results: list[StagedFold], warehouse: WarehouseResource
) -> dg.Output[None]:
    """Replace `fold_predictions` and `fold_metrics` with every fold's rows, atomically (the
    predictions streamed from the staged files, which are removed once committed)."""
    path = warehouse.resolved_path
    staged = [r.predictions for r in results]
    missing = [p for p in staged if not os.path.isfile(p)]
    if missing:
        raise dg.Failure(
            f"the fold steps' staged predictions are gone ({', '.join(missing)}): they are removed "
            "once published, so re-run the evaluate_one_fold steps with this step, not this step alone"
        )
    metrics = pl.concat([r.metrics for r in results])
    with transaction(path) as w:
        predictions = w.replace("fold_predictions", ParquetRows(tuple(staged)))
        w.replace("fold_metrics", metrics)
    for p in staged:
        os.remove(p)
    board = read_table("model_leaderboard", path=path)
    lstm = board.filter(pl.col("model") == "lstm")
    metadata: dict[str, dg.MetadataValue | float | int] = {
        **row_count(predictions),
        "folds": len(results),
        "prediction_rows": predictions,
        "metric_rows": metrics.height,
        "leaderboard": frame_table(board, LEADERBOARD_COLUMNS),
        "lstm_train_seconds": float(sum(r.seconds.get("lstm", 0.0) for r in results)),
    }
    for row in lstm.iter_rows(named=True):
        h = row["horizon"]
        metadata[f"lstm_pinball_skill_h{h}"] = float(row["pinball_skill_vs_zero_return"])
        metadata[f"lstm_coverage_80_h{h}"] = float(row["coverage_80"])
    best = board.sort("horizon", "pinball").group_by("horizon", maintain_order=True).first()
    context.log.info(
        f"wrote {predictions:,} fold predictions and {metrics.height:,} metric rows; lowest test pinball: "
        + ", ".join(
            f"h{h} {m} ({p:.5g})" for h, m, p in best.select("horizon", "model", "pinball").iter_rows()
        )
    )
    return dg.Output(None, metadata=metadata)


#: The leaderboard's columns shown in the UI (model_leaderboard has more).
LEADERBOARD_COLUMNS = [
    "model",
    "horizon",
    "pinball",
    "pinball_skill_vs_zero_return",
    "coverage_80",
    "rmse",
    "mae",
    "mape_price",
    "directional_accuracy",
    "dm_pvalue_min",
]


@dg.graph_asset(
    ins={"walk_forward_folds": dg.AssetIn(dagster_type=dg.Nothing)},
    group_name="evaluation",
    kinds={"jax", "duckdb"},
    owners=OWNERS,
    tags={"layer": "evaluation"},
    metadata=table_metadata("fold_predictions"),
)
def fold_evaluation(walk_forward_folds):
    """Walk-forward evaluation: on every fold, the Flax LSTM and the baselines (zero_return,
    historical_mean, ridge, ewma_vol) are trained on the fold's training slice and scored on its
    test slice with the same metrics (mae, rmse, mape_price, directional_accuracy, pinball,
    coverage_80), plus Diebold-Mariano tests of the LSTM against zero_return. Writes
    fold_predictions and fold_metrics; the model_leaderboard view ranks them."""
    results = plan_folds(after=walk_forward_folds).map(evaluate_one_fold)
    return publish_fold_evaluation(results.collect())
