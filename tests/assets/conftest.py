"""Fixtures of the asset tests: the job's definitions on the tiny configuration with a live source
(yfinance: partitions run to today), and on the tiny configuration as it is (the embedded sample,
whose partitions end on 2022-12-28)."""

from __future__ import annotations

import dagster as dg
import pytest

from tests.support.config import TINY_CONFIG, with_overrides, write_config
from tests.support.pipeline import defs_on

#: The tiny configuration on a live source (yfinance: its sessions run to today), so that schedules
#: and partitions are looked at on the calendar alone, not up to the embedded sample's last date.
LIVE = with_overrides(TINY_CONFIG, {"source": {"kind": "yfinance"}})


@pytest.fixture(scope="module")
def tiny_defs(tmp_path_factory: pytest.TempPathFactory) -> dg.Definitions:
    """`build_defs` on the tiny configuration with a live source (XNYS sessions from 2018-01-02)
    and a warehouse file nothing writes: for the tests that look at definitions, schedules and
    partitions only (nothing is downloaded)."""
    directory = tmp_path_factory.mktemp("defs")
    return defs_on(directory / "w.duckdb", write_config(directory / "tiny.toml", LIVE))


@pytest.fixture(scope="module")
def sample_defs(tmp_path_factory: pytest.TempPathFactory) -> dg.Definitions:
    """`build_defs` on the tiny configuration as it is (the embedded sample: its partitions end
    with the sample's data, on 2022-12-28)."""
    directory = tmp_path_factory.mktemp("sample_defs")
    return defs_on(directory / "w.duckdb", write_config(directory / "sample.toml", TINY_CONFIG))
