"""The promotion gate's comparison with the previous period's model, and the serving plan."""

from __future__ import annotations

import dataclasses
import datetime as dt

import polars as pl
import pytest

from forecast_core.columns import TICKER
from forecast_core.models.baselines import BASELINES
from forecast_core.serving.periods import serving_plan, train_period_model, validation_pinball
from tests.test_lstm import CFG, small_setup

MAY, JUNE = dt.date(2016, 5, 2), dt.date(2016, 6, 1)


@pytest.fixture(scope="module")
def setup():
    return small_setup()


@pytest.fixture(scope="module")
def may_without_ccc(setup):
    """May's period model, trained before CCC joined the universe."""
    panel, task, _ = setup
    return train_period_model(panel.filter(pl.col(TICKER) != "CCC"), task, CFG, MAY)


def test_the_previous_model_is_compared_on_the_tickers_it_knows(setup, may_without_ccc):
    panel, task, _ = setup
    loose = dataclasses.replace(CFG, promotion_tolerance=10.0)
    june = train_period_model(panel, task, loose, JUNE, previous=may_without_ccc.lstm)
    shared = panel.filter(pl.col(TICKER).is_in(["AAA", "BBB"]))
    previous = validation_pinball(may_without_ccc.lstm, shared, june.slices, task)
    lstm = validation_pinball(june.lstm, shared, june.slices, task)
    assert june.previous_val_pinball == previous
    assert june.promoted and june.serving_model == "lstm"
    assert (
        f"{lstm:.6g} vs the previous model's {previous:.6g} on the tickers both models know" in june.decision
    )
    assert june.val_pinball["lstm"] != lstm  # the period's own score covers CCC too


def test_a_model_worse_than_the_previous_one_is_refused(setup, may_without_ccc):
    panel, task, _ = setup
    untrained = dataclasses.replace(
        CFG, promotion_tolerance=0.0, train=dataclasses.replace(CFG.train, learning_rate=1e-9, max_epochs=1)
    )
    june = train_period_model(panel, task, untrained, JUNE, previous=may_without_ccc.lstm)
    assert not june.promoted and june.serving_model in BASELINES
    assert "worse than the previous model's" in june.decision
    assert june.previous_val_pinball is not None


def test_the_serving_plan_gives_unseen_tickers_to_the_stand_in(setup, may_without_ccc):
    panel, task, _ = setup
    lstm = may_without_ccc.lstm
    plan = serving_plan("lstm", "ewma_vol", lstm, panel, task, CFG, JUNE, ["AAA", "BBB", "CCC"])
    assert [(f.name, t) for f, t in plan] == [("lstm", ["AAA", "BBB"]), ("ewma_vol", ["CCC"])]
    assert plan[0][0] is lstm
    refused = serving_plan("zero_return", "ewma_vol", lstm, panel, task, CFG, JUNE, ["AAA", "BBB", "CCC"])
    assert [(f.name, t) for f, t in refused] == [("zero_return", ["AAA", "BBB", "CCC"])]
    known_only = serving_plan("lstm", "ewma_vol", lstm, panel, task, CFG, JUNE, ["AAA"])
    assert [(f.name, t) for f, t in known_only] == [("lstm", ["AAA"])]
