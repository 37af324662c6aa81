"""The panel reads assemble a few tickers at a time (`reads.PANEL_CHUNK_TICKERS`), so that only
one chunk's prices, features and targets are held beside the panel: the result is the panel read
in one piece, bit for bit, on the pipeline's warehouse (tests/conftest.py), for the point-in-time
panel (with a ticker's membership too), the labelled panel and the panel rebuilt from a price
vintage."""

from __future__ import annotations

import dataclasses

import pytest
from polars.testing import assert_frame_equal

from forecast_core.columns import TICKER
from forecast_core.config import UniverseConfig
from tests.support.pipeline import LAST_SESSION
from warehouse import reads

pytestmark = pytest.mark.slow


def _in_chunks_and_whole(monkeypatch, read):
    monkeypatch.setattr(reads, "PANEL_CHUNK_TICKERS", 2)  # two chunks of the three
    chunked = read()
    monkeypatch.setattr(reads, "PANEL_CHUNK_TICKERS", 10_000)
    return chunked, read()


@pytest.mark.parametrize("membership", [(), (("KO", None, "2022-10-14"), ("MSFT", "2019-01-02", None))])
def test_the_point_in_time_panel_read_in_chunks_is_the_whole_read(monkeypatch, pipeline, membership):
    path, cfg = str(pipeline.warehouse), pipeline.cfg
    if membership:
        universe = UniverseConfig(cfg.universe.tickers, cfg.universe.exogenous, membership)
        cfg = dataclasses.replace(cfg, universe=universe)
    (chunked, names), (whole, whole_names) = _in_chunks_and_whole(
        monkeypatch, lambda: reads.panel_known_at(path, cfg, LAST_SESSION)
    )
    assert names == whole_names and chunked[TICKER].n_unique() == len(cfg.universe.tickers) == 3
    assert_frame_equal(chunked, whole, check_exact=True)


def test_the_labelled_panel_read_in_chunks_is_the_whole_read(monkeypatch, pipeline):
    path, cfg = str(pipeline.warehouse), pipeline.cfg
    (chunked, names), (whole, whole_names) = _in_chunks_and_whole(
        monkeypatch, lambda: reads.labelled_panel(path, cfg.horizons)
    )
    assert names == whole_names and whole.height > 0
    assert_frame_equal(chunked, whole, check_exact=True)


def test_the_panel_of_a_vintage_rebuilt_in_chunks_is_the_whole_rebuild(monkeypatch, pipeline):
    path, cfg = str(pipeline.warehouse), pipeline.cfg
    vintage = reads.prices_vintage(path)
    (chunked, names), (whole, whole_names) = _in_chunks_and_whole(
        monkeypatch, lambda: reads.panel_from_vintage(path, cfg, LAST_SESSION, vintage)
    )
    assert names == whole_names and whole.height > 0
    assert_frame_equal(chunked, whole, check_exact=True)


def test_the_panels_spilled_to_disk_read_back_as_the_panels_in_memory(monkeypatch, pipeline, tmp_path):
    path, cfg = str(pipeline.warehouse), pipeline.cfg
    monkeypatch.setattr(reads, "PANEL_CHUNK_TICKERS", 2)  # two chunks, two files
    for name, read in {
        "known": lambda spill: reads.panel_known_at(path, cfg, LAST_SESSION, spill_to=spill),
        "labelled": lambda spill: reads.labelled_panel(path, cfg.horizons, spill_to=spill),
    }.items():
        whole, columns = read(None)
        spilled, spilled_columns = read(tmp_path / name)
        assert len(spilled.files) == 2 and spilled_columns == columns
        assert_frame_equal(spilled.collect(whole.columns), whole, check_exact=True)
