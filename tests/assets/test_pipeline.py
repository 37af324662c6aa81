"""The whole pipeline through Dagster, in process, on the tiny configuration (three tickers of the
embedded sample and ^GSPC, history from 2018): one run per asset, as the demo does, then the
warehouse tables checked against the contract, idempotent re-runs, a backfill equal to the nightly
runs one by one, and the promotion gate's fallback in the assets (the gate itself:
tests/serving/test_periods.py).

The `pipeline` fixture (tests/conftest.py, built by `tests.support.pipeline.run_pipeline`)
materializes every asset in order. Its configuration sets a generous promotion tolerance so that
the LSTM serves December and the LSTM serving path is exercised;
`test_a_refused_model_falls_back_to_a_baseline` covers the other path.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
from pathlib import Path

import dagster as dg
import exchange_calendars as xcals
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecast_assets.checks import PRICE_CHECKS, forecasts_reproducible
from forecast_assets.serving import STATEFUL
from forecast_core.columns import DATE
from forecast_core.data import calendar
from forecast_core.models.baselines import BASELINES
from forecast_core.models.lstm import artifacts
from forecast_core.serving.periods import best_baseline
from tests.support.config import TINY_CONFIG, with_overrides, write_config
from tests.support.pipeline import (
    DECEMBER,
    HORIZONS,
    LAST_SESSION,
    PERIOD_START,
    TICKERS,
    Pipeline,
    check_results,
    defs_on,
    materialize,
    table,
)

pytestmark = pytest.mark.slow

ALL_TICKERS = (*TICKERS, "^GSPC")
MODELS = ("lstm", *BASELINES)
METRICS = ("mae", "rmse", "mape_price", "directional_accuracy", "pinball", "coverage_80")
FIRST_PRICE = dt.date(2018, 1, 2)
BACKFILL = calendar.sessions(dt.date(2022, 12, 5), dt.date(2022, 12, 9))


def digest(path: Path, name: str, exclude: str) -> str:
    """sha256 of a table's rows in a canonical order, without its timestamp column."""
    rows = table(path, f"SELECT * EXCLUDE ({exclude}) FROM {name} ORDER BY ALL").rows()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


# --- raw_prices, features, folds ----------------------------------------------------------------


def test_raw_prices_hold_every_ticker_once_per_session_since_the_configured_start(pipeline):
    prices = table(pipeline.warehouse, "SELECT * FROM raw_prices")
    assert sorted(prices["ticker"].unique()) == sorted(ALL_TICKERS)
    assert prices.select("ticker", "date").is_duplicated().sum() == 0
    span = prices.group_by("ticker").agg(
        pl.col(DATE).min().alias("first"), pl.col(DATE).max().alias("last"), pl.len().alias("n")
    )
    sessions = calendar.sessions(FIRST_PRICE, LAST_SESSION)
    for ticker, first, last, n in span.iter_rows():
        assert (first, last, n) == (FIRST_PRICE, LAST_SESSION, len(sessions)), ticker
    assert (prices["adj_close"] > 0).all()
    assert set(prices["source"]) == {"sample"}


def test_price_checks_ran_on_the_ingest_and_passed(pipeline):
    """Every price check ran; all passed but `history_matches_source`, which on a first load (the
    tickers' whole history came in this run) had nothing stored before to compare, and says so
    instead of passing: not passed, a warning, compared_rows 0, evaluated False."""
    evaluations = check_results(pipeline.results["raw_prices"])
    assert set(evaluations) == {c.check_key.name for c in PRICE_CHECKS}
    history = evaluations.pop("history_matches_source")
    assert not history.passed and history.severity == dg.AssetCheckSeverity.WARN
    assert history.metadata["compared_rows"].value == 0 and history.metadata["evaluated"].value is False
    assert "not evaluated" in history.description
    failed = {name: e.metadata for name, e in evaluations.items() if not e.passed}
    assert not failed


