"""Features and targets on synthetic prices: columns, values against numpy, exogenous join, leakage."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from forecast_core.columns import ADJ_CLOSE, DATE, PRICE, TICKER, target_column
from forecast_core.config import config_from_dict
from forecast_core.data.features import (
    build_features,
    build_targets,
    complete_rows,
    exogenous_prefix,
    feature_columns,
)
from tests.support.synthetic import synthetic_prices

START, END = dt.date(2015, 1, 2), dt.date(2016, 12, 30)
CFG = config_from_dict({"universe": {"tickers": ["AAA", "BBB", "CCC"], "exogenous": ["^MKT"]}})
ALL = (*CFG.universe.tickers, *CFG.universe.exogenous)
MKT = exogenous_prefix("^MKT")  # mkt_mkt


@pytest.fixture(scope="module")
def prices() -> pl.DataFrame:
    return synthetic_prices(ALL, START, END, seed=1)


@pytest.fixture(scope="module")
def ohlcv_prices() -> pl.DataFrame:
    return synthetic_prices(ALL, START, END, seed=2, ohlcv=True)


def one_ticker(frame: pl.DataFrame, ticker: str, column: str) -> np.ndarray:
    """`<float64>[sessions]` column of one ticker in date order (null -> NaN)."""
    return (
        frame.filter(pl.col(TICKER) == ticker)
        .sort(DATE)[column]
        .cast(pl.Float64)
        .fill_null(np.nan)
        .to_numpy()
    )


def trailing(x: np.ndarray, window: int, fn) -> np.ndarray:
    """fn over each trailing window x[t-window+1 .. t]; NaN before the window is full."""
    out = np.full(x.shape, np.nan)
    for t in range(window - 1, len(x)):
        out[t] = fn(x[t - window + 1 : t + 1])
    return out


def wilder_rsi(p: np.ndarray, window: int) -> np.ndarray:
    """RSI rescaled to [-0.5, 0.5] with Wilder smoothing (alpha = 1/window), by explicit recursion."""
    d = np.diff(p)
    alpha = 1.0 / window
    gain, move = max(d[0], 0.0), abs(d[0])
    out = np.full(p.shape, np.nan)
    for k in range(len(d)):
        if k:
            gain = (1 - alpha) * gain + alpha * max(d[k], 0.0)
            move = (1 - alpha) * move + alpha * abs(d[k])
        if k + 1 >= window:
            out[k + 1] = gain / move - 0.5
    return out


def assert_close_where_defined(actual: np.ndarray, expected: np.ndarray, first_defined: int) -> None:
    """Same NaN pattern (warm-up length) and values equal to ~1e-12 relative."""
    np.testing.assert_array_equal(np.isnan(actual), np.arange(len(actual)) < first_defined)
    np.testing.assert_allclose(actual[first_defined:], expected[first_defined:], rtol=1e-10, atol=1e-12)


def test_adj_close_only_has_no_volume_or_range_features(prices):
    feats = build_features(prices, CFG)
    cols = set(feature_columns(feats))
    assert not any(c.startswith("volume_z") for c in cols)
    assert "hl_range" not in cols
    f = CFG.features
    expected = {
        *(f"ret_{w}" for w in f.return_windows),
        *(f"vol_{w}" for w in f.volatility_windows),
        *(f"ma_ratio_{w}" for w in f.moving_average_windows),
        f"rsi_{f.rsi_window}", "macd", "macd_hist", f"bb_position_{f.bollinger_window}",
        "vol_ewma", "day_of_week", "month_sin", "month_cos",
        f"{MKT}_ret_1", f"{MKT}_ret_5", f"{MKT}_vol_20", f"{MKT}_ma_ratio_50",
    }  # fmt: skip
    assert cols == expected
    assert feats.columns[:2] == [TICKER, DATE]


def test_ohlcv_adds_volume_z_range_and_gap(ohlcv_prices):
    feats = build_features(ohlcv_prices, CFG)
    base = set(feature_columns(build_features(ohlcv_prices.drop("volume", "high", "low", "open"), CFG)))
    added = {f"volume_z_{CFG.features.volume_window}", "hl_range", "parkinson_vol", "overnight_gap"}
    assert set(feature_columns(feats)) - base == added
    aaa = ohlcv_prices.filter(pl.col(TICKER) == "AAA").sort(DATE)
    hl = (aaa["high"] - aaa["low"]) / aaa[ADJ_CLOSE]
    np.testing.assert_allclose(one_ticker(feats, "AAA", "hl_range"), hl.to_numpy(), rtol=1e-12)
    # Parkinson: ln(H/L) / (2 sqrt(ln 2)); the gap: log of the adjusted open over the last close.
    parkinson = np.log(aaa["high"].to_numpy() / aaa["low"].to_numpy()) / (2 * np.sqrt(np.log(2)))
    np.testing.assert_allclose(one_ticker(feats, "AAA", "parkinson_vol"), parkinson, rtol=1e-12)
    adj, close, open_ = (aaa[c].to_numpy() for c in (ADJ_CLOSE, "close", "open"))
    gap = np.log(open_ * adj / close)[1:] - np.log(adj[:-1])
    np.testing.assert_allclose(one_ticker(feats, "AAA", "overnight_gap")[1:], gap, rtol=1e-9, atol=1e-15)
    assert np.isnan(one_ticker(feats, "AAA", "overnight_gap")[0])
    logv = np.log(aaa["volume"].to_numpy() + 1.0)
    w = CFG.features.volume_window
    z = (logv - trailing(logv, w, np.mean)) / trailing(logv, w, lambda a: np.std(a, ddof=1))
    assert_close_where_defined(one_ticker(feats, "AAA", f"volume_z_{w}"), z, w - 1)


def test_only_target_tickers_get_rows(prices):
    feats = build_features(prices, CFG)
    assert set(feats[TICKER].unique()) == set(CFG.universe.tickers)
    assert feats.height == prices.filter(pl.col(TICKER).is_in(CFG.universe.tickers)).height
    assert feats.select(TICKER, DATE).equals(feats.select(TICKER, DATE).sort(TICKER, DATE))


def test_price_features_match_numpy(prices):
    feats = build_features(prices, CFG)
    p = one_ticker(prices, "BBB", ADJ_CLOSE)
    logp = np.log(p)
    r1 = np.r_[np.nan, np.diff(logp)]

    ret5 = np.r_[np.full(5, np.nan), logp[5:] - logp[:-5]]
    assert_close_where_defined(one_ticker(feats, "BBB", "ret_5"), ret5, 5)
    assert_close_where_defined(one_ticker(feats, "BBB", "ret_1"), r1, 1)

    vol20 = trailing(r1, 20, lambda a: np.std(a, ddof=1))
    assert_close_where_defined(one_ticker(feats, "BBB", "vol_20"), vol20, 20)

    ma20 = p / trailing(p, 20, np.mean) - 1.0
    assert_close_where_defined(one_ticker(feats, "BBB", "ma_ratio_20"), ma20, 19)

    bb = (p - trailing(p, 20, np.mean)) / (2.0 * trailing(p, 20, lambda a: np.std(a, ddof=1)))
    assert_close_where_defined(one_ticker(feats, "BBB", "bb_position_20"), bb, 19)

    rsi = one_ticker(feats, "BBB", "rsi_14")
    assert_close_where_defined(rsi, wilder_rsi(p, 14), 14)


def test_rsi_within_half_unit_for_every_ticker(prices):
    rsi = build_features(prices, CFG)["rsi_14"].drop_nulls().to_numpy()
    assert len(rsi) > 0
    assert np.all((rsi >= -0.5) & (rsi <= 0.5))
    # A monotone rise has only gains: RSI at the top of the range.
    up = pl.DataFrame(
        {
            TICKER: ["AAA"] * 40,
            DATE: synthetic_prices(("AAA",), START, END)[DATE][:40],
            ADJ_CLOSE: np.linspace(10.0, 20.0, 40),
        }
    )
    rising = build_features(up, config_from_dict({"universe": {"tickers": ["AAA"], "exogenous": []}}))
    np.testing.assert_array_equal(rising["rsi_14"].drop_nulls().to_numpy(), 0.5)


def test_exogenous_features_joined_by_date(prices):
    # Drop the market's price on two sessions: those target rows get nulls, not another day's value.
    dates = prices.filter(pl.col(TICKER) == "^MKT").sort(DATE)[DATE]
    missing = [dates[300], dates[301]]
    holey = prices.filter(~((pl.col(TICKER) == "^MKT") & pl.col(DATE).is_in(missing)))
    feats = build_features(holey, CFG)
    mkt = holey.filter(pl.col(TICKER) == "^MKT").sort(DATE)
    mkt_r1 = dict(zip(mkt[DATE].to_list()[1:], np.diff(np.log(mkt[ADJ_CLOSE].to_numpy()))))
    for ticker in CFG.universe.tickers:
        rows = feats.filter(pl.col(TICKER) == ticker)
        assert rows.filter(pl.col(DATE).is_in(missing))[f"{MKT}_ret_1"].null_count() == 2
        present = rows.filter(~pl.col(DATE).is_in(missing) & pl.col(f"{MKT}_ret_1").is_not_null())
        assert present.height == rows.height - 3  # the two holes and the market's first session
        expected = np.array([mkt_r1[d] for d in present[DATE].to_list()])
        np.testing.assert_allclose(present[f"{MKT}_ret_1"].to_numpy(), expected, rtol=1e-12)
    # Same market value for every target ticker on a date.
    spread = feats.group_by(DATE).agg(pl.col(f"{MKT}_vol_20").n_unique().alias("n"))
    assert spread["n"].max() == 1


@pytest.mark.parametrize("ohlcv", [False, True], ids=["adj_close", "ohlcv"])
def test_features_at_or_before_t_ignore_later_prices(ohlcv):
    """Leakage: perturbing every price strictly after t leaves every feature dated <= t unchanged."""
    base = synthetic_prices(ALL, START, END, seed=3, ohlcv=ohlcv)
    before = build_features(base, CFG)
    dates = base[DATE].unique().sort()
    rng = np.random.default_rng(4)
    moving = [c for c in ("open", "high", "low", "close", ADJ_CLOSE, "volume") if base[c].null_count() == 0]
    for t in (dates[60], dates[250], dates[len(dates) - 30]):
        later = pl.col(DATE) > t
        factors = {c: pl.Series(rng.uniform(0.5, 2.0, base.height)) for c in moving}
        perturbed = base.with_columns(
            pl.when(later).then(pl.col(c) * factors[c]).otherwise(pl.col(c)).alias(c) for c in moving
        )
        after = build_features(perturbed, CFG)
        assert_frame_equal(
            after.filter(pl.col(DATE) <= t), before.filter(pl.col(DATE) <= t), check_exact=True
        )
        # The perturbation did reach the features after t (the test can fail).
        assert not after.filter(pl.col(DATE) > t).equals(before.filter(pl.col(DATE) > t))


def test_targets_are_forward_log_returns(prices):
    horizons = (1, 5)
    targets = build_targets(prices, horizons)
    assert targets.columns == [TICKER, DATE, *(target_column(h) for h in horizons)]
    for ticker in ALL:
        p = one_ticker(prices, ticker, ADJ_CLOSE)
        for h in horizons:
            y = one_ticker(targets, ticker, target_column(h))
            assert np.isnan(y[-h:]).all()
            assert not np.isnan(y[:-h]).any()
            np.testing.assert_allclose(y[:-h], np.log(p[h:] / p[:-h]), rtol=1e-12, atol=1e-15)


def test_targets_use_close_when_adj_close_missing(prices):
    as_close = prices.with_columns(
        pl.col(ADJ_CLOSE).alias("close"), pl.lit(None, pl.Float64).alias(ADJ_CLOSE)
    )
    assert_frame_equal(build_targets(as_close, (5,)), build_targets(prices, (5,)))


def test_feature_columns_never_include_targets_or_price(ohlcv_prices):
    feats = build_features(ohlcv_prices, CFG)
    cols = feature_columns(feats)
    assert not any(c.startswith("target_") for c in cols)
    assert PRICE not in cols and TICKER not in cols and DATE not in cols
    targets = build_targets(ohlcv_prices, CFG.horizons)
    assert not set(cols) & set(targets.columns) - {TICKER, DATE}


def test_complete_rows_drops_exactly_the_warm_up(prices):
    feats = build_features(prices, CFG)
    complete = complete_rows(feats)
    cols = feature_columns(feats)
    assert complete.select(pl.col(cols).is_null().any()).row(0) == (False,) * len(cols)
    # The longest window (200-session moving average) sets the warm-up: rows from index 199 on.
    longest = max(CFG.features.moving_average_windows)
    per_ticker = complete.group_by(TICKER).agg(pl.col(DATE).min().alias("first"), pl.len().alias("n"))
    for ticker, first, n in per_ticker.iter_rows():
        ticker_dates = feats.filter(pl.col(TICKER) == ticker)[DATE]
        assert first == ticker_dates[longest - 1]
        assert n == len(ticker_dates) - (longest - 1)
