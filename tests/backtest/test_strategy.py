"""The strategy backtest on hand-computable cases: known returns give the known CAGR, Sharpe and
drawdown; costs take exactly their share; the timing check rejects look-ahead; buy-and-hold is
the asset; a strategy that never trades has null ratios. The risk measures alone: test_risk.py;
the strategy_backtest asset: tests/assets/test_decision.py."""

from __future__ import annotations

import datetime as dt
import math
from statistics import NormalDist

import numpy as np
import polars as pl
import pytest

from forecast_core.backtest import strategy
from forecast_core.config import BacktestConfig, config_from_dict
from forecast_core.errors import ConfigError
from tests.support.backtest import D, R, prices_for, signals_for

#: 10 sessions a year, so that CAGR = 1.5 ** (10 / 5) - 1 = 1.25 exactly.
FREE = BacktestConfig(cost_bps=0.0, slippage_bps=0.0, periods_per_year=10)
COSTLY = BacktestConfig(cost_bps=5.0, slippage_bps=2.0, periods_per_year=10)


def rows(result: strategy.BacktestResult, strategy: str, ticker: str = "AAA") -> pl.DataFrame:
    return result.returns.filter((pl.col("strategy") == strategy) & (pl.col("ticker") == ticker)).sort("date")


def metric(result: strategy.BacktestResult, strategy: str, name: str, ticker: str = "AAA") -> float:
    m = result.metrics.filter(
        (pl.col("strategy") == strategy) & (pl.col("ticker") == ticker) & (pl.col("metric") == name)
    )
    assert m.height == 1, (strategy, ticker, name)
    return m["value"][0]


def test_known_path_gives_known_cagr_sharpe_and_drawdown():
    result = strategy.run_backtest(signals_for([True] * 5), prices_for(R), FREE)
    lstm = rows(result, "lstm")
    np.testing.assert_allclose(lstm["net_return"].to_numpy(), R, rtol=1e-12)
    assert lstm["position"].to_list() == [1.0] * 5
    assert metric(result, "lstm", "total_return") == pytest.approx(0.5)
    assert metric(result, "lstm", "cagr") == pytest.approx(1.25)  # 1.5 ** (10 / 5) - 1
    # mean 0.21; squared deviations 0.0016 + 0.1681 + 0.5041 + 0.6241 + 0.0841 = 1.382 over 4
    assert metric(result, "lstm", "sharpe") == pytest.approx(0.21 / math.sqrt(1.382 / 4) * math.sqrt(10))
    assert metric(result, "lstm", "ann_volatility") == pytest.approx(math.sqrt(1.382 / 4 * 10))
    # downside: sqrt((0.2^2 + 0.5^2) / 5)
    assert metric(result, "lstm", "sortino") == pytest.approx(0.21 / math.sqrt(0.29 / 5) * math.sqrt(10))
    # peak 1.25, trough 0.5: 60% down; under water at 1.0, 0.5, 1.0 (3 sessions), new high at 1.5
    assert metric(result, "lstm", "max_drawdown") == pytest.approx(0.6)
    assert metric(result, "lstm", "max_drawdown_duration") == 3
    assert metric(result, "lstm", "hit_rate") == pytest.approx(3 / 5)
    assert metric(result, "lstm", "profit_factor") == pytest.approx(1.75 / 0.70)
    assert metric(result, "lstm", "turnover") == pytest.approx(1 / 5 * 10)  # entered once
    assert metric(result, "lstm", "n_sessions") == 5


def test_buy_and_hold_equals_the_asset_return():
    result = strategy.run_backtest(
        signals_for([True, False, True, False, False]),
        prices_for(R),
        BacktestConfig(cost_bps=4.0, slippage_bps=6.0),
    )
    bench = rows(result, "buy_and_hold")
    np.testing.assert_allclose(bench["gross_return"].to_numpy(), R, rtol=1e-12)
    assert bench["position"].to_list() == [1.0] * 5
    # Entering on the first session is the only trade: 10 bps once.
    np.testing.assert_allclose(bench["cost"].to_numpy(), [0.001, 0, 0, 0, 0], atol=1e-15)


