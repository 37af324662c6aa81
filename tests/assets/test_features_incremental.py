"""The features asset's incremental runs against one full recompute: equal bit for bit.

Nightly runs one session at a time across a block boundary (2016-01-01), a ticker added to the
configuration mid-way (its whole history arrives with it), and a split that rewrites one ticker's
history; then the stored features and targets must equal what a fresh warehouse computes from the
same prices in one full run, exactly.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecast_assets.assets.features import features
from forecast_assets.resources import PipelineConfig, WarehouseResource
from forecast_core.columns import ADJ_CLOSE, DATE, INGESTED_AT, TICKER
from forecast_core.config import load_config
from forecast_core.data import calendar
from forecast_core.data.blocks import BLOCK_YEARS, block_of
from forecast_core.data.features import build_features
from tests.support.config import write_toml
from tests.support.synthetic import synthetic_prices
from warehouse import forecast_state, read_sql, transaction

START, FIRST_NIGHT, END = dt.date(2011, 1, 3), dt.date(2015, 12, 21), dt.date(2016, 1, 8)
ADDED_ON = dt.date(2015, 12, 29)  # CCC joins the configuration for this night's run
SPLIT_ON = dt.date(2016, 1, 5)  # AAA's history before 2014 is rewritten (a 2:1 split) that night
NOW = dt.datetime(2016, 1, 11, tzinfo=dt.UTC)


def _config(tmp_path: Path, tickers: list[str]) -> str:
    values = {"universe": {"tickers": tickers, "exogenous": ["^MKT"]}}
    return str(write_toml(tmp_path / f"config_{len(tickers)}.toml", values))


def _store(path: Path, frame: pl.DataFrame, tickers: list[str], since: dt.date) -> None:
    stamped = frame.with_columns(pl.lit(NOW, pl.Datetime("us", "UTC")).alias(INGESTED_AT))
    with transaction(path) as w:
        w.store_prices(
            stamped, "date >= ? AND list_contains(?::VARCHAR[], ticker)", [since, tickers], "test", NOW
        )


def _run(path: Path, config: str) -> dict:
    context = dg.build_asset_context()
    result = features(
        context, warehouse=WarehouseResource(path=str(path)), pipeline=PipelineConfig(config_file=config)
    )
    return {k: v.value for k, v in result.metadata.items()}


def _stored(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    return (
        read_sql("FROM features ORDER BY ticker, date", path=path),
        read_sql("FROM targets ORDER BY ticker, date, horizon", path=path),
    )


def _split(prices: pl.DataFrame) -> pl.DataFrame:
    """AAA's closes before 2014 halved (a split the source now adjusts for)."""
    hit = (pl.col(TICKER) == "AAA") & (pl.col(DATE) < dt.date(2014, 1, 1))
    return prices.with_columns(
        pl.when(hit).then(pl.col(ADJ_CLOSE) / 2).otherwise(pl.col(ADJ_CLOSE)).alias(ADJ_CLOSE)
    )


