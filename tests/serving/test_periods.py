"""The period model and its gate (the model with the lowest validation pinball serves: a model
trained on shuffled targets never does; the comparison with the previous period's model), and
the serving plan."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import polars as pl
import pytest

from forecast_core.columns import TICKER
from forecast_core.models.baselines import BASELINES
from forecast_core.serving.periods import serving_plan, train_period_model, validation_pinball
from tests.support.small_lstm import CFG, small_setup

MAY, JUNE = dt.date(2016, 5, 2), dt.date(2016, 6, 1)


@pytest.fixture(scope="module")
def may_without_ccc(setup):
    """May's period model, trained before CCC joined the universe."""
    panel, task, _ = setup
    return train_period_model(panel.filter(pl.col(TICKER) != "CCC"), task, CFG, MAY)


def shuffled_targets(panel: pl.DataFrame, target_columns: tuple[str, ...], seed: int = 0) -> pl.DataFrame:
    """The panel with its labelled rows' targets permuted across rows (one permutation for every
    horizon): the features no longer say anything about the labels."""
    labelled = np.flatnonzero(
        panel.select(pl.all_horizontal(pl.col(target_columns).is_not_null())).to_series().to_numpy()
    )
    permuted = np.random.default_rng(seed).permutation(labelled)
    columns = []
    for c in target_columns:
        values = panel[c].to_numpy().copy()
        values[labelled] = values[permuted]
        columns.append(pl.Series(c, values, dtype=panel[c].dtype))
    return panel.with_columns(columns)


def test_the_gate_refuses_a_model_trained_on_shuffled_targets():
    panel, task, _ = small_setup()
    cfg = dataclasses.replace(CFG, promotion_tolerance=0.0)
    pm = train_period_model(shuffled_targets(panel, task.target_columns), task, cfg, dt.date(2016, 6, 1))
    assert not pm.promoted
    assert pm.serving_model in BASELINES
    assert pm.serving_model == min(BASELINES, key=pm.val_pinball.__getitem__)
    assert pm.val_pinball["lstm"] > pm.val_pinball[pm.serving_model]
    assert pm.decision.startswith(
        f"serving {pm.serving_model}: {pm.serving_model} has the lower validation pinball"
    )
    assert f"lstm {pm.val_pinball['lstm']:.6g}" in pm.decision
    assert pm.slices.val_end < dt.date(2016, 6, 1)


def test_the_previous_model_is_compared_on_the_tickers_it_knows(setup, may_without_ccc):
    panel, task, _ = setup
    loose = dataclasses.replace(CFG, promotion_tolerance=10.0, previous_model_tolerance=10.0)
    june = train_period_model(panel, task, loose, JUNE, previous=may_without_ccc.lstm)
    shared = panel.filter(pl.col(TICKER).is_in(["AAA", "BBB"]))
    previous = validation_pinball(may_without_ccc.lstm, shared, june.slices, task)
    lstm = validation_pinball(june.lstm, shared, june.slices, task)
    assert june.previous_val_pinball == previous
    assert (
        f"the LSTM's {lstm:.6g} is within 1000% of the previous model's {previous:.6g} "
        "on the tickers both models know" in june.decision
    )
    # the generous tolerances let the LSTM serve
    assert june.promoted and june.serving_model == "lstm"
    assert june.val_pinball["lstm"] != lstm  # the period's own score covers CCC too


def test_a_model_worse_than_the_previous_one_is_refused(setup, may_without_ccc):
    panel, task, _ = setup
    untrained = dataclasses.replace(
        CFG,
        promotion_tolerance=10.0,
        previous_model_tolerance=0.0,
        train=dataclasses.replace(CFG.train, learning_rate=1e-9, max_epochs=1),
    )
    june = train_period_model(panel, task, untrained, JUNE, previous=may_without_ccc.lstm)
    assert not june.promoted and june.serving_model in BASELINES
    assert "more than 0% worse than the previous model's" in june.decision
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
