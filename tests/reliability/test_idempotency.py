"""Idempotency and reproducibility on the pipeline of tests/assets/test_pipeline.py (the `pipeline`
fixture of tests/conftest.py: the tiny configuration, prices from 2018, December 2022's model and
forecasts).

- Every partitioned asset (raw_prices, lstm_model, daily_forecasts, forecast_explanations)
  materialized again leaves every table of the warehouse identical: content digests without the
  audit timestamps (ingested_at, created_at, scored_at, trained_at) and the training wall time
  that `models.metrics` records. The model keeps its version and artifact sha256.
- A backfill over a range equals the sessions run one by one, for raw_prices and
  forecast_explanations (tests/assets/test_pipeline.py does it for daily_forecasts).
- The asset check `forecasts_reproducible` recomputes the latest session's forecasts from the
  stored artifact bit for bit, and names the row when a stored value is off by one ulp.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import dagster as dg
import numpy as np
import pytest

from forecast_assets.checks import PRICE_CHECKS, forecasts_reproducible
from forecast_core.data import calendar
from tests.reliability.ledger import record
from tests.support.pipeline import (
    DECEMBER,
    HORIZONS,
    LAST_SESSION,
    PERIOD_START,
    RANGE_END,
    RANGE_START,
    Pipeline,
    table,
)
from warehouse import connect, read_sql

pytestmark = pytest.mark.slow  # like tests/assets/test_pipeline.py: `-m "not slow"` skips it

#: Table -> the SQL of its content without audit timestamps (and the training time of a model).
CONTENT = {
    "raw_prices": "SELECT * EXCLUDE (ingested_at) FROM raw_prices",
    "features": "SELECT * FROM features",
    "targets": "SELECT * FROM targets",
    "folds": "SELECT * FROM folds",
    "fold_predictions": "SELECT * FROM fold_predictions",
    "fold_metrics": "SELECT * FROM fold_metrics",
    "models": "SELECT * EXCLUDE (trained_at, metrics), "
    "json_merge_patch(metrics, '{\"train_seconds\": null}') AS metrics FROM models",
    "model_artifacts": "SELECT * FROM model_artifacts",
    "forecasts": "SELECT * EXCLUDE (created_at) FROM forecasts",
    "forecast_scores": "SELECT * EXCLUDE (scored_at) FROM forecast_scores",
    "forecast_explanations": "SELECT * FROM forecast_explanations",
}
EXPLAINED = DECEMBER[-3:]
PRICES = calendar.sessions(dt.date(2022, 12, 12), dt.date(2022, 12, 16))


@pytest.fixture(scope="module", autouse=True)
def _fixed_code_version():
    """models.code_version holds the git commit: pin it, so that a commit made by someone else
    while the suite runs does not count as a difference."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FORECAST_CODE_VERSION", "reliability")
        yield


def digests(path) -> dict[str, str]:
    with connect(path, read_only=True) as con:
        return {
            name: hashlib.sha256(repr(con.execute(sql + " ORDER BY ALL").fetchall()).encode()).hexdigest()
            for name, sql in CONTENT.items()
        }


def run(
    selection: list,
    defs: dg.Definitions,
    days: list[dt.date] | None = None,
    key: str | None = None,
    checks: tuple = (),
) -> dg.ExecuteInProcessResult:
    tags = {RANGE_START: days[0].isoformat(), RANGE_END: days[-1].isoformat()} if days else None
    result = dg.materialize(
        [*defs.assets, *PRICE_CHECKS, *checks],
        selection=selection,
        resources=defs.resources,
        tags=tags,
        partition_key=key,
    )
    assert result.success
    return result


@pytest.fixture(scope="module")
def explained(pipeline: Pipeline) -> Pipeline:
    """The pipeline plus the explanations of its last three sessions."""
    run(["forecast_explanations"], pipeline.defs, EXPLAINED)
    return pipeline


def test_every_partitioned_asset_materialized_twice_leaves_identical_tables(explained: Pipeline) -> None:
    path, defs = explained.warehouse, explained.defs
    model_before = table(path, "SELECT model_version, artifact_sha256 FROM models").rows()
    before = digests(path)

    run(["raw_prices"], defs, PRICES)
    run(["lstm_model"], defs, key=PERIOD_START.isoformat())
    run(["daily_forecasts"], defs, DECEMBER)
    run(["forecast_explanations"], defs, EXPLAINED)
    record("idempotency_reruns", 4)

    after = digests(path)
    changed = sorted(name for name in CONTENT if before[name] != after[name])
    record("losses_rerun_differs", len(changed))
    assert not changed, f"tables changed by a re-run: {changed}"
    assert table(path, "SELECT model_version, artifact_sha256 FROM models").rows() == model_before


