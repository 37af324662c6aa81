"""Point in time: price vintages when a source rewrites history, and a universe whose tickers list
and delist (universe.membership), through the real assets.

Vintages: a `file` source is ingested up to 2022-12-02 and December's first forecasts are made;
then AAPL splits 2:1 on 2022-12-05 and the source restates every earlier adjusted close (halved),
and raw_prices is re-materialized over the whole stored range, as the history_matches_source
check advises. Membership: the pipeline runs on the embedded sample with KO delisted on
2022-10-14 and MSFT listed on 2019-01-02.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecast_assets.checks import forecast_differences, recompute_forecasts
from forecast_core.columns import ADJ_CLOSE, DATE, TICKER
from forecast_core.config import load_config
from forecast_core.data.blocks import blocked_features
from forecast_core.data.features import available_inputs
from forecast_core.data.universe import within_membership
from tests.support.config import TINY_CONFIG, with_overrides, write_config
from tests.support.pipeline import checks_passed, defs_on, file_source_job, materialize, table
from tests.support.synthetic import synthetic_prices
from warehouse import reads

TICKERS = ("AAPL", "MSFT", "KO", "^GSPC")
HISTORY_START = dt.date(2018, 1, 2)
SPLIT = dt.date(2022, 12, 5)
BEFORE_SPLIT = dt.date(2022, 12, 2)
RESTATED_END = dt.date(2022, 12, 9)


def source_file(path: Path, restated: bool) -> Path:
    """Synthetic adjusted closes 2018..2022-12-09; `restated`: after AAPL's 2:1 split on SPLIT,
    as the source delivers them then (every AAPL close halved: the earlier ones by the
    adjustment, the later ones because the shares trade at half the price)."""
    prices = synthetic_prices(TICKERS, HISTORY_START, RESTATED_END).select(TICKER, DATE, ADJ_CLOSE)
    if restated:
        prices = prices.with_columns(
            pl.when(pl.col(TICKER) == "AAPL").then(pl.col(ADJ_CLOSE) / 2).otherwise(pl.col(ADJ_CLOSE))
        )
    else:
        prices = prices.filter(pl.col(DATE) < SPLIT)
    prices.write_csv(path)
    return path


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory):
    """The warehouse before and after the restatement (and what each step returned)."""
    directory = tmp_path_factory.mktemp("vintages")
    csv, config_file, warehouse, defs = file_source_job(directory, HISTORY_START)
    source_file(csv, restated=False)
    first = dt.date(2022, 12, 1)
    materialize(["raw_prices"], defs, start=dt.date(2022, 11, 1), end=BEFORE_SPLIT)
    materialize(["features"], defs)
    materialize(["lstm_model"], defs, partition_key=first.isoformat())
    materialize(["daily_forecasts"], defs, start=first, end=BEFORE_SPLIT, checks=())
    before = {
        "forecasts": table(warehouse, "SELECT * FROM forecasts ORDER BY ALL"),
        "features": table(warehouse, "SELECT * FROM features ORDER BY ticker, date"),
    }
    source_file(csv, restated=True)
    restatement = materialize(["raw_prices"], defs, start=HISTORY_START, end=RESTATED_END)
    materialize(["features"], defs)
    materialize(["forecast_scores"], defs)
    return warehouse, load_config(config_file), before, restatement


def test_a_restatement_records_a_vintage_naming_the_rewritten_ticker(split):
    warehouse, _, _, restatement = split
    vintages = table(warehouse, "SELECT * FROM price_vintages ORDER BY vintage")
    aapl_before = table(
        warehouse, "SELECT count(*) AS n FROM prices_as_of(1) WHERE ticker = 'AAPL' AND date < ?", [SPLIT]
    )["n"][0]
    assert vintages["vintage"].to_list() == [1, 2]
    second = vintages.row(1, named=True)
    assert second["tickers_changed"] == ["AAPL"]
    assert second["rows_changed"] == aapl_before and second["rows_removed"] == 0
    assert second["rows_inserted"] == 5 * len(TICKERS)  # the sessions 2022-12-05..09
    assert second["first_date"] == HISTORY_START and second["last_date"] == RESTATED_END
    assert len(second["content_sha256"]) == 64 and second["content_sha256"] != vintages["content_sha256"][0]
    # The run says which ticker and dates changed, and by how much.
    metadata = restatement.asset_materializations_for_node("raw_prices")[-1].metadata
    assert metadata["history_rewritten"].value is True and metadata["prices_vintage"].value == 2
    text = metadata["vintage_change"].value
    assert f"AAPL {aapl_before} session(s) {HISTORY_START}..{BEFORE_SPLIT}" in text and "x0.5" in text


def test_both_vintages_stay_queryable(split, tmp_path):
    warehouse, _, _, _ = split
    old = source_file(tmp_path / "old.csv", restated=False)
    new = source_file(tmp_path / "new.csv", restated=True)
    for vintage, csv in ((1, old), (2, new)):
        stored = table(
            warehouse, "SELECT ticker, date, adj_close FROM prices_as_of(?) ORDER BY ticker, date", [vintage]
        )
        expected = pl.read_csv(csv, try_parse_dates=True).sort(TICKER, DATE)
        assert_frame_equal(stored, expected, check_exact=True)
    assert_frame_equal(
        table(warehouse, "SELECT ticker, date, adj_close FROM raw_prices ORDER BY ticker, date"),
        table(warehouse, "SELECT ticker, date, adj_close FROM prices_as_of(2) ORDER BY ticker, date"),
        check_exact=True,
    )


def test_an_old_forecast_recomputes_bit_for_bit_from_its_vintage(split):
    warehouse, cfg, before, _ = split
    stored = before["forecasts"].filter(pl.col("as_of_date") == BEFORE_SPLIT)
    assert stored.height and stored["prices_vintage"].unique().to_list() == [1]
    version = stored["model_version"][0]
    recomputed = recompute_forecasts(str(warehouse), cfg, BEFORE_SPLIT, version, 1)
    assert forecast_differences(stored, recomputed) == ([], 0.0)
    # From today's prices the same model would say something else (AAPL's closes were halved).
    today = recompute_forecasts(str(warehouse), cfg, BEFORE_SPLIT, version, 2)
    different, _ = forecast_differences(
        stored, today.with_columns(pl.lit(1, pl.Int64).alias("prices_vintage"))
    )
    assert different and {t for _, t, _ in different} == {"AAPL"}


def test_the_features_follow_the_new_vintage(split):
    warehouse, cfg, before, _ = split
    features = table(warehouse, "SELECT * FROM features ORDER BY ticker, date")
    # What the asset stores: the features computed by calendar blocks from vintage 2's prices.
    prices = within_membership(reads.prices_as_of(str(warehouse), 2), cfg.universe)
    rebuilt = blocked_features(prices, cfg, available_inputs(prices))
    assert_frame_equal(features, rebuilt.sort(TICKER, DATE), check_exact=True)
    assert features[DATE].max() == RESTATED_END and before["features"][DATE].max() == BEFORE_SPLIT


def test_scores_of_forecasts_made_before_the_split_use_one_price_scale(split):
    warehouse, _, before, _ = split
    scores = table(
        warehouse,
        "SELECT s.*, f.last_close, f.pred_close FROM forecast_scores s JOIN forecasts f "
        "USING (as_of_date, ticker, horizon, model_version) WHERE ticker = 'AAPL' AND horizon = 1",
    )
    old = table(warehouse, "SELECT date, adj_close FROM prices_as_of(1) WHERE ticker = 'AAPL'")
    price = dict(old.iter_rows())
    assert scores.height == 2  # the forecasts of 12-01 and 12-02; their targets 12-02 and 12-05
    for row in scores.iter_rows(named=True):
        # The realised return spans the split without a jump: both closes as restated (halved).
        assert row["actual_close"] == pytest.approx(
            price.get(row["target_date"], row["actual_close"] * 2) / 2
        )
        assert row["actual_log_return"] == pytest.approx(
            math.log(row["actual_close"] / (row["last_close"] / 2)), abs=1e-12
        )
        assert abs(row["actual_log_return"]) < 0.2  # not log(1/2): no spurious split move
        assert row["error"] == pytest.approx(row["pred_close"] / 2 - row["actual_close"])
    assert before["forecasts"].filter(pl.col(TICKER) == "AAPL", pl.col("horizon") == 1).height == 2


# --- membership ---------------------------------------------------------------------------------

KO_LAST = dt.date(2022, 10, 14)
MSFT_FIRST = dt.date(2019, 1, 2)
MEMBERSHIP = {"KO": {"last": KO_LAST.isoformat()}, "MSFT": {"first": MSFT_FIRST.isoformat()}}


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory):
    """The pipeline on the sample with KO delisted on KO_LAST and MSFT listed on MSFT_FIRST."""
    directory = tmp_path_factory.mktemp("membership")
    config = with_overrides(
        TINY_CONFIG,
        {"universe": {**TINY_CONFIG["universe"], "membership": MEMBERSHIP}, "promotion_tolerance": 10.0},
    )
    warehouse = directory / "w.duckdb"
    defs = defs_on(warehouse, write_config(directory / "members.toml", config))
    december = (dt.date(2022, 12, 1), dt.date(2022, 12, 28))
    results = {
        "raw_prices": materialize(["raw_prices"], defs, start=dt.date(2022, 10, 3), end=december[1]),
        "features": materialize(["features"], defs),
        "walk_forward_folds": materialize(["walk_forward_folds"], defs),
        "fold_evaluation": materialize(["fold_evaluation"], defs),
        "lstm_model": materialize(["lstm_model"], defs, partition_key=december[0].isoformat()),
        "daily_forecasts": materialize(["daily_forecasts"], defs, start=december[0], end=december[1]),
        "forecast_scores": materialize(["forecast_scores"], defs),
        "strategy_backtest": materialize(["strategy_backtest"], defs),
    }
    return warehouse, results


def spans(warehouse: Path, name: str, date: str = "date") -> dict[str, tuple[dt.date, dt.date]]:
    rows = table(warehouse, f"SELECT ticker, min({date}), max({date}) FROM {name} GROUP BY ticker")
    return {t: (a, b) for t, a, b in rows.iter_rows()}


def test_tickers_are_stored_and_featurized_only_while_members(members):
    warehouse, results = members
    assert checks_passed(results["raw_prices"])
    for name in ("raw_prices", "features"):
        span = spans(warehouse, name)
        assert span["KO"][1] == KO_LAST and span["MSFT"][0] == MSFT_FIRST, name
        assert span["AAPL"][0] == HISTORY_START
    assert table(warehouse, "SELECT ticker, first_session, last_session FROM universe_membership").filter(
        pl.col(TICKER).is_in(["KO", "MSFT"])
    ).sort(TICKER).rows() == [("KO", None, KO_LAST), ("MSFT", MSFT_FIRST, None)]


def test_folds_score_a_ticker_only_while_it_is_a_member(members):
    warehouse, _ = members
    span = spans(warehouse, "fold_predictions")
    assert KO_LAST - dt.timedelta(days=10) <= span["KO"][1] <= KO_LAST
    folds = table(warehouse, "SELECT min(test_start) AS s, max(test_end) AS e FROM folds")
    assert span["AAPL"][1] == folds["e"][0] and span["KO"][0] >= folds["s"][0]


def test_no_forecast_after_a_delisting_and_the_backtest_exits_at_the_last_close(members):
    warehouse, results = members
    forecasts = table(warehouse, "SELECT * FROM forecasts")
    assert set(forecasts[TICKER]) == {"AAPL", "MSFT"}
    assert all(e.passed for e in results["daily_forecasts"].get_asset_check_evaluations())
    returns = table(
        warehouse,
        "SELECT period, date, position, turnover FROM backtest_returns "
        "WHERE strategy = 'buy_and_hold' AND ticker = 'KO' ORDER BY period, date",
    )
    # The fold forecasts stop when the last label is known: the last trade a few sessions before.
    last_day = returns[DATE].max()
    assert KO_LAST - dt.timedelta(days=10) <= last_day <= KO_LAST
    last = returns.filter(pl.col(DATE) == last_day)
    # Held at 1 to that close, then sold: that row trades the whole position out.
    assert last.height and (last["position"] == 1.0).all() and (last["turnover"] == 1.0).all()
    assert (
        returns.filter(pl.col(DATE) < last_day).group_by("period").agg(pl.col("turnover").sum())["turnover"]
        == 1.0
    ).all()
