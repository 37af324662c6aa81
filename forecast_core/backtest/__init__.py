"""Strategy backtest of the horizon-1 forecasts: `strategy` (rules, timing, costs, the backtest
tables) and `risk` (statistics of a return series: Sharpe, drawdown, PSR, DSR, ...)."""
