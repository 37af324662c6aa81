"""fold_evaluation's hand-over: each fold step stages its predictions as Parquet, the publishing
step streams every fold's files into `fold_predictions` in one transaction and removes them.

The folds here are the baselines' (fast) on the small synthetic panel, evaluated for real; the
pipeline tests (test_pipeline.py) run the whole asset with the LSTM.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from forecast_assets.assets.evaluation import publish_fold_evaluation, stage_fold
from forecast_assets.resources import WarehouseResource
from forecast_core.evaluation.walk_forward import evaluate_fold
from forecast_core.models.baselines import make_baselines
from tests.support.small_lstm import CFG
from tests.support.warehouse import content_hash
from warehouse import read_table

KEY = ["fold", "model", "ticker", "date", "horizon"]


@pytest.fixture(scope="module")
def fold_results(setup):
    panel, task, folds = setup
    return [evaluate_fold(panel, fold, task, make_baselines(task, CFG)) for fold in folds[:2]]


def test_staged_folds_are_published_whole_and_then_removed(fold_results, tmp_path: Path):
    db = tmp_path / "w.duckdb"
    staged = [stage_fold(r, i, tmp_path / "staging") for i, r in enumerate(fold_results)]
    assert [s.prediction_rows for s in staged] == [r.predictions.height for r in fold_results]
    assert not list((tmp_path / "staging").glob("*.partial"))

    context = dg.build_op_context(resources={"warehouse": WarehouseResource(path=str(db))})
    publish_fold_evaluation(context, staged)

    expected = pl.concat([r.predictions for r in fold_results]).sort(KEY)
    assert read_table("fold_predictions", path=db).sort(KEY).equals(expected)
    metrics = pl.concat([r.metrics for r in fold_results])
    assert (
        read_table("fold_metrics", path=db)
        .sort("fold", "model", "horizon", "metric")
        .equals(metrics.sort("fold", "model", "horizon", "metric"))
    )
    assert not list((tmp_path / "staging").iterdir())  # published, so removed

    # Publishing the same hand-over again (the step re-executed alone) names what is missing and
    # leaves the tables as they were.
    before = content_hash(db, "fold_predictions")
    with pytest.raises(
        dg.Failure, match=r"staged predictions are gone \(.*fold_0\.parquet.*re-run the evaluate_one_fold"
    ):
        publish_fold_evaluation(
            dg.build_op_context(resources={"warehouse": WarehouseResource(path=str(db))}), staged
        )
    assert content_hash(db, "fold_predictions") == before
