"""The nightly forecast's cheap path gives bit-identical forecasts: the serving panel (only the
columns the fitted models read, every session) against the full modelling panel, the LSTM
continued from its stored recursion state (only the rows after it read) against the whole
history, and a volatility baseline restored from the state stored with the period's model against
the same baseline refitted (what `serving_plan` did on every forecast run), on the pipeline's
warehouse (tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecast_assets import serving
from forecast_assets.periods import PeriodBatch, batches_by_period
from forecast_core.columns import DATE, PRICE, TICKER
from forecast_core.config import UniverseConfig
from forecast_core.models.continuation import STATE_SLACK
from forecast_core.models.forecaster import ForecastTask
from forecast_core.models.lstm import artifacts
from forecast_core.serving.periods import serving_forecaster
from tests.support.pipeline import DECEMBER, LAST_SESSION, PERIOD_START
from warehouse import forecast_state, reads

pytestmark = pytest.mark.slow

CREATED = dt.datetime(2023, 1, 3, tzinfo=dt.UTC)
DAYS = DECEMBER[-3:]


@pytest.fixture(scope="module")
def model(pipeline):
    path, cfg = str(pipeline.warehouse), pipeline.cfg
    row = reads.latest_model(path, "2022-12")
    return path, cfg, row, artifacts.from_bytes(row["artifact"])


def lean_and_full(path, cfg, cutoff, priced_from=DAYS[0]):
    columns = serving.serving_columns(reads.feature_table_columns(path))
    lean = reads.serving_panel(path, cfg, cutoff, columns, priced_from)
    return lean, reads.panel_known_at(path, cfg, cutoff)


def forecasts(batch: PeriodBatch, cfg) -> pl.DataFrame:
    return batch.forecasts(cfg, CREATED)[0]


def test_the_serving_columns_are_what_the_lstm_and_the_volatility_baselines_read(model):
    path, _, _, lstm = model
    names = reads.feature_table_columns(path)
    assert serving.serving_columns(names) == ("ret_1", "mkt_gspc_ret_1")
    assert set(lstm.scalers.inputs) == {
        "shock",
        "abs_shock",
        "leverage",
        "vol_ratio",
        "mkt_shock",
        "mkt_abs_shock",
        "mkt_vol_ratio",
    }


@pytest.mark.parametrize("membership", [(), (("KO", None, "2022-10-14"),)])
def test_the_serving_panel_is_the_full_panel_with_fewer_columns(model, membership):
    path, cfg, _, _ = model
    if membership:
        universe = UniverseConfig(cfg.universe.tickers, cfg.universe.exogenous, membership)
        cfg = dataclasses.replace(cfg, universe=universe)
    priced_from = dt.date(2022, 10, 3)
    (lean, names), (full, full_names) = lean_and_full(path, cfg, LAST_SESSION, priced_from)
    assert names == full_names and lean.height == full.height > 0
    assert lean[TICKER].n_unique() == len(cfg.universe.tickers)
    shared = [c for c in lean.columns if not c.startswith("target_") and c != PRICE]
    assert_frame_equal(lean.select(shared), full.select(shared), check_exact=True)
    assert lean.select(pl.col("^target_.*$").is_null().all()).row(0) == (True, True)
    # The price of the sessions from `priced_from` (those forecast), as in the full panel; none before.
    priced = pl.col(DATE) >= priced_from
    keyed = [TICKER, DATE, PRICE]
    assert_frame_equal(lean.filter(priced).select(keyed), full.filter(priced).select(keyed), check_exact=True)
    assert lean.filter(~priced)[PRICE].is_null().all()
    if membership:  # no price outside KO's membership, as in the full panel
        ko = lean.filter(pl.col(TICKER) == "KO", pl.col(DATE) > dt.date(2022, 10, 14))
        assert ko.height and ko[PRICE].is_null().all()
        assert (
            lean.filter(pl.col(TICKER) == "KO", priced, pl.col(DATE) <= dt.date(2022, 10, 14))[PRICE]
            .is_not_null()
            .all()
        )


def test_the_lstm_forecasts_bit_for_bit_from_the_serving_panel(model):
    path, cfg, row, lstm = model
    assert row["serving_model"] == "lstm"
    (lean, names), (full, _) = lean_and_full(path, cfg, DAYS[-1])
    vintage = reads.prices_vintage(path)
    a = PeriodBatch(PERIOD_START, DAYS, row, lstm, lean, names, vintage, False)
    b = PeriodBatch(PERIOD_START, DAYS, row, lstm, full, names, vintage, False)
    assert_frame_equal(forecasts(a, cfg), forecasts(b, cfg), check_exact=True)
    # The forecasts asset's read is the lean one here: the LSTM knows every ticker.
    batch = next(batches_by_period(path, cfg, DAYS, lean=True))
    assert batch.panel.width == lean.width and batch.panel["target_h1"].is_null().all()


def test_the_lstm_continues_from_the_state_daily_forecasts_stored_bit_for_bit(model):
    """daily_forecasts stored each ticker's recursion state with December's forecasts; the next
    run of the last sessions reads only the rows after it and makes the forecasts (and the next
    state) that the whole history gives."""
    path, cfg, row, lstm = model
    carry = forecast_state.stored(path, row["model_version"])
    back = cfg.model.lookback + STATE_SLACK
    assert carry[TICKER].to_list() == sorted(cfg.universe.tickers)
    assert carry["as_of"].unique().to_list() == [DECEMBER[-1 - back]]
    batch = next(batches_by_period(path, cfg, DAYS, lean=True))
    assert batch.continued is not None and batch.panel.height == 0
    tail, used = batch.continued
    assert_frame_equal(used, carry)
    per_ticker = tail.group_by(TICKER).agg(pl.col(DATE).min(), pl.len()).sort(TICKER)
    assert (per_ticker[DATE] > carry["as_of"]).all() and per_ticker["len"].to_list() == [back] * 3
    (lean, names), _ = lean_and_full(path, cfg, DAYS[-1])
    whole = PeriodBatch(PERIOD_START, DAYS, row, lstm, lean, names, reads.prices_vintage(path), False)
    got, plan, state = batch.forecasts(cfg, CREATED)
    want, _, want_state = whole.forecasts(cfg, CREATED)
    assert plan == {"lstm": sorted(cfg.universe.tickers)}
    assert_frame_equal(got, want, check_exact=True)
    assert_frame_equal(state, want_state, check_exact=True)
    # A rerun of December's last session: the state is the one it continued from (the row
    # `back` rows before it is not among those read), so the next night still continues.
    assert_frame_equal(state, carry, check_exact=True)


@pytest.mark.parametrize("name", serving.STATEFUL)
def test_a_restored_volatility_baseline_forecasts_as_its_refit(model, name):
    """The state stored at retrain time (fitted as `lstm_model` fits it, on the panel known at the
    period's cutoff) restored on the serving panel = the baseline refitted on the night's full panel."""
    path, cfg, row, lstm = model
    cutoff_panel, names = reads.panel_known_at(path, cfg, PERIOD_START - dt.timedelta(days=1))
    task = ForecastTask(names, cfg.horizons, cfg.quantiles)
    fitted = serving_forecaster(name, lstm, cutoff_panel, task, cfg, PERIOD_START)
    stored = dict(row, serving_model=name, baseline_state=serving.stored_state(fitted))
    (lean, _), (full, _) = lean_and_full(path, cfg, DAYS[-1])
    vintage = reads.prices_vintage(path)
    restored = PeriodBatch(PERIOD_START, DAYS, stored, lstm, lean, names, vintage, False)
    refitted = PeriodBatch(PERIOD_START, DAYS, stored, lstm, full, names, vintage, True)
    plan = serving.serving_plan(stored, lstm, lean, task, cfg, PERIOD_START, restored.tickers(), False)
    assert plan[0][0] is not fitted and plan[0][0].name == name  # restored, not refitted
    out = forecasts(restored, cfg)
    assert set(out["model"]) == {name}
    assert_frame_equal(out, forecasts(refitted, cfg), check_exact=True)


@pytest.mark.parametrize("name", serving.STATEFUL)
def test_a_restored_volatility_baseline_continues_from_its_stored_state_bit_for_bit(model, name):
    """Where the gate refused the LSTM and a volatility baseline serves (restored from the model's
    stored state), the batch continues it from each ticker's stored recursion state over the rows
    after it: the forecasts and the next state of the whole history, bit for bit."""
    path, cfg, row, lstm = model
    cutoff_panel, names = reads.panel_known_at(path, cfg, PERIOD_START - dt.timedelta(days=1))
    task = ForecastTask(names, cfg.horizons, cfg.quantiles)
    fitted = serving_forecaster(name, lstm, cutoff_panel, task, cfg, PERIOD_START)
    stored = dict(row, serving_model=name, baseline_state=serving.stored_state(fitted))
    (lean, _), _ = lean_and_full(path, cfg, DAYS[-1])
    restored = serving.restored(stored, name, task, cfg, rewritten_since=False)
    _, carry = restored.forecast(lean, DECEMBER[-4], DECEMBER[-4])
    carry = carry.with_columns(pl.lit(name).alias("model"))
    assert carry["as_of"].unique().to_list() == [DECEMBER[-4 - STATE_SLACK]]
    tail = lean.join(carry.select(TICKER, "as_of"), on=TICKER).filter(pl.col(DATE) > pl.col("as_of"))
    vintage = reads.prices_vintage(path)
    continued = PeriodBatch(
        PERIOD_START, DAYS, stored, lstm, lean.clear(), names, vintage, False, (tail.drop("as_of"), carry)
    )
    whole = PeriodBatch(PERIOD_START, DAYS, stored, lstm, lean, names, vintage, False)
    got, plan, state = continued.forecasts(cfg, CREATED)
    want, _, want_state = whole.forecasts(cfg, CREATED)
    assert plan == {name: sorted(cfg.universe.tickers)} and set(got["model"]) == {name}
    assert_frame_equal(got, want, check_exact=True)
    assert_frame_equal(state, want_state, check_exact=True)
    assert state["as_of"].unique().to_list() == [DECEMBER[-1 - STATE_SLACK]]


def test_a_stored_state_is_refitted_after_a_restatement_or_a_new_configuration(model):
    path, cfg, row, lstm = model
    panel, names = reads.panel_known_at(path, cfg, PERIOD_START - dt.timedelta(days=1))
    task = ForecastTask(names, cfg.horizons, cfg.quantiles)
    fitted = serving_forecaster("gjr_garch", lstm, panel, task, cfg, PERIOD_START)
    stored = dict(row, serving_model="gjr_garch", baseline_state=serving.stored_state(fitted))
    assert serving.restored(stored, "gjr_garch", task, cfg, rewritten_since=False) is not None
    assert serving.restored(stored, "gjr_garch", task, cfg, rewritten_since=True) is None
    other = dataclasses.replace(cfg, ewma_lambda=0.9)
    assert serving.restored(stored, "gjr_garch", task, other, rewritten_since=False) is None
    assert serving.restored(stored, "ewma_vol", task, cfg, rewritten_since=False) is None
    assert serving.needs_refit(stored, lstm, task, other, ["AAPL"], False)
    # A point baseline has no state: it is refitted, on the full panel.
    ridge = dict(row, serving_model="ridge", baseline_state=None)
    assert serving.stored_state(serving_forecaster("ridge", lstm, panel, task, cfg, PERIOD_START)) is None
    assert serving.needs_refit(ridge, lstm, task, cfg, ["AAPL"], False)
    assert json.loads(stored["baseline_state"])["model"] == "gjr_garch"
