"""Universe membership over time: which ticker is a member of the universe on which session.

A ticker is a member from its first to its last session (`UniverseConfig.membership`; open-ended
where none is declared). Outside its membership a ticker has no prices that count, no features,
no targets, no folds' rows and no forecasts; inside it every session is expected.
"""

from __future__ import annotations

import polars as pl

from forecast_core.columns import DATE, TICKER
from forecast_core.config import UniverseConfig


def membership_frame(universe: UniverseConfig) -> pl.DataFrame:
    """(ticker, first_session, last_session) for every configured ticker; null = open."""
    listed = {t: (first, last) for t, first, last in universe.membership}
    tickers = list(universe.all_tickers)
    return pl.DataFrame(
        {
            TICKER: tickers,
            "first_session": [listed.get(t, (None, None))[0] for t in tickers],
            "last_session": [listed.get(t, (None, None))[1] for t in tickers],
        },
        schema={TICKER: pl.String, "first_session": pl.String, "last_session": pl.String},
    ).with_columns(pl.col("first_session", "last_session").str.to_date())


def within_membership(frame: pl.DataFrame, universe: UniverseConfig) -> pl.DataFrame:
    """The rows of `frame` (ticker, date, ...) inside their ticker's membership, in their order;
    tickers without a declared membership keep every row."""
    if not universe.membership or frame.is_empty():
        return frame
    spans = membership_frame(universe).filter(
        pl.col("first_session").is_not_null() | pl.col("last_session").is_not_null()
    )
    joined = frame.join(spans, on=TICKER, how="left", maintain_order="left")
    inside = (pl.col("first_session").is_null() | (pl.col(DATE) >= pl.col("first_session"))) & (
        pl.col("last_session").is_null() | (pl.col(DATE) <= pl.col("last_session"))
    )
    return joined.filter(inside).drop("first_session", "last_session")
