"""The strategy backtest on hand-computable cases: known returns give the known CAGR, Sharpe and
drawdown; costs take exactly their share; the timing check rejects look-ahead; buy-and-hold is
the asset; PSR and DSR match their formulas; the asset writes the tables and the view."""

from __future__ import annotations

import datetime as dt
import math
from statistics import NormalDist

import numpy as np
import polars as pl
import pytest

from forecast_core.backtest import risk, strategy
from forecast_core.config import BacktestConfig, config_from_dict
from forecast_core.errors import ConfigError

#: The strategy's per-session returns in the hand-computed case: equity 1, 1.25, 1, 0.5, 1, 1.5.
R = [0.25, -0.20, -0.50, 1.00, 0.50]
#: 10 sessions a year, so that CAGR = 1.5 ** (10 / 5) - 1 = 1.25 exactly.
FREE = BacktestConfig(cost_bps=0.0, slippage_bps=0.0, periods_per_year=10)
D = [dt.date(2024, 1, 1) + dt.timedelta(days=k) for k in range(7)]


def prices_for(returns: list[float], ticker: str = "AAA", first: float = 100.0) -> pl.DataFrame:
    """Closes on D[0..n+1] whose return from D[k+1] to D[k+2] is returns[k] (D[0] -> D[1] is flat)."""
    closes = [first, first]
    for r in returns:
        closes.append(closes[-1] * (1 + r))
    return pl.DataFrame({"ticker": ticker, "date": D[: len(closes)], "adj_close": closes, "close": closes})


def signals_for(
    long: list[bool], ticker: str = "AAA", strategy: str = "lstm", period: str = "all"
) -> pl.DataFrame:
    """Forecasts dated D[0..]: a narrow positive band (full position) when long, else a negative median."""
    n = len(long)
    return pl.DataFrame(
        {
            "strategy": strategy, "period": period, "ticker": ticker, "date": D[:n],
            "q10": [-0.001] * n, "q50": [0.01 if x else -0.01 for x in long], "q90": [0.02] * n,
        }
    )  # fmt: skip


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


def test_drawdown_not_recovered_counts_to_the_end():
    depth, duration = risk.max_drawdown(np.array([0.1, -0.5, 0.1, 0.1]))
    assert depth == pytest.approx(0.5)
    assert duration == 3


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


def _moments(r: np.ndarray) -> tuple[float, float, float]:
    m, s = r.mean(), r.std(ddof=1)
    c = r - m
    return m / s, float(np.mean(c**3) / np.mean(c**2) ** 1.5), float(np.mean(c**4) / np.mean(c**2) ** 2)


def test_psr_and_dsr_match_the_direct_formulas():
    rng = np.random.default_rng(7)
    r = rng.standard_t(4, 500) * 0.01 + 0.001
    sr, g3, g4 = _moments(r)
    phi = NormalDist()
    psr = phi.cdf(sr * math.sqrt(499) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
    assert risk.probabilistic_sharpe_ratio(r) == pytest.approx(psr, rel=1e-9)

    trials = np.array([sr, 0.02, -0.01, 0.05])
    v = trials.var(ddof=1)
    e = 0.5772156649015329
    sr0 = math.sqrt(v) * ((1 - e) * phi.inv_cdf(1 - 1 / 4) + e * phi.inv_cdf(1 - 1 / (4 * math.e)))
    dsr = phi.cdf((sr - sr0) * math.sqrt(499) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
    assert risk.deflated_sharpe_ratio(r, trials, 4) == pytest.approx(dsr, rel=1e-9)
    assert risk.deflated_sharpe_ratio(r, trials, 4) < psr  # more trials, a higher bar
    assert risk.deflated_sharpe_ratio(r, trials[:1], 1) == pytest.approx(psr)  # one trial: the PSR
    assert math.isnan(risk.probabilistic_sharpe_ratio(np.zeros(10)))  # never traded: undefined


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


def test_strategy_backtest_asset_writes_tables_and_view(tmp_path):
    import dagster as dg

    from forecast_assets.assets.decision import strategy_backtest
    from forecast_assets.resources import PipelineConfig, WarehouseResource
    from warehouse import read_table, transaction

    path = str(tmp_path / "w.duckdb")
    prices = pl.concat([prices_for(R, "AAA"), prices_for([0.01, -0.02, 0.03, 0.0, 0.01], "BBB")])
    preds = []
    for fold, model in [(0, "lstm"), (0, "zero_return")]:
        s = pl.concat([signals_for([True, False, True, True, False], t) for t in ("AAA", "BBB")])
        preds.append(s.select(
            pl.lit(fold, pl.Int32).alias("fold"), pl.lit(model).alias("model"), "ticker", "date",
            pl.lit(1, pl.Int32).alias("horizon"), pl.lit(100.0).alias("last_close"),
            pl.lit(0.0).alias("y_true"), pl.col("q50").alias("y_pred"), "q10", "q50", "q90",
        ))  # fmt: skip
    ingested = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
    with transaction(path) as w:
        w.replace(
            "raw_prices",
            prices.with_columns(pl.lit("test").alias("source"), pl.lit(ingested).alias("ingested_at")),
        )
        w.replace("fold_predictions", pl.concat(preds))
    result = dg.materialize(
        [strategy_backtest],
        resources={"warehouse": WarehouseResource(path=path), "pipeline": PipelineConfig()},
    )
    assert result.success
    view = read_table("strategy_comparison", "period = 'all'", path=path)
    assert view["strategy"].to_list()[0] == "lstm" and view["strategy"].to_list()[-1] == "buy_and_hold"
    assert set(read_table("backtest_returns", path=path)["period"].unique()) == {"fold_0", "all"}
    meta = result.asset_materializations_for_node("strategy_backtest")[0].metadata
    assert "equity_curves" in meta and "lstm_dsr" in meta
