"""Fixtures of the asset tests: the job's definitions on the tiny configuration."""

from __future__ import annotations

import dagster as dg
import pytest

from tests.support.config import TINY_CONFIG, write_config
from tests.support.pipeline import defs_on


@pytest.fixture(scope="module")
def tiny_defs(tmp_path_factory: pytest.TempPathFactory) -> dg.Definitions:
    """`build_defs` on the tiny configuration (XNYS sessions from 2018-01-02) and a warehouse file
    nothing writes: for the tests that look at definitions, schedules and partitions only."""
    directory = tmp_path_factory.mktemp("defs")
    return defs_on(directory / "w.duckdb", write_config(directory / "tiny.toml", TINY_CONFIG))