def test_folds_are_chronological_with_purge_gaps(pipeline):
    folds = table(pipeline.warehouse, "SELECT * FROM folds ORDER BY fold")
    assert folds["fold"].to_list() == [0, 1]
    h = max(HORIZONS)
    for f in folds.iter_rows(named=True):
        assert (
            f["train_start"]
            <= f["train_end"]
            < f["val_start"]
            <= f["val_end"]
            < f["test_start"]
            <= f["test_end"]
        )
        # No training (or validation) label reaches into the test slice.
        assert calendar.add_sessions(f["train_end"], h) < f["test_start"]
        assert calendar.add_sessions(f["val_end"], h) < f["test_start"]
        assert calendar.add_sessions(f["train_end"], h) < f["val_start"]
        assert len(calendar.sessions(f["test_start"], f["test_end"])) == 60
    first, second = folds.rows(named=True)
    assert first["test_end"] < second["test_start"]  # test slices do not overlap
    # Every test date has every target realised by the last price.
    assert calendar.add_sessions(second["test_end"], h) <= LAST_SESSION


def test_fold_predictions_lie_inside_their_test_slice(pipeline):
    outside = table(
        pipeline.warehouse,
        "SELECT p.fold, p.model, p.ticker, p.date FROM fold_predictions p JOIN folds f USING (fold) "
        "WHERE p.date NOT BETWEEN f.test_start AND f.test_end",
    )
    assert outside.height == 0, outside.head()
    counts = table(
        pipeline.warehouse,
        "SELECT fold, model, horizon, count(*) AS n, count(DISTINCT ticker) AS tickers "
        "FROM fold_predictions GROUP BY ALL",
    )
    assert counts.height == 2 * len(MODELS) * len(HORIZONS)
    assert set(counts["n"]) == {60 * len(TICKERS)}  # every ticker on every test session
    assert set(counts["tickers"]) == {len(TICKERS)}
    crossed = table(
        pipeline.warehouse, "SELECT count(*) AS n FROM fold_predictions WHERE q10 > q50 OR q50 > q90"
    )
    assert crossed["n"][0] == 0


def test_fold_metrics_for_every_model_horizon_and_metric(pipeline):
    m = table(pipeline.warehouse, "SELECT * FROM fold_metrics")
    have = set(m.select("fold", "model", "horizon", "metric").iter_rows())
    expected = {
        (f, model, h, metric) for f in (0, 1) for model in MODELS for h in HORIZONS for metric in METRICS
    }
    assert expected <= have, sorted(expected - have)[:10]
    # The pinball DM tests are always defined; the squared-error ones are left out where the
    # LSTM's median equals zero_return's point forecast (identical losses: the test is undefined).
    for metric in ("dm_pinball_stat", "dm_pinball_pvalue", "dm_best_pinball_stat", "pinball_seed_min"):
        assert {(f, "lstm", h, metric) for f in (0, 1) for h in HORIZONS} <= have
    values = m.filter(pl.col("metric").is_in(METRICS))["value"]
    assert values.is_finite().all()
    p = m.filter(pl.col("metric") == "dm_pvalue")["value"]
    assert ((p >= 0) & (p <= 1)).all()
    coverage = m.filter(pl.col("metric") == "coverage_80")["value"]
    assert ((coverage >= 0) & (coverage <= 1)).all()


def test_leaderboard_lists_the_lstm_beside_every_baseline(pipeline):
    board = table(pipeline.warehouse, "SELECT * FROM model_leaderboard")
    for h in HORIZONS:
        rows = board.filter(pl.col("horizon") == h)
        assert sorted(rows["model"]) == sorted(MODELS)
        assert set(rows["n_folds"]) == {2}
        zero = rows.filter(pl.col("model") == "zero_return")
        assert zero["pinball_skill_vs_zero_return"][0] == pytest.approx(0.0)
        assert rows["pinball"].is_finite().all()


# --- the production model -----------------------------------------------------------------------


def test_model_of_the_period_with_lineage_and_a_matching_artifact(pipeline):
    models = table(pipeline.warehouse, "SELECT * FROM models")
    assert models.height == 1
    m = models.row(0, named=True)
    assert m["period"] == "2022-12"
    assert FIRST_PRICE <= m["train_start"] <= m["train_end"] < PERIOD_START
    # Its last training label is realised before the period (the validation slice comes after).
    assert calendar.add_sessions(m["train_end"], max(HORIZONS)) < PERIOD_START
    blob = table(
        pipeline.warehouse,
        "SELECT artifact FROM model_artifacts WHERE model_version = ?",
        [m["model_version"]],
    )["artifact"][0]
    assert hashlib.sha256(blob).hexdigest() == m["artifact_sha256"] == artifacts.sha256(blob)
    assert m["model_version"] == f"2022-12-{m['artifact_sha256'][:12]}"
    config = json.loads(m["config"])
    assert config["universe"]["tickers"] == list(TICKERS) and config["model"]["hidden_size"] == 8
    assert set(json.loads(m["metrics"])["val_pinball"]) == set(MODELS)
    # The generous tolerance of this module's configuration promotes the LSTM.
    assert (m["promoted"], m["serving_model"]) == (True, "lstm")
    assert m["decision"].startswith("serving lstm: validation pinball")
    assert artifacts.from_bytes(blob).task.horizons == HORIZONS


