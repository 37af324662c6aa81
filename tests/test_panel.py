"""Row order, long/wide targets and panel assembly against plain polars joins and pivots."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecast_core.columns import DATE, HORIZON, PRICE, TICKER, target_column
from forecast_core.config import config_from_dict
from forecast_core.data.features import build_features, build_targets, complete_rows
from forecast_core.data.panel import TARGET, assemble_panel, targets_long, targets_wide
from forecast_core.data.row_order import ROW_KEY, in_row_order, row_key, sorted_by_ticker_date, ticker_enum
from tests.synthetic import synthetic_prices

HORIZONS = (1, 5)
CFG = config_from_dict({"universe": {"tickers": ["AAA", "BBB", "CCC"], "exogenous": ["^MKT"]}})


@pytest.fixture(scope="module")
def prices() -> pl.DataFrame:
    """Shuffled rows, so that order is never taken for granted."""
    panel = synthetic_prices(("AAA", "BBB", "CCC", "^MKT"), dt.date(2015, 1, 2), dt.date(2017, 6, 30), seed=5)
    return panel.sample(fraction=1.0, shuffle=True, seed=11)


def test_row_key_orders_like_ticker_then_date_across_1970() -> None:
    days = [dt.date(1962, 7, 2), dt.date(1969, 12, 31), dt.date(1970, 1, 1), dt.date(2038, 1, 20)]
    frame = pl.DataFrame({TICKER: ["B"] * 4 + ["A"] * 4, DATE: days * 2}).sample(
        fraction=1.0, shuffle=True, seed=0
    )
    by_pair = frame.with_columns(row_key(ticker_enum(frame))).sort(TICKER, DATE)
    assert by_pair[ROW_KEY].is_sorted() and by_pair[ROW_KEY].n_unique() == by_pair.height == 8
    assert in_row_order(frame.with_columns(pl.lit("Z").alias(TICKER)), ticker_enum(frame)).height == 0


def test_in_row_order_sorts_drops_unknown_tickers_and_flags_the_key(prices: pl.DataFrame) -> None:
    tickers = ticker_enum(prices.filter(pl.col(TICKER) != "^MKT"))
    ordered = in_row_order(prices, tickers)
    expected = prices.filter(pl.col(TICKER) != "^MKT").sort(TICKER, DATE)
    assert_frame_equal(ordered.drop(ROW_KEY), expected)
    assert ordered[ROW_KEY].flags["SORTED_ASC"]
    assert_frame_equal(sorted_by_ticker_date(prices), prices.sort(TICKER, DATE))
    already = prices.sort(TICKER, DATE)
    assert_frame_equal(sorted_by_ticker_date(already), already)


def test_targets_long_matches_unpivot_and_keeps_nulls(prices: pl.DataFrame) -> None:
    wide = build_targets(prices, HORIZONS)
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


def test_targets_wide_inverts_long_in_any_row_order(prices: pl.DataFrame) -> None:
    wide = build_targets(prices, HORIZONS)
    shuffled = targets_long(wide, HORIZONS).sample(fraction=1.0, shuffle=True, seed=2)
    assert_frame_equal(targets_wide(shuffled, HORIZONS), wide)


def test_targets_wide_fills_missing_rows_and_horizons_with_null(prices: pl.DataFrame) -> None:
    long = targets_long(build_targets(prices, HORIZONS), HORIZONS)
    day = long[DATE].sort()[100]
    gap = long.filter(~((pl.col(TICKER) == "BBB") & (pl.col(DATE) == day) & (pl.col(HORIZON) == 5)))
    out = targets_wide(gap, (1, 5, 10))
    row = out.filter((pl.col(TICKER) == "BBB") & (pl.col(DATE) == day))
    assert row[target_column(1)].is_not_null().item() and row[target_column(5)].is_null().item()
    assert out[target_column(10)].null_count() == out.height
    assert out.height == long.filter(pl.col(HORIZON) == 1).height


def test_targets_wide_refuses_duplicate_rows(prices: pl.DataFrame) -> None:
    long = targets_long(build_targets(prices, HORIZONS), HORIZONS)
    with pytest.raises(ValueError, match="more than one row .* horizon 5"):
        targets_wide(pl.concat([long, long.filter(pl.col(HORIZON) == 5).head(1)]), HORIZONS)


def test_assemble_panel_matches_hash_joins(prices: pl.DataFrame) -> None:
    features = build_features(prices, CFG)
    universe = prices.filter(pl.col(TICKER).is_in(list(CFG.universe.tickers)))
    targets = build_targets(universe, HORIZONS).sample(fraction=1.0, shuffle=True, seed=3)
    panel = assemble_panel(features.sample(fraction=1.0, shuffle=True, seed=4), targets, prices)
    price = prices.select(TICKER, DATE, pl.col("adj_close").alias(PRICE))
    reference = (
        complete_rows(features)
        .join(targets, on=[TICKER, DATE], how="left")
        .join(price, on=[TICKER, DATE], how="left")
        .sort(TICKER, DATE)
    )
    assert_frame_equal(panel, reference)
    assert panel[TICKER].unique().sort().to_list() == ["AAA", "BBB", "CCC"]
    assert panel[PRICE].null_count() == 0
