"""The modelling panel: complete feature rows + wide targets + the price they start from.

Targets are stored long in the warehouse (ticker, date, horizon, target) so that the table's shape
does not depend on the configured horizons; models read them wide (`target_h1`, `target_h5`).
"""

from __future__ import annotations

import polars as pl

from forecast_core.columns import DATE, HORIZON, PRICE, TICKER, target_column
from forecast_core.features import complete_rows, with_price

TARGET = "target"


def targets_long(wide: pl.DataFrame, horizons: tuple[int, ...]) -> pl.DataFrame:
    """`build_targets` output -> rows (ticker, date, horizon, target)."""
    return (
        wide.unpivot(
            index=[TICKER, DATE],
            on=[target_column(h) for h in horizons],
            variable_name=HORIZON,
            value_name=TARGET,
        )
        .with_columns(pl.col(HORIZON).str.strip_prefix("target_h").cast(pl.Int32))
        .sort(TICKER, DATE, HORIZON)
    )


def targets_wide(long: pl.DataFrame, horizons: tuple[int, ...]) -> pl.DataFrame:
    """Rows (ticker, date, horizon, target) -> one `target_h{h}` column per horizon."""
    return (
        long.filter(pl.col(HORIZON).is_in(list(horizons)))
        .pivot(on=HORIZON, index=[TICKER, DATE], values=TARGET, on_columns=list(horizons))
        .rename({str(h): target_column(h) for h in horizons})
        .sort(TICKER, DATE)
    )


def assemble_panel(
    features: pl.DataFrame, targets: pl.DataFrame, prices: pl.DataFrame
) -> pl.DataFrame:
    """Complete feature rows, left-joined with wide targets (null when unknown) and `price`.

    Sorted by (ticker, date). `price` is the close each forward return starts from (not a feature).
    """
    price = with_price(prices).select(TICKER, DATE, PRICE).collect()
    return (
        complete_rows(features)
        .join(targets, on=[TICKER, DATE], how="left")
        .join(price, on=[TICKER, DATE], how="left")
        .sort(TICKER, DATE)
    )