# --- forecasts and scores -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def forecasts(pipeline) -> pl.DataFrame:
    return table(pipeline.warehouse, "SELECT * FROM forecasts ORDER BY as_of_date, ticker, horizon")


def test_one_forecast_per_session_ticker_and_horizon(pipeline, forecasts):
    assert forecasts.height == len(DECEMBER) * len(TICKERS) * len(HORIZONS)
    keys = set(forecasts.select("as_of_date", "ticker", "horizon").iter_rows())
    assert keys == {(d, t, h) for d in DECEMBER for t in TICKERS for h in HORIZONS}
    version = table(pipeline.warehouse, "SELECT model_version FROM models")["model_version"][0]
    assert set(forecasts["model_version"]) == {version}
    assert set(forecasts["model"]) == {"lstm"}
    evaluations = check_results(pipeline.results["daily_forecasts"])
    assert {"forecasts_finite", "quantiles_ordered", "complete_forecasts"} <= set(evaluations)
    assert all(e.passed for e in evaluations.values()), {n: e.metadata for n, e in evaluations.items()}


def test_target_dates_are_exchange_sessions_ahead(forecasts):
    xnys = xcals.get_calendar("XNYS", start="2022-01-01")
    for as_of, h, target in forecasts.select("as_of_date", "horizon", "target_date").unique().iter_rows():
        assert xnys.session_offset(as_of.isoformat(), h).date() == target, (as_of, h)
    # Over Christmas (closed on Monday 2022-12-26) and the new year.
    by_key = {
        (r[0], r[1]): r[2] for r in forecasts.select("as_of_date", "horizon", "target_date").iter_rows()
    }
    assert by_key[(dt.date(2022, 12, 23), 1)] == dt.date(2022, 12, 27)
    assert by_key[(dt.date(2022, 12, 23), 5)] == dt.date(2023, 1, 3)


def test_forecast_prices_follow_the_quantiles(pipeline, forecasts):
    assert ((forecasts["q10"] <= forecasts["q50"]) & (forecasts["q50"] <= forecasts["q90"])).all()
    assert (
        (forecasts["q10_close"] <= forecasts["q50_close"])
        & (forecasts["q50_close"] <= forecasts["q90_close"])
    ).all()
    last = forecasts["last_close"].to_numpy()
    np.testing.assert_allclose(
        forecasts["pred_close"], last * np.exp(forecasts["pred_log_return"].to_numpy()), rtol=1e-12
    )
    for q in ("q10", "q50", "q90"):
        np.testing.assert_allclose(
            forecasts[f"{q}_close"], last * np.exp(forecasts[q].to_numpy()), rtol=1e-12
        )
    # last_close is the as-of session's adjusted close.
    closes = table(pipeline.warehouse, "SELECT ticker, date AS as_of_date, adj_close FROM raw_prices")
    joined = forecasts.join(closes, on=["ticker", "as_of_date"], how="left")
    assert (joined["last_close"] == joined["adj_close"]).all()
    assert forecasts.select(pl.all().is_null().any()).row(0) == (False,) * forecasts.width


def test_latest_forecasts_are_the_last_session(pipeline):
    latest = table(pipeline.warehouse, "SELECT * FROM latest_forecasts")
    assert latest.height == len(TICKERS) * len(HORIZONS)
    assert set(latest["as_of_date"]) == {LAST_SESSION}
    assert set(latest.select("ticker", "horizon").iter_rows()) == {(t, h) for t in TICKERS for h in HORIZONS}


