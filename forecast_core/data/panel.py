"""The modelling panel: complete feature rows + wide targets + the price they start from.

Targets are stored long in the warehouse (ticker, date, horizon, target) so that the table's shape
does not depend on the configured horizons; models read them wide (`target_h1`, `target_h5`).
Frames are joined on `row_order.ROW_KEY` (merged, not hashed), so the cost is linear in the rows.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from forecast_core.columns import DATE, HORIZON, PRICE, TICKER, target_column
from forecast_core.data.features import complete_rows, with_price
from forecast_core.data.row_order import ROW_KEY, in_row_order, ticker_enum

TARGET = "target"


def targets_long(wide: pl.DataFrame, horizons: tuple[int, ...]) -> pl.DataFrame:
    """`build_targets` output -> rows (ticker, date, horizon, target), nulls kept.

    Rows follow the wide frame's order with the horizons ascending inside each (ticker, date), so a
    wide frame sorted by (ticker, date) gives rows sorted by (ticker, date, horizon) without a sort.
    """
    n, n_h = wide.height, len(horizons)
    # unpivot stacks horizon after horizon; position r*n_h + j takes row r of horizon j.
    stacked = wide.unpivot(index=[TICKER, DATE], on=[target_column(h) for h in horizons], value_name=TARGET)
    i = np.arange(n * n_h)
    return stacked[(i % n_h) * n + i // n_h].select(
        TICKER, DATE, pl.Series(HORIZON, np.tile(np.asarray(horizons, dtype=np.int32), n)), TARGET
    )


def targets_wide(long: pl.DataFrame, horizons: tuple[int, ...]) -> pl.DataFrame:
    """Rows (ticker, date, horizon, target) -> one `target_h{h}` column per horizon, sorted by
    (ticker, date). A (ticker, date) that lacks a horizon's row gets null there; a horizon with no
    rows at all gives an all-null column."""
    keyed = in_row_order(long.filter(pl.col(HORIZON).is_in(list(horizons))), ticker_enum(long))
    # One row per key: the first of each run of equal keys (the frame is in key order).
    wide = keyed.filter(pl.col(ROW_KEY).diff().fill_null(1) != 0).select(ROW_KEY, TICKER, DATE)
    for h in horizons:
        column = keyed.filter(pl.col(HORIZON) == h).select(ROW_KEY, pl.col(TARGET).alias(target_column(h)))
        if (column[ROW_KEY].diff() == 0).any():
            raise ValueError(f"targets hold more than one row for a (ticker, date) at horizon {h}")
        wide = wide.join(column.set_sorted(ROW_KEY), on=ROW_KEY, how="left", maintain_order="left")
    return wide.drop(ROW_KEY)


def assemble_panel(features: pl.DataFrame, targets: pl.DataFrame, prices: pl.DataFrame) -> pl.DataFrame:
    """Complete feature rows, left-joined with wide targets (null when unknown) and `price`.

    Sorted by (ticker, date). `price` is the close each forward return starts from (not a feature).
    """
    complete = complete_rows(features)
    tickers = ticker_enum(complete)
    price = with_price(prices).select(TICKER, DATE, PRICE).collect()
    panel = in_row_order(complete, tickers)
    for right in (targets, price):
        right = in_row_order(right, tickers).drop(TICKER, DATE)
        panel = panel.join(right, on=ROW_KEY, how="left", maintain_order="left")
    return panel.drop(ROW_KEY)
