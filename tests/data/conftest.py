"""Fixtures of the data tests."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from tests.support.synthetic import synthetic_prices


@pytest.fixture(scope="module")
def shuffled_prices() -> pl.DataFrame:
    """Shuffled rows, so that order is never taken for granted."""
    panel = synthetic_prices(("AAA", "BBB", "CCC", "^MKT"), dt.date(2015, 1, 2), dt.date(2017, 6, 30), seed=5)
    return panel.sample(fraction=1.0, shuffle=True, seed=11)