def test_scores_cover_the_matured_forecasts(pipeline, forecasts):
    scores = table(pipeline.warehouse, "SELECT * FROM forecast_scores")
    matured = forecasts.filter(pl.col("target_date") <= LAST_SESSION)
    assert matured.height < forecasts.height  # the last sessions' targets are still ahead
    key = ["as_of_date", "ticker", "horizon", "model_version"]
    assert sorted(scores.select(key).iter_rows()) == sorted(matured.select(key).iter_rows())
    closes = table(pipeline.warehouse, "SELECT ticker, date AS target_date, adj_close FROM raw_prices")
    s = scores.join(matured, on=key, suffix="_f").join(closes, on=["ticker", "target_date"])
    assert (s["actual_close"] == s["adj_close"]).all()
    inside = (s["q10_close"] <= s["actual_close"]) & (s["actual_close"] <= s["q90_close"])
    assert (s["covered_80"] == inside).all()
    np.testing.assert_allclose(s["error"], s["pred_close"] - s["actual_close"], rtol=1e-12)
    np.testing.assert_allclose(
        s["actual_log_return"], np.log(s["actual_close"] / s["last_close"]), rtol=1e-12
    )
    assert (s["pinball"] >= 0).all()
    assert 0 < s["covered_80"].mean() <= 1


# --- idempotency and backfills ------------------------------------------------------------------


def test_rematerializing_a_partition_leaves_the_tables_identical(pipeline):
    path, defs = pipeline.warehouse, pipeline.defs
    forecasts_before = digest(path, "forecasts", "created_at")
    prices_before = digest(path, "raw_prices", "ingested_at")
    stamps_before = table(path, "SELECT max(ingested_at) AS t FROM raw_prices")["t"][0]

    materialize(["daily_forecasts"], defs, start=DECEMBER[0], end=DECEMBER[-1])
    assert digest(path, "forecasts", "created_at") == forecasts_before

    result = materialize(["raw_prices"], defs, partition_key="2022-12-15")
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert digest(path, "raw_prices", "ingested_at") == prices_before
    # Only that session's rows were rewritten (one per ticker), nothing else.
    rewritten = table(path, "SELECT ticker, date FROM raw_prices WHERE ingested_at > ?", [stamps_before])
    assert sorted(rewritten.iter_rows()) == [(t, dt.date(2022, 12, 15)) for t in sorted(ALL_TICKERS)]


def test_a_backfill_equals_the_nightly_runs_one_by_one(pipeline):
    path, defs = pipeline.warehouse, pipeline.defs
    sql = (
        "SELECT * EXCLUDE (created_at) FROM forecasts WHERE as_of_date BETWEEN ? AND ? "
        "ORDER BY as_of_date, ticker, horizon"
    )
    span = [BACKFILL[0], BACKFILL[-1]]
    whole = digest(path, "forecasts", "created_at")

    materialize(["daily_forecasts"], defs, start=BACKFILL[0], end=BACKFILL[-1])
    backfill = table(path, sql, span)
    for day in BACKFILL:
        materialize(["daily_forecasts"], defs, partition_key=day.isoformat())
    one_by_one = table(path, sql, span)

    assert backfill.height == len(BACKFILL) * len(TICKERS) * len(HORIZONS)
    assert_frame_equal(backfill, one_by_one)
    # ... and both equal what the December range run wrote.
    assert digest(path, "forecasts", "created_at") == whole


# --- the promotion gate and the stand-in baseline, in the assets ------------------------------


def copy_warehouse(pipeline: Pipeline, directory: Path) -> Path:
    """A copy of the pipeline's warehouse (every connection is closed between runs)."""
    warehouse = directory / "w.duckdb"
    shutil.copy(pipeline.warehouse, warehouse)
    if pipeline.warehouse.with_name("w.duckdb.wal").exists():
        shutil.copy(pipeline.warehouse.with_name("w.duckdb.wal"), directory / "w.duckdb.wal")
    return warehouse


