"""The embedded sample: 20 S&P 500 stocks and ^GSPC (adjusted closes, 1990-2022), the offline default."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from importlib import resources

import polars as pl

from forecast_core.columns import (
    DATE,
    TICKER,
)  # fmt: skip
from forecast_core.errors import PriceDataError
from forecast_core.sources.base import SAMPLE_FILE, listing, requested_tickers
from forecast_core.sources.validation import validate_prices

# --- the embedded sample ------------------------------------------------------------------------


@functools.cache
def _sample_frame() -> pl.DataFrame:
    resource = resources.files("forecast_core.sources").joinpath(SAMPLE_FILE)
    with resources.as_file(resource) as path:
        return pl.read_parquet(path)


class SampleSource:
    """The packaged sample: 20 S&P 500 stocks and ^GSPC, adj_close only, 1990-01-02..2022-12-28."""

    name = "sample"

    def tickers(self) -> list[str]:
        return sorted(_sample_frame().get_column(TICKER).unique().to_list())

    def last_date(self) -> dt.date:
        """The last session the sample holds (2022-12-28)."""
        return _sample_frame().get_column(DATE).max()

    def fetch(self, tickers: Sequence[str], start: dt.date, end: dt.date) -> pl.DataFrame:
        requested = requested_tickers(tickers, start, end)
        available = self.tickers()
        unknown = [t for t in requested if t not in available]
        if unknown:
            raise PriceDataError(
                f"ticker(s) {listing(unknown)} are not in the embedded sample; it has {', '.join(available)}"
            )
        frame = _sample_frame().filter(pl.col(TICKER).is_in(requested) & pl.col(DATE).is_between(start, end))
        return validate_prices(frame, requested, start, end, self.name)