def test_costs_reduce_returns_by_turnover_times_bps():
    long = [True, False, True, True, False]  # positions 1 0 1 1 0 -> turnover 1 1 1 0 1
    prices = prices_for(R)
    free = strategy.run_backtest(signals_for(long), prices, FREE)
    costly = strategy.run_backtest(
        signals_for(long), prices, BacktestConfig(cost_bps=7.0, slippage_bps=3.0, periods_per_year=10)
    )
    a, b = rows(free, "lstm"), rows(costly, "lstm")
    assert b["turnover"].to_list() == [1.0, 1.0, 1.0, 0.0, 1.0]
    np.testing.assert_allclose(b["cost"].to_numpy(), 0.001 * np.array([1, 1, 1, 0, 1]), atol=1e-15)
    np.testing.assert_allclose(a["net_return"] - b["net_return"], b["cost"], atol=1e-15)
    np.testing.assert_allclose(b["gross_return"].to_numpy(), np.array(R) * [1, 0, 1, 1, 0], atol=1e-15)
    assert metric(free, "lstm", "total_return") - metric(costly, "lstm", "total_return") > 0


def test_rule_position_sizes_to_the_volatility_target():
    cfg = BacktestConfig()  # vol target 15%, 252 sessions, max_downside 3%
    half = NormalDist().inv_cdf(0.9) * 0.30 / math.sqrt(252)  # a band read as 30% a year
    frame = pl.DataFrame({
        "q10": [-half, -half, -0.05, -0.001, -half / 3],
        "q50": [0.001, -0.001, 0.001, 0.0, 0.001],
        "q90": [half, half, 0.05, 0.001, half / 3],
    })  # fmt: skip
    pos = frame.select(strategy.rule_position(cfg))["position"].to_list()
    assert pos[0] == pytest.approx(0.5)  # 15% / 30%
    assert pos[1:4] == [0.0, 0.0, 0.0]  # median <= 0, or lower edge below -3%, is flat
    assert pos[4] == 1.0  # 10% volatility would ask for 1.5: capped at 1


def test_alignment_trades_the_next_session_and_holds_to_the_one_after():
    aligned = strategy.align_next_session(signals_for([True] * 5), strategy.asset_returns(prices_for(R)))
    first = aligned.row(0, named=True)
    assert (first["forecast_date"], first["trade_date"], first["date"]) == (D[0], D[1], D[2])
    assert first["asset_return"] == pytest.approx(R[0])
    # A forecast whose t+2 close is not known yet is pending, not traded.
    pending = strategy.align_next_session(signals_for([True] * 6), strategy.asset_returns(prices_for(R)))
    assert pending.height == 5


def _look_ahead(shift_days: int) -> pl.DataFrame:
    """Aligned rows whose forecasts are dated `shift_days` after the close they trade at."""
    aligned = strategy.align_next_session(signals_for([True] * 5), strategy.asset_returns(prices_for(R)))
    return aligned.with_columns(
        (pl.col("trade_date") + pl.duration(days=shift_days)).alias("forecast_date"),
        pl.lit(1.0).alias("position"),
    )


@pytest.mark.parametrize("shift_days", [0, 1])
def test_timing_check_rejects_a_forecast_that_uses_the_price_it_trades_at_or_later(shift_days):
    # shift 0: made at the close it trades at; shift 1: made with tomorrow's close (the return's end).
    bad = _look_ahead(shift_days)
    with pytest.raises(strategy.LookAheadError, match="forecast"):
        strategy.check_timing(bad)
    with pytest.raises(strategy.LookAheadError):
        strategy.simulate(bad, FREE)
    strategy.check_timing(_look_ahead(-1))  # made the session before: allowed


def test_alignment_rejects_forecasts_on_sessions_without_a_price():
    signals = signals_for([True] * 3).with_columns(pl.Series("date", [dt.date(2023, 6, 1), D[1], D[2]]))
    with pytest.raises(ValueError, match="without a price"):
        strategy.align_next_session(signals, strategy.asset_returns(prices_for(R)))