def test_a_ticker_added_after_the_retrain_is_served_by_the_stand_in_baseline(pipeline, tmp_path):
    """JNJ joins the universe on the period's last session. Its history comes in with that night's
    prices; December's LSTM (trained without it) still forecasts the other tickers, bit for bit as
    before; JNJ is forecast by the period's best validation baseline; every check passes,
    reproducibility included; the explanations cover the LSTM's tickers."""
    warehouse = copy_warehouse(pipeline, tmp_path)
    universe = {"tickers": [*TICKERS, "JNJ"], "exogenous": ["^GSPC"]}
    config_file = write_config(
        tmp_path / "added.toml",
        with_overrides(TINY_CONFIG, {"promotion_tolerance": 10.0, "universe": universe}),
    )
    defs = defs_on(warehouse, config_file)
    day = LAST_SESSION
    materialize(["raw_prices"], defs, start=day, end=day)
    materialize(["features"], defs)

    forecasted = materialize(["daily_forecasts"], defs, start=day, end=day)
    assert {e.check_name: e.passed for e in forecasted.get_asset_check_evaluations()} == {
        name: True for name in ("forecasts_finite", "quantiles_ordered", "complete_forecasts")
    }
    reproduced = materialize(
        dg.AssetSelection.checks(forecasts_reproducible), defs, checks=(forecasts_reproducible,)
    )
    evaluation = reproduced.get_asset_check_evaluations()[0]
    assert evaluation.passed and evaluation.metadata["rows"].value == 4 * len(HORIZONS)
    model = table(warehouse, "SELECT * FROM models WHERE period = '2022-12'").row(0, named=True)
    assert model["serving_model"] == "lstm"
    stand_in = best_baseline(json.loads(model["metrics"])["val_pinball"])
    rows = table(warehouse, "SELECT * FROM forecasts WHERE as_of_date = ? ORDER BY ticker, horizon", [day])
    assert dict(rows.select("ticker", "model").unique().iter_rows()) == {
        "AAPL": "lstm",
        "KO": "lstm",
        "MSFT": "lstm",
        "JNJ": stand_in,
    }
    jnj = rows.filter(pl.col("ticker") == "JNJ")
    assert jnj.height == len(HORIZONS) and (jnj["q10"] < jnj["q50"]).all() and (jnj["q50"] < jnj["q90"]).all()
    metadata = forecasted.asset_materializations_for_node("daily_forecasts")[0].metadata
    assert metadata["stand_in_tickers"].value == {"2022-12": {stand_in: ["JNJ"]}}
    before = table(
        pipeline.warehouse, "SELECT * FROM forecasts WHERE as_of_date = ? ORDER BY ticker, horizon", [day]
    )
    # The same forecasts for the others; made from the newer price vintage that added JNJ's history.
    others = rows.filter(pl.col("ticker") != "JNJ")
    assert (others["prices_vintage"] == before["prices_vintage"] + 1).all()
    assert_frame_equal(
        others.drop("created_at", "prices_vintage"), before.drop("created_at", "prices_vintage")
    )

    materialize(["forecast_explanations"], defs, start=day, end=day)
    explained = table(
        warehouse, "SELECT DISTINCT ticker FROM forecast_explanations WHERE as_of_date = ?", [day]
    )
    assert sorted(explained["ticker"]) == sorted(TICKERS)


def test_a_refused_model_falls_back_to_a_baseline(pipeline, tmp_path):
    """At asset level: an untrained LSTM (a learning rate of 1e-9) with no tolerance is refused by
    the gate, the promotion_gate check warns, and the period's forecasts come from the baseline."""
    warehouse = copy_warehouse(pipeline, tmp_path)
    config_file = write_config(
        tmp_path / "bad.toml",
        with_overrides(
            TINY_CONFIG, {"promotion_tolerance": 0.0, "train": {"learning_rate": 1e-9, "max_epochs": 1}}
        ),
    )
    defs = defs_on(warehouse, config_file)

    trained = materialize(["lstm_model"], defs, partition_key=PERIOD_START.isoformat())
    gate = check_results(trained)["promotion_gate"]
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    model = table(warehouse, "SELECT * FROM models ORDER BY trained_at DESC LIMIT 1").row(0, named=True)
    assert not model["promoted"] and model["serving_model"] in BASELINES
    assert model["decision"].startswith(f"serving {model['serving_model']}: ")
    assert "zero_return" in model["decision"] and "(1 + 0)" in model["decision"]
    # The serving baseline's fitted state is stored with the model where it has one.
    stored = json.loads(model["baseline_state"]) if model["baseline_state"] else None
    assert (stored is not None) == (model["serving_model"] in STATEFUL)
    assert stored is None or stored["model"] == model["serving_model"]

    forecasted = materialize(["daily_forecasts"], defs, start=BACKFILL[0], end=BACKFILL[-1])
    assert all(e.passed for e in forecasted.get_asset_check_evaluations())
    served = table(
        warehouse, "SELECT * FROM forecasts WHERE as_of_date BETWEEN ? AND ?", [BACKFILL[0], BACKFILL[-1]]
    )
    assert served.height == len(BACKFILL) * len(TICKERS) * len(HORIZONS)
    assert set(served["model"]) == {model["serving_model"]}
    assert set(served["model_version"]) == {model["model_version"]}
    assert ((served["q10"] <= served["q50"]) & (served["q50"] <= served["q90"])).all()
    # Refitted from the full panel of the forecasts' vintage, the baseline forecasts the same bits.
    reproduced = materialize(
        dg.AssetSelection.checks(forecasts_reproducible), defs, checks=(forecasts_reproducible,)
    )
    assert reproduced.get_asset_check_evaluations()[0].passed