def test_a_backfill_equals_the_sessions_one_by_one(explained: Pipeline) -> None:
    path, defs = explained.warehouse, explained.defs
    sql = {
        "raw_prices": (
            "SELECT * EXCLUDE (ingested_at) FROM raw_prices WHERE date BETWEEN ? AND ? ORDER BY ALL",
            PRICES,
        ),
        "forecast_explanations": (
            "SELECT * FROM forecast_explanations WHERE as_of_date BETWEEN ? AND ? ORDER BY ALL",
            EXPLAINED,
        ),
    }
    for asset, (query, days) in sql.items():
        run([asset], defs, days)
        backfill = read_sql(query, [days[0], days[-1]], path)
        for day in days:
            run([asset], defs, key=day.isoformat())
        one_by_one = read_sql(query, [days[0], days[-1]], path)
        record("idempotency_reruns", 1 + len(days))
        assert backfill.height > 0
        same = backfill.equals(one_by_one)
        record("losses_backfill_differs", int(not same))
        assert same, asset


def test_forecasts_reproducible_check_recomputes_the_latest_session_bit_for_bit(pipeline: Pipeline) -> None:
    path, defs = pipeline.warehouse, pipeline.defs
    check = run(["daily_forecasts"], defs, key=LAST_SESSION.isoformat(), checks=(forecasts_reproducible,))
    evaluation = {e.check_name: e for e in check.get_asset_check_evaluations()}["forecasts_reproducible"]
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    record("reproducibility_checks")
    assert evaluation.passed, meta
    assert meta["as_of_date"] == str(LAST_SESSION) and meta["rows"] == 6 and meta["different_rows"] == 0

    # One ulp on one stored value: the check, run on its own from the UI's "execute" button, names it.
    row = table(
        path,
        "SELECT ticker, horizon, q50 FROM forecasts WHERE as_of_date = ? ORDER BY ticker, horizon",
        [LAST_SESSION],
    ).row(0, named=True)
    with connect(path) as con:
        con.execute(
            "UPDATE forecasts SET q50 = ? WHERE as_of_date = ? AND ticker = ? AND horizon = ?",
            [float(np.nextafter(row["q50"], np.inf)), LAST_SESSION, row["ticker"], row["horizon"]],
        )
    alone = dg.materialize(
        [*defs.assets, forecasts_reproducible],
        resources=defs.resources,
        selection=dg.AssetSelection.checks(forecasts_reproducible),
    )
    evaluation = alone.get_asset_check_evaluations()[0]
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert not evaluation.passed and meta["different_rows"] == 1
    assert f"{LAST_SESSION} {row['ticker']} {row['horizon']}" in meta["examples"]
    assert 0 < meta["max_abs_difference"] < 1e-15

    run(["daily_forecasts"], defs, key=LAST_SESSION.isoformat())  # restore the published rows


def test_forecasts_reproducible_recomputes_a_rotating_sample_where_the_lstm_serves(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `REPRODUCIBLE_TICKERS` tickers the check recomputes only a sample (each ticker's LSTM
    forecast depends on its own rows): bit for bit on the sampled tickers, a changed value of one
    of them fails it, and the sample follows the date."""
    from forecast_assets import checks

    path, defs = pipeline.warehouse, pipeline.defs
    monkeypatch.setattr(checks, "REPRODUCIBLE_TICKERS", 2)
    run(["daily_forecasts"], defs, key=LAST_SESSION.isoformat())
    stored = table(path, "SELECT * FROM forecasts WHERE as_of_date = ?", [LAST_SESSION])
    assert set(stored["model"]) == {"lstm"}
    tickers = sorted(stored["ticker"].unique().to_list())
    sample = checks.reproducible_sample(LAST_SESSION, tickers, served_by_lstm=True)
    assert len(sample) == 2 and set(sample) < set(tickers)
    later = [
        checks.reproducible_sample(LAST_SESSION + dt.timedelta(days=d), tickers, served_by_lstm=True)
        for d in range(1, 8)
    ]
    assert any(s != sample for s in later)  # it rotates
    # Where a baseline served any ticker, every ticker (a refitted baseline pools them).
    assert checks.reproducible_sample(LAST_SESSION, tickers, served_by_lstm=False) == tickers

    def evaluate() -> tuple[bool, dict]:
        result = dg.materialize(
            [*defs.assets, forecasts_reproducible],
            resources=defs.resources,
            selection=dg.AssetSelection.checks(forecasts_reproducible),
        ).get_asset_check_evaluations()[0]
        return result.passed, {k: v.value for k, v in result.metadata.items()}

    passed, meta = evaluate()
    assert passed and meta["tickers_checked"] == 2 and meta["tickers_forecast"] == len(tickers)
    assert meta["rows"] == 2 * len(HORIZONS) and meta["different_rows"] == 0
    with connect(path) as con:  # one ulp on a sampled ticker's value
        con.execute(
            "UPDATE forecasts SET q50 = nextafter(q50, 1.0) WHERE as_of_date = ? AND ticker = ? AND horizon = ?",
            [LAST_SESSION, sample[0], HORIZONS[0]],
        )
    passed, meta = evaluate()
    assert not passed and meta["different_rows"] == 1
    run(["daily_forecasts"], defs, key=LAST_SESSION.isoformat())  # restore the published rows
