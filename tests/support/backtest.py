"""Hand-computable prices and signals for the strategy backtest."""

from __future__ import annotations

import datetime as dt

import polars as pl

#: The strategy's per-session returns in the hand-computed case: equity 1, 1.25, 1, 0.5, 1, 1.5.
R = [0.25, -0.20, -0.50, 1.00, 0.50]
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