# --- the documented SQL -------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def documented_queries() -> list[str]:
    """Every statement of every ```sql block in the README and the docs/ pages."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    text = "\n".join(page.read_text() for page in pages if page.is_file())
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)
    statements = [s.strip() for block in blocks for s in block.split(";")]
    return [s for s in statements if any(line and not line.startswith("--") for line in s.splitlines())]


def test_the_docs_have_analyst_queries():
    assert len(documented_queries()) >= 5


@pytest.mark.parametrize("sql", documented_queries(), ids=lambda s: s.splitlines()[0][:60])
def test_every_documented_query_runs_on_the_pipeline_warehouse(pipeline, sql):
    rows = table(pipeline.warehouse, sql)
    assert rows.height > 0, f"documented query returned nothing:\n{sql}"


# --- explanations: the stored margins and the grid on demand -------------------------------------


def test_stored_explanations_are_the_grids_margins_and_the_grid_is_recomputed_on_demand(
    pipeline, tmp_path, capsys
):
    from forecast_assets import explain as explain_cli

    day, path = LAST_SESSION, pipeline.warehouse
    features = table(path, "SELECT * FROM forecast_explanations WHERE as_of_date = ?", [day])
    by_lag = table(path, "SELECT * FROM forecast_explanation_lags WHERE as_of_date = ?", [day])
    n_features = features["feature"].n_unique()
    lookback = pipeline.cfg.model.lookback
    assert features.height == len(TICKERS) * len(HORIZONS) * n_features
    assert by_lag.height == len(TICKERS) * len(HORIZONS) * lookback
    # Either margin of a forecast sums to its median minus the baseline's.
    sums = features.group_by("ticker", "horizon").agg(
        pl.col("attribution").sum().alias("by_feature"),
        (pl.col("median") - pl.col("baseline_median")).first().alias("gap"),
    )
    sums = sums.join(
        by_lag.group_by("ticker", "horizon").agg(pl.col("attribution").sum().alias("by_lag")),
        on=["ticker", "horizon"],
    )
    scale = float(sums["gap"].abs().max())
    np.testing.assert_allclose(sums["by_feature"], sums["gap"], atol=1e-3 * scale + 1e-8)
    np.testing.assert_allclose(sums["by_lag"], sums["by_feature"], atol=1e-6 * scale + 1e-10)

    out = tmp_path / "grid.parquet"
    args = [
        day.isoformat(),
        "KO",
        "--warehouse",
        str(path),
        "--config",
        str(pipeline.directory / "tiny.toml"),
    ]
    assert explain_cli.main([*args, "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "largest gap between the recomputed and the stored margins" in said
    gap = float(said.rsplit(":", 1)[1])
    assert gap < 1e-6 * scale + 1e-10
    grid = pl.read_parquet(out)
    assert grid.height == len(HORIZONS) * n_features * lookback
    recomputed = grid.group_by("horizon", "feature").agg(pl.col("attribution").sum())
    stored = features.filter(pl.col("ticker") == "KO").select("horizon", "feature", "attribution")
    joined = stored.join(recomputed, on=["horizon", "feature"], suffix="_grid")
    assert joined.height == stored.height
    np.testing.assert_allclose(joined["attribution_grid"], joined["attribution"], atol=1e-6 * scale + 1e-10)
    # Printed as a table: lags down, features across.
    assert explain_cli.main([*args, "--horizon", "1"]) == 0
    assert "horizon 1" in capsys.readouterr().out