@pytest.fixture(scope="module")
def nightly(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("incremental")
    prices = synthetic_prices(("AAA", "BBB", "CCC", "^MKT"), START, END, seed=3)
    two, three = _config(tmp, ["AAA", "BBB"]), _config(tmp, ["AAA", "BBB", "CCC"])
    path = tmp / "nightly.duckdb"
    first = ["AAA", "BBB", "^MKT"]
    _store(path, prices.filter(pl.col(TICKER).is_in(first) & (pl.col(DATE) < FIRST_NIGHT)), first, START)
    runs = [_run(path, two)]
    tickers, config = first, two
    for day in calendar.sessions(FIRST_NIGHT, END):
        if day == ADDED_ON:
            tickers, config = [*first, "CCC"], three
            history = prices.filter((pl.col(TICKER) == "CCC") & (pl.col(DATE) < day))
            _store(path, history, ["CCC"], START)
        if day == SPLIT_ON:
            prices = _split(prices)
            rewritten = prices.filter((pl.col(TICKER) == "AAA") & (pl.col(DATE) < day))
            _store(path, rewritten, ["AAA"], START)
        _store(path, prices.filter(pl.col(TICKER).is_in(tickers) & (pl.col(DATE) == day)), tickers, day)
        runs.append({"day": day, **_run(path, config)})
    fresh = tmp / "full.duckdb"
    everything = ["AAA", "BBB", "CCC", "^MKT"]
    _store(fresh, prices, everything, START)
    full_run = _run(fresh, three)
    return {"path": path, "fresh": fresh, "runs": runs, "full_run": full_run, "prices": prices, "cfg": three}


def test_the_nightly_runs_cross_a_block_boundary():
    assert block_of(FIRST_NIGHT) + BLOCK_YEARS == block_of(END)


def test_incremental_runs_equal_one_full_recompute_exactly(nightly):
    got_features, got_targets = _stored(nightly["path"])
    want_features, want_targets = _stored(nightly["fresh"])
    assert got_features["ticker"].unique().sort().to_list() == ["AAA", "BBB", "CCC"]
    assert got_features[DATE].max() == END
    assert_frame_equal(got_features, want_features, check_exact=True)
    assert_frame_equal(got_targets, want_targets, check_exact=True)


def test_each_run_recomputes_only_what_changed(nightly):
    runs = nightly["runs"]
    assert runs[0]["mode"] == "full" and nightly["full_run"]["mode"] == "full"
    by_day = {r["day"]: r for r in runs[1:]}
    assert all(r["mode"] == "incremental" for r in by_day.values())
    plain = by_day[dt.date(2015, 12, 22)]
    assert plain["tickers_recomputed"] == 2 and plain["dagster/row_count"] == 2
    assert plain["recomputed"] == [{"since": "2015-12-22", "tickers": 2}]
    added = by_day[ADDED_ON]["recomputed"]
    assert {"since": "whole history", "tickers": 1} in added  # CCC: its whole history
    split = by_day[SPLIT_ON]["recomputed"]
    assert {"since": "whole history", "tickers": 1} in split  # AAA: rewritten
    assert {"since": str(SPLIT_ON), "tickers": 2} in split  # BBB and CCC: the new session


def test_blocked_features_match_the_unblocked_computation_to_rounding(nightly):
    stored, _ = _stored(nightly["path"])
    cfg = load_config(nightly["cfg"])
    whole = build_features(nightly["prices"], cfg).sort(TICKER, DATE)
    assert_frame_equal(stored, whole, check_exact=False, rel_tol=1e-9, abs_tol=1e-12)


def test_a_configuration_change_rebuilds_everything(nightly, tmp_path):
    values = {"universe": {"tickers": ["AAA", "BBB", "CCC"], "exogenous": ["^MKT"]}, "ewma_lambda": 0.95}
    config = str(write_toml(tmp_path / "lambda.toml", values))
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(Path(nightly["fresh"]).read_bytes())
    run = _run(copy, config)
    assert run["mode"] == "full" and run["reason"] == "the feature configuration changed"
    again = _run(copy, config)
    assert again["mode"] == "incremental" and again["tickers_recomputed"] == 0


def _states(path: Path) -> dict[str, dt.date]:
    rows = read_sql("SELECT ticker, as_of FROM forecast_state ORDER BY ticker", path=path)
    return dict(zip(rows[TICKER].to_list(), rows["as_of"].to_list(), strict=True))


def test_a_features_write_deletes_the_forecast_states_before_rows_it_replaced(nightly, tmp_path):
    """The LSTM's stored recursion states (`forecast_state`) stay valid while only rows after
    their `as_of` change: a new session keeps them, a rewritten history (a split, a corrected
    close) deletes that ticker's, a configuration change all of them."""
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(Path(nightly["fresh"]).read_bytes())
    state = pl.DataFrame(
        {
            TICKER: ["AAA", "BBB", "CCC"],
            "model": ["lstm", "lstm", "gjr_garch"],
            "as_of": [END - dt.timedelta(days=20)] * 2 + [END],
            "s2": [1e-4] * 3,
            "sigma": [1e-2] * 3,
            "slow_variance": [1e-4] * 3,
        }
    )
    with transaction(copy) as w:
        forecast_state.write(w, "v1", state)
    prices = nightly["prices"]
    last = prices.filter(pl.col(DATE) == END)
    night = calendar.add_sessions(END, 1)
    _store(copy, last.with_columns(pl.lit(night).alias(DATE)), ["AAA", "BBB", "CCC", "^MKT"], night)
    _run(copy, nightly["cfg"])
    assert _states(copy) == dict(zip(state[TICKER], state["as_of"], strict=True))  # a new session
    # BBB's history rewritten (a split) and CCC's close of END corrected (and the night's row
    # dropped): both are recomputed over their whole history and lose their states; AAA keeps its.
    stored = pl.concat([prices, last.with_columns(pl.lit(night).alias(DATE))])
    bbb = stored.filter(pl.col(TICKER) == "BBB").with_columns(
        pl.when(pl.col(DATE) < dt.date(2013, 1, 1)).then(pl.col(ADJ_CLOSE) / 2).otherwise(pl.col(ADJ_CLOSE))
    )
    _store(copy, bbb, ["BBB"], START)
    corrected = last.filter(pl.col(TICKER) == "CCC").with_columns(pl.col(ADJ_CLOSE) * 1.01)
    _store(copy, corrected, ["CCC"], END)
    run = _run(copy, nightly["cfg"])
    assert {"since": "whole history", "tickers": 2} in run["recomputed"]  # BBB and CCC
    assert _states(copy) == {"AAA": END - dt.timedelta(days=20)}
    other = str(
        write_toml(
            tmp_path / "lambda.toml",
            {"universe": {"tickers": ["AAA", "BBB", "CCC"], "exogenous": ["^MKT"]}, "ewma_lambda": 0.95},
        )
    )
    assert _run(copy, other)["mode"] == "full"
    assert _states(copy) == {}
