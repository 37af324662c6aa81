"""The embedded sample source: every ticker and session, filters, unknown tickers."""

from __future__ import annotations

import datetime as dt

import pytest

from forecast_core.columns import ADJ_CLOSE, CLOSE, DATE, OPEN, SOURCE, TICKER
from forecast_core.config import SAMPLE_TICKERS
from forecast_core.errors import PriceDataError
from forecast_core.sources import (
    FETCH_SCHEMA,
    SampleSource,
)  # fmt: skip
from tests.support.sources import END, START

# --- the embedded sample --------------------------------------------------------------------------


def test_sample_full_range_has_every_ticker_and_session() -> None:
    tickers = (*SAMPLE_TICKERS, "^GSPC")
    out = SampleSource().fetch(tickers, dt.date(1990, 1, 2), dt.date(2022, 12, 28))
    assert out.schema == FETCH_SCHEMA
    assert out.height == 21 * 8313
    assert out.group_by(TICKER).len().get_column("len").unique().to_list() == [8313]
    assert out.get_column(SOURCE).unique().to_list() == ["sample"]
    assert out.get_column(ADJ_CLOSE).null_count() == 0
    assert out.get_column(CLOSE).null_count() == out.height
    assert out.get_column(OPEN).null_count() == out.height


def test_sample_filters_tickers_and_dates() -> None:
    out = SampleSource().fetch(["MSFT", "^GSPC"], dt.date(2020, 1, 1), dt.date(2020, 1, 10))
    assert out.get_column(TICKER).unique(maintain_order=True).to_list() == ["MSFT", "^GSPC"]
    assert out.get_column(DATE).unique().sort().to_list() == [
        dt.date(2020, 1, d) for d in (2, 3, 6, 7, 8, 9, 10)
    ]


def test_sample_unknown_ticker_lists_the_sample() -> None:
    with pytest.raises(PriceDataError, match=r"NVDA.*not in the embedded sample.*AAPL.*\^GSPC"):
        SampleSource().fetch(["AAPL", "NVDA"], START, END)
