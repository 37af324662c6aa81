"""The panel spilled to disk (`SpilledPanel`) reads back what was written, a few columns, a date
slice, some tickers or a chunk of whole tickers at a time; and every forecaster fitted and scored
on it gives what it gives on the panel in memory (`evaluate_fold`, `train_period_model`), with
the panel spilled in parts of one ticker so that the chunked paths (ridge's sufficient
statistics, the point baselines' residual bands) really run over several parts."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecast_core.columns import DATE, MODEL, PRICE, TICKER
from forecast_core.data import spilled_panel
from forecast_core.data.spilled_panel import (
    SpilledPanel,
    complete_sessions,
    panel_chunks,
    panel_column,
    panel_tickers,
    restrict,
)
from forecast_core.evaluation.walk_forward import evaluate_fold
from forecast_core.models.baselines import make_baselines
from forecast_core.models.forecaster import columns_between, panel_columns, rows_between
from forecast_core.models.lstm.forecaster import LSTMForecaster
from forecast_core.serving.periods import train_period_model
from tests.support.small_lstm import CFG


def spilled(panel: pl.DataFrame, directory, per_part: int = 1) -> SpilledPanel:
    """`panel` spilled in parts of `per_part` tickers."""
    names = panel[TICKER].unique().sort().to_list()
    parts = (
        panel.filter(pl.col(TICKER).is_in(names[i : i + per_part])) for i in range(0, len(names), per_part)
    )
    return SpilledPanel.write(parts, directory)


def test_a_spilled_panel_reads_back_columns_dates_and_tickers(setup, tmp_path):
    panel, task, _ = setup
    disk = spilled(panel, tmp_path)
    assert len(disk.files) == 3 and disk.columns == tuple(panel.columns)
    assert_frame_equal(disk.collect(panel.columns), panel, check_exact=True)
    assert disk.height == panel.height and panel_tickers(disk) == panel_tickers(panel) == [
        "AAA",
        "BBB",
        "CCC",
    ]
    assert_frame_equal(panel_columns(disk, task, PRICE), panel_columns(panel, task, PRICE), check_exact=True)
    start, end = dt.date(2016, 1, 4), dt.date(2016, 2, 26)
    assert_frame_equal(
        columns_between(disk, task, start, end, PRICE),
        rows_between(panel_columns(panel, task, PRICE), start, end),
        check_exact=True,
    )
    assert_frame_equal(panel_column(disk, DATE).to_frame(), panel.select(DATE), check_exact=True)
    one = restrict(disk, ["BBB", "ZZZ"])
    assert panel_tickers(one) == ["BBB"]
    assert_frame_equal(one.collect(panel.columns), panel.filter(pl.col(TICKER) == "BBB"), check_exact=True)
    # Chunks of whole files: all three tickers' few columns in one, or a file each at 3 per chunk.
    chunks = [
        c[TICKER].unique(maintain_order=True).to_list() for c in panel_chunks(disk, [TICKER, DATE, "ret_1"])
    ]
    assert chunks == [["AAA", "BBB", "CCC"]]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(spilled_panel, "CHUNK_TICKER_COLUMNS", 3)
        chunks = [c[TICKER].unique().to_list() for c in panel_chunks(disk, [TICKER, DATE, "ret_1"])]
    assert chunks == [["AAA"], ["BBB"], ["CCC"]]
    assert complete_sessions(disk) == panel.drop_nulls()[DATE].unique().sort().to_list()


def test_parts_out_of_ticker_order_are_refused(setup, tmp_path):
    panel, _, _ = setup
    parts = [panel.filter(pl.col(TICKER) == "BBB"), panel.filter(pl.col(TICKER) == "AAA")]
    with pytest.raises(ValueError, match="not in ticker order: 'AAA' after 'BBB'"):
        SpilledPanel.write(parts, tmp_path)


def test_an_empty_panel_spills_with_its_columns(setup, tmp_path):
    panel, task, _ = setup
    disk = SpilledPanel.write([panel.clear()], tmp_path)
    assert disk.height == 0 and disk.columns == tuple(panel.columns)
    assert panel_columns(disk, task).columns == ["ticker", "date", *task.target_columns]


@pytest.fixture
def one_ticker_chunks(monkeypatch):
    """Chunks of one file (one ticker, as `spilled` writes them) whatever their columns, so that
    the models' part-by-part paths run over several parts."""
    monkeypatch.setattr(spilled_panel, "CHUNK_TICKER_COLUMNS", 1)


def test_every_model_scores_the_same_on_the_spilled_panel(setup, tmp_path, one_ticker_chunks):
    panel, task, folds = setup
    fold = folds[-1]
    disk = spilled(panel, tmp_path)
    results = [
        evaluate_fold(p, fold, task, [LSTMForecaster(task, CFG), *make_baselines(task, CFG)])
        for p in (panel, disk)
    ]
    in_memory, on_disk = (r.predictions.sort(MODEL, TICKER, DATE, "horizon") for r in results)
    # Ridge sums its sufficient statistics part by part: the same up to the order of float sums.
    ridge = pl.col(MODEL) == "ridge"
    assert_frame_equal(on_disk.filter(~ridge), in_memory.filter(~ridge), check_exact=True)
    assert_frame_equal(on_disk.filter(ridge), in_memory.filter(ridge), rel_tol=1e-9, abs_tol=1e-12)
    assert on_disk.filter(ridge).height > 0


def test_the_period_model_is_the_same_on_the_spilled_panel(setup, tmp_path, one_ticker_chunks):
    panel, task, _ = setup
    period_start = dt.date(2016, 6, 1)
    a = train_period_model(panel, task, CFG, period_start)
    b = train_period_model(spilled(panel, tmp_path), task, CFG, period_start)
    assert a.slices == b.slices and a.serving_model == b.serving_model
    assert a.val_pinball.keys() == b.val_pinball.keys()
    for name, value in a.val_pinball.items():
        assert b.val_pinball[name] == pytest.approx(value, rel=1e-12 if name == "ridge" else 0)
    # Against a previous model that knows two of the three tickers: both sides restricted to them.
    previous = train_period_model(panel.filter(pl.col(TICKER) != "CCC"), task, CFG, period_start).lstm
    c = train_period_model(panel, task, CFG, period_start, previous=previous)
    d = train_period_model(spilled(panel, tmp_path / "again"), task, CFG, period_start, previous=previous)
    assert "on the tickers both models know" in c.decision and c.decision == d.decision
    assert d.previous_val_pinball == c.previous_val_pinball


def test_a_part_of_many_tickers_is_spilled_a_few_tickers_a_file(setup, tmp_path, monkeypatch):
    panel, _, _ = setup
    monkeypatch.setattr(spilled_panel, "FILE_TICKERS", 2)
    disk = SpilledPanel.write([panel], tmp_path)
    assert disk.tickers == (("AAA", "BBB"), ("CCC",)) and len(disk.files) == 2
    assert_frame_equal(disk.collect(panel.columns), panel, check_exact=True)
