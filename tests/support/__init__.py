"""Helpers shared by several test modules (fixtures live in the conftest.py files).

- `config`: the tiny pipeline configuration and TOML files of overrides.
- `synthetic`: synthetic multi-ticker price panels.
- `small_lstm`: the small synthetic panel, task and folds the model tests train on.
- `pipeline`: materializing the job's assets in process, and the pipeline the end-to-end tests share.
- `yahoo`: a fake `yfinance.download`, and the stored warehouse the provider scenarios start from.
- `warehouse`: small warehouse frames and queries, and a child process holding the write lock.
- `backtest`: hand-computable prices and signals for the strategy backtest.
- `sources`: the dates the price-source tests share.
"""