def test_portfolio_is_the_equal_weight_mean_and_counts_trials():
    prices = pl.concat([prices_for(R, "AAA"), prices_for([0.01] * 5, "BBB")])
    signals = pl.concat([signals_for([True] * 5, "AAA"), signals_for([True] * 5, "BBB")])
    result = strategy.run_backtest(signals, prices, FREE)
    port = rows(result, "lstm", "portfolio")
    np.testing.assert_allclose(port["net_return"].to_numpy(), (np.array(R) + 0.01) / 2, rtol=1e-12)
    assert metric(result, "lstm", "n_trials", "portfolio") == 2  # lstm and buy_and_hold


def test_a_backtest_in_parts_is_the_whole_backtest():
    """Three tickers in two parts (as `strategy_backtest` reads them): every ticker's rows and
    metrics are the whole backtest's, the portfolio averages all three (to float rounding: the
    parts' sums add in another order), and each part's rows reach the sink as they are made."""
    paths = {"AAA": R, "BBB": [0.01] * 5, "CCC": [-0.02, 0.03, 0.0, 0.01, -0.01]}
    longs = {
        "AAA": [True] * 5,
        "BBB": [True, False, True, True, False],
        "CCC": [False, True, True, False, True],
    }
    prices = {t: prices_for(r, t) for t, r in paths.items()}
    signals = {
        t: pl.concat([signals_for(longs[t], t, "lstm"), signals_for([not x for x in longs[t]], t, "ridge")])
        for t in paths
    }
    whole = strategy.run_backtest(pl.concat(signals.values()), pl.concat(prices.values()), COSTLY)
    sunk: list[pl.DataFrame] = []
    parts = [(["AAA", "BBB"]), (["CCC"])]
    parted = strategy.run_backtest_in_parts(
        [(pl.concat(signals[t] for t in names), pl.concat(prices[t] for t in names)) for names in parts],
        COSTLY,
        None,
        sunk.append,
    )
    assert [set(s["ticker"]) for s in sunk] == [{"AAA", "BBB"}, {"CCC"}]
    order = ["strategy", "period", "ticker", "date"]
    tickers = whole.returns.filter(pl.col("ticker") != strategy.PORTFOLIO)
    assert pl.concat(sunk).sort(order).equals(tickers.sort(order))
    assert parted.ticker_rows == tickers.height
    book = whole.returns.filter(pl.col("ticker") == strategy.PORTFOLIO).sort(order)
    assert parted.portfolio.sort(order).select(order).equals(book.select(order))
    for column in ("position", "turnover", "gross_return", "cost", "net_return"):
        np.testing.assert_allclose(parted.portfolio.sort(order)[column], book[column], rtol=1e-14, atol=1e-17)
    key = ["strategy", "ticker", "period", "metric"]
    assert parted.metrics.select(key).equals(whole.metrics.select(key))
    per_ticker = pl.col("ticker") != strategy.PORTFOLIO
    assert parted.metrics.filter(per_ticker).equals(whole.metrics.filter(per_ticker))
    np.testing.assert_allclose(
        parted.metrics.filter(~per_ticker)["value"].fill_null(np.nan),
        whole.metrics.filter(~per_ticker)["value"].fill_null(np.nan),
        rtol=1e-12,
    )


def test_metrics_of_a_strategy_that_never_trades_are_null_not_nan():
    result = strategy.run_backtest(signals_for([False] * 5), prices_for(R), FREE)
    sharpe = result.metrics.filter(
        (pl.col("strategy") == "lstm") & (pl.col("ticker") == "AAA") & (pl.col("metric") == "sharpe")
    )
    assert sharpe["value"].null_count() == 1
    assert metric(result, "lstm", "exposure") == 0.0


def test_backtest_config_is_validated():
    with pytest.raises(ConfigError, match="backtest.max_position"):
        config_from_dict({"backtest": {"max_position": 1.5}})
    with pytest.raises(ConfigError, match="backtest.cost_bps"):
        config_from_dict({"backtest": {"cost_bps": -1.0}})
    assert config_from_dict({"backtest": {"slippage_bps": 0.5}}).backtest.slippage_bps == 0.5
