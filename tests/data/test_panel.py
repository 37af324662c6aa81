"""Long/wide targets and panel assembly against plain polars joins and pivots."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecast_core.columns import DATE, HORIZON, PRICE, TICKER, target_column
from forecast_core.config import config_from_dict
from forecast_core.data.features import build_features, build_targets, complete_rows
from forecast_core.data.panel import TARGET, assemble_panel, targets_long, targets_wide

HORIZONS = (1, 5)
CFG = config_from_dict({"universe": {"tickers": ["AAA", "BBB", "CCC"], "exogenous": ["^MKT"]}})


def test_targets_long_matches_unpivot_and_keeps_nulls(shuffled_prices: pl.DataFrame) -> None:
    wide = build_targets(shuffled_prices, HORIZONS)
    long = targets_long(wide, HORIZONS)
    reference = (
        wide.unpivot(
            index=[TICKER, DATE],
            on=[target_column(h) for h in HORIZONS],
            variable_name=HORIZON,
            value_name=TARGET,
        )
        .with_columns(pl.col(HORIZON).str.strip_prefix("target_h").cast(pl.Int32))
        .sort(TICKER, DATE, HORIZON)
    )
    assert_frame_equal(long, reference)
    # The last 5 sessions of each ticker have no 5-session label; they stay as null rows.
    assert long.filter(pl.col(HORIZON) == 5)[TARGET].null_count() == 5 * 4


def test_targets_wide_inverts_long_in_any_row_order(shuffled_prices: pl.DataFrame) -> None:
    wide = build_targets(shuffled_prices, HORIZONS)
    shuffled = targets_long(wide, HORIZONS).sample(fraction=1.0, shuffle=True, seed=2)
    assert_frame_equal(targets_wide(shuffled, HORIZONS), wide)


def test_targets_wide_fills_missing_rows_and_horizons_with_null(shuffled_prices: pl.DataFrame) -> None:
    long = targets_long(build_targets(shuffled_prices, HORIZONS), HORIZONS)
    day = long[DATE].sort()[100]
    gap = long.filter(~((pl.col(TICKER) == "BBB") & (pl.col(DATE) == day) & (pl.col(HORIZON) == 5)))
    out = targets_wide(gap, (1, 5, 10))
    row = out.filter((pl.col(TICKER) == "BBB") & (pl.col(DATE) == day))
    assert row[target_column(1)].is_not_null().item() and row[target_column(5)].is_null().item()
    assert out[target_column(10)].null_count() == out.height
    assert out.height == long.filter(pl.col(HORIZON) == 1).height


def test_targets_wide_refuses_duplicate_rows(shuffled_prices: pl.DataFrame) -> None:
    long = targets_long(build_targets(shuffled_prices, HORIZONS), HORIZONS)
    with pytest.raises(ValueError, match="more than one row .* horizon 5"):
        targets_wide(pl.concat([long, long.filter(pl.col(HORIZON) == 5).head(1)]), HORIZONS)


def test_assemble_panel_matches_hash_joins(shuffled_prices: pl.DataFrame) -> None:
    features = build_features(shuffled_prices, CFG)
    universe = shuffled_prices.filter(pl.col(TICKER).is_in(list(CFG.universe.tickers)))
    targets = build_targets(universe, HORIZONS).sample(fraction=1.0, shuffle=True, seed=3)
    panel = assemble_panel(features.sample(fraction=1.0, shuffle=True, seed=4), targets, shuffled_prices)
    price = shuffled_prices.select(TICKER, DATE, pl.col("adj_close").alias(PRICE))
    reference = (
        complete_rows(features)
        .join(targets, on=[TICKER, DATE], how="left")
        .join(price, on=[TICKER, DATE], how="left")
        .sort(TICKER, DATE)
    )
    assert_frame_equal(panel, reference)
    assert panel[TICKER].unique().sort().to_list() == ["AAA", "BBB", "CCC"]
    assert panel[PRICE].null_count() == 0
